// The job page's live parts: the output's tail (GET /jobs/ID/log?after=N, JSON).
// Text goes in with textContent only: what a job printed is never markup.
(function () {
  "use strict";
  var pre = document.getElementById("job-log");
  if (!pre) return;
  var job = pre.getAttribute("data-job");
  var after = pre.getAttribute("data-after") || "0";
  var empty = document.getElementById("job-log-empty");
  var KEEP = 262144; // characters the page keeps (the server keeps the job's newest job-log bytes)
  var EVERY = 2000, AFTER_ERROR = 10000;

  function tail() {
    fetch("/jobs/" + job + "/log?after=" + encodeURIComponent(after), {credentials: "same-origin", cache: "no-store"})
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (a) {
        if (a.log) {
          var end = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
          pre.textContent = (pre.textContent + a.log).slice(-KEEP);
          if (empty) empty.hidden = true;
          if (end) pre.scrollTop = pre.scrollHeight;
        }
        after = String(a.next);
        if (!a.final) setTimeout(tail, EVERY);
        else if (empty && !pre.textContent) empty.textContent = "Nothing printed.";
      })
      .catch(function () { setTimeout(tail, AFTER_ERROR); });
  }
  if (pre.getAttribute("data-final") !== "1") setTimeout(tail, EVERY);
})();

// The live figures: server-sent events from GET /jobs/ID/events (market.web.live), one JSON
// object per event; the same words as the page and `market status`.
(function () {
  "use strict";
  var box = document.getElementById("live");
  if (!box || box.getAttribute("data-over") === "1" || !window.EventSource) return;
  var job = box.getAttribute("data-job");
  function set(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  function remaining(f) {
    if (f.over) return "none (the job has ended)";
    if (f.remaining_seconds === null) return "unknown until the job reports progress";
    return "about " + f.remaining_seconds.toFixed(1) + " CPU-seconds, " + f.remaining_cost + " credits at " +
      f.price + " per second (total about " + f.total_cost + ")";
  }
  var source = new EventSource("/jobs/" + job + "/events");
  source.onmessage = function (event) {
    var f = JSON.parse(event.data);
    set("live-progress", f.progress === null ? "not reported" : Math.round(100 * f.progress) + "%");
    set("live-slices", String(f.slices));
    set("live-cpu", f.executed_seconds.toFixed(1));
    set("live-cost", f.cost + " credits");
    set("live-remaining", remaining(f));
    if (f.over) {
      source.close();
      var ended = document.getElementById("live-ended");
      if (ended) ended.hidden = false;
    }
  };
})();

// The batch page's live figures: server-sent events from GET /batches/ID/events (market.web.live):
// progress, jobs by state (failed apart from finished), cost so far and the estimate.
(function () {
  "use strict";
  var box = document.getElementById("batch-live");
  if (!box || box.getAttribute("data-over") === "1" || !window.EventSource) return;
  var batch = box.getAttribute("data-batch");
  function set(id, text) {
    var el = document.getElementById(id);
    if (el) el.textContent = text;
  }
  var source = new EventSource("/batches/" + batch + "/events");
  source.onmessage = function (event) {
    var f = JSON.parse(event.data);
    var pct = Math.round(100 * f.progress) + "%";
    var bar = document.querySelector("#batch-progress progress");
    if (bar) { bar.value = f.progress; bar.textContent = pct; }
    var counts = document.getElementById("batch-counts");
    if (counts) {
      counts.textContent = "";
      Object.keys(f.states).forEach(function (status, i) {
        if (i) counts.appendChild(document.createTextNode(", "));
        var span = document.createElement("span");
        span.className = "status-" + status;
        span.textContent = status + " " + f.states[status];
        counts.appendChild(span);
      });
    }
    set("batch-progress-text", pct);
    set("batch-jobs", f.jobs.toLocaleString("en") + " of " + f.size.toLocaleString("en"));
    set("batch-cost", f.cost + " credits");
    set("batch-estimate", f.estimate === null ? (f.over ? "none (the batch has ended)" :
      "unknown until its jobs report progress") : "about " + f.estimate + " credits in all (cost so far ÷ share done)");
    if (f.over) {
      source.close();
      var ended = document.getElementById("batch-live-ended");
      if (ended) ended.hidden = false;
    }
  };
})();
