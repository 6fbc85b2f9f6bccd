"""The worker's loop: request -> check the envelope -> run the slice in the sandbox -> check in.

Several servers (front ends of one market, sharing its database): calls go to one; when it cannot
be reached the call moves at once to another (``market.rpc.client.FailoverRPC``). Only when every
server failed does the worker wait: 1 s doubling to 60 s, with jitter (``market.core.failover``).
A Fault is the market's answer and never moves the worker. A finished slice whose check-in failed
(no server reachable, or Fault 9: the market's database is briefly unavailable) is retried, on any
server, until its lease's deadline, so no work is lost to a short outage; past the deadline the
market rolls the lease back (nothing paid, the job resumes from its last committed state).
SIGTERM/SIGINT freeze the running job at once and check it in before the process exits.

Every limit a stranger sets is bounded by this worker's own (``Caps``: --memory, --slice, --disk,
--output): a task's limits are lowered to them, a job's slice runs under them.
"""

from __future__ import annotations

import os
import xmlrpc.client
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from market.core import text
from market.core.rules import STATE_CHUNK
from market.rpc import faults
from market.rpc.client import ServersUnreachable
from market.sandbox.limits import Caps
from market.worker.idle import IDLE_BELOW, Throttle, busy_fraction, cpu_times
from market.worker.slices import SliceReport, SliceRunner

log = Logger()

MAX_BACKOFF = 60.0
#: how often a running slice asks the market whether its job was cancelled (it stops within ~1 s)
CANCEL_POLL_SECONDS = 1.0


class WorkerRefused(SystemExit):
    pass


class WorkerService(service.Service):
    name = "worker"

    def __init__(
        self,
        *,
        server: str | list[str],
        client_id: int,
        token: str,
        slice_seconds: float = 60.0,
        cpu_percent: int = 100,
        idle_only: bool = False,
        sandbox_mode: str = "auto",
        insecure: bool = False,
        user: str | None = None,
        memory_mb: int = 512,
        disk_mb: int = 256,
        output_mb: int = 48,
        python: str = "/usr/bin/python3",
        once: bool = False,
        verify: bool = True,
        interpreter: str | None = None,
        reactor=None,
    ):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        #: the market's front ends (one or several URLs); ``server`` is the first, as before
        self.servers = [server] if isinstance(server, str) else list(server)
        self.server, self.client_id, self.token = self.servers[0], client_id, token
        self.slice_seconds = slice_seconds
        self.cpu_percent = cpu_percent
        self.idle_only = idle_only
        self.sandbox_mode = sandbox_mode
        self.insecure = insecure
        self.user = user
        self.memory_mb = memory_mb
        self.caps = Caps(memory_mb=memory_mb, seconds=slice_seconds, disk_mb=disk_mb, output_bytes=output_mb << 20)
        self.python = python
        self.once = once
        #: offer to verify other workers' slices by replay (paid leases); ``interpreter`` is the job
        #: interpreter's name as states' headers spell it ("cpython-3.11"): a replay must run on it
        self.verify = verify
        self.interpreter = interpreter
        self.level = "none"
        self.stopping = False
        self.current: dict[str, Any] | None = None
        self.runner: SliceRunner | None = None
        self._loop: defer.Deferred | None = None
        self._sleep: Any | None = None
        self.slices_done = 0
        #: the longest one XML-RPC call may take, seconds (a check-in's is also bounded by its deadline)
        self.rpc_timeout = 60.0
        #: the server's answer to the last ``result`` this worker sent (``speed`` in it: a probe's)
        self.last_result: dict[str, Any] | None = None

    # -- start and stop ----------------------------------------------------------------------------
    def choose_sandbox(self):
        """Probe the sandbox layers; refuse to run untrusted jobs without isolation."""
        if os.geteuid() == 0 and not self.user and not self.insecure:
            raise WorkerRefused(
                "worker: started as root — give --user NAME, an unprivileged account that will run"
                " the jobs (jobs never run as root)"
            )
        if os.geteuid() == 0 and not self.user:
            raise WorkerRefused(
                "worker: --insecure-no-sandbox as root would run jobs as root; give --user or run"
                " the worker as an ordinary user"
            )
        from market.sandbox import probe

        found = probe(self.user)
        wanted = {"auto": "degraded", "full": "full", "degraded": "degraded"}[self.sandbox_mode]
        rank = {"none": 0, "degraded": 1, "full": 2}
        if rank[found.level] >= rank[wanted]:
            self.level = found.level
            return found
        if self.insecure:
            log.warn(
                "NO SANDBOX ({why}); running jobs without isolation because --insecure-no-sandbox was given",
                why=found.describe(),
            )
            self.level = "none"
            return None
        raise WorkerRefused(
            f"worker: the sandbox is {found.level!r} but {wanted!r} is needed ({found.describe()});"
            " install bubblewrap, or pass --insecure-no-sandbox for trusted jobs only"
        )

    def startService(self):
        super().startService()
        from market.rpc.client import FailoverRPC

        found = self.choose_sandbox()
        if self.verify and self.interpreter is None:
            from market.worker.interpreter import check

            self.interpreter = check(self.python).header_name()
        self.runner = SliceRunner(
            self.reactor,
            user=self.user,
            level=found if found else None,
            insecure=found is None,
            memory_mb=self.memory_mb,
            python=self.python,
            caps=self.caps,
        )
        self.rpc = FailoverRPC(
            self.reactor, self.servers, f"client/{self.client_id}", self.token, timeout=self.rpc_timeout
        )
        log.info(
            "worker for client {c} on {s}{others}; sandbox level {lvl}",
            c=self.client_id,
            s=self.rpc.url,
            others=f" (of {len(self.servers)} servers: {', '.join(self.servers)})" if len(self.servers) > 1 else "",
            lvl=self.level,
        )
        self._loop = self.loop()
        self._loop.addErrback(lambda f: log.failure("worker loop crashed", f))

    def stopService(self):
        self.stopping = True
        if self.current is not None and self.runner is not None:
            log.info("stopping: freezing job {j} now to check it in", j=self.current.get("job"))
            self.runner.freeze_now()
        if self._sleep is not None:
            call, waiting = self._sleep
            self._sleep = None
            if call.active():
                call.cancel()
                waiting.callback(None)  # wake the loop so it can see it is stopping
        d = self._loop if self._loop is not None else defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()

        def wake(_: object = None) -> None:
            if not waiter.called:
                waiter.callback(None)

        d.addBoth(wake)
        timeout = self.reactor.callLater(30, wake)
        waiter.addBoth(lambda _: timeout.active() and timeout.cancel())
        waiter.addBoth(lambda _: self.rpc.close() if hasattr(self, "rpc") else None)
        waiter.addBoth(lambda _: service.Service.stopService(self))
        return waiter

    # -- the loop ------------------------------------------------------------------------------
    def sleep(self, seconds: float) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        self._sleep = (self.reactor.callLater(seconds, d.callback, None), d)
        return d

    def is_idle(self):
        before = cpu_times()
        d = self.sleep(1.0)
        return d.addCallback(lambda _: busy_fraction(before, cpu_times()) < IDLE_BELOW)

    @defer.inlineCallbacks
    def loop(self):
        backoff = 1.0
        while not self.stopping:
            if self.idle_only:
                idle = yield self.is_idle()
                if self.stopping:
                    break
                if not idle:
                    yield self.sleep(10.0)
                    continue
            try:
                answer = yield self.rpc.call("request", self.client_id, self.slice_seconds, self.request_info())
            except xmlrpc.client.Fault as f:
                log.error("the server refused the request: {msg} (Fault {code})", msg=f.faultString, code=f.faultCode)
                yield self.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except ServersUnreachable as e:
                if self.stopping:
                    break
                # every server failed since the last answer: the rotation chose a jittered wait
                log.warn("{e}; retrying in {b:.1f} s", e=e, b=e.wait)
                yield self.sleep(e.wait)
                continue
            except Exception as e:
                if self.stopping:
                    break
                log.warn("the server's answer was refused ({e}); retrying in {b:g} s", e=e, b=backoff)
                yield self.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            backoff = 1.0
            if answer.get("status") != "work":
                if not self.stopping:
                    yield self.sleep(float(answer.get("retry_after", 1.0)))
                continue
            yield self.run_lease(answer)
            # --once: a probe's result is answered with the measured speed, a job's without; the
            # lease itself does not say which it was (a worker cannot tell a probe from a job)
            if self.once and self.last_result is not None and "speed" not in self.last_result:
                break
        if self.once and not self.stopping:
            self.reactor.callLater(0, self.reactor.stop)

    def request_info(self) -> dict[str, Any]:
        """``request``'s info struct: the sandbox level; with verification on, ``verify`` and the job
        interpreter (a market then may answer with a replay lease)."""
        # chunks: this worker fetches a state stored in chunks by them (``state_get``)
        info: dict[str, Any] = {"sandbox": self.level, "chunks": True}
        if self.verify and self.interpreter:
            info.update(verify=True, interpreter=self.interpreter)
        return info

    def replay_refusal(self, lease: dict[str, Any]) -> str | None:
        """Why this worker cannot run a replay lease, or None."""
        from market.tasklet.replay import mark_interpreter

        replay = lease["replay"]
        if not isinstance(replay, dict) or not isinstance(replay.get("steps"), int) or replay["steps"] < 1:
            return "replay lease without a step cap"
        if replay.get("result"):
            return None
        if not isinstance(replay.get("target"), str) or not isinstance(replay.get("mark"), str):
            return "replay lease without a target and a mark"
        wanted = mark_interpreter(replay["mark"])
        if wanted != self.interpreter:
            return (
                f"this replay must run on {wanted} (the interpreter that froze the state), this worker runs"
                f" jobs on {self.interpreter}: a replay on another interpreter cannot match"
            )
        return None

    @defer.inlineCallbacks
    def run_lease(self, lease: dict[str, Any]):
        """One lease: check the envelope header, run the slice, report it before the deadline."""
        received = self.reactor.seconds()
        stateid = lease["stateid"]
        if lease.get("kind") == "task":
            from market.worker.tasks import run_task_lease

            self.current = lease
            try:
                report = yield run_task_lease(self.reactor, self.rpc, lease, self.user, self.caps)
            finally:
                self.current = None
            yield self.report(stateid, report, received + lease["timeout"])
            self.slices_done += 1
            return
        from market.tasklet import envelope as env

        if lease.get("state_chunks"):
            try:
                lease["state"] = yield self.fetch_state(stateid, int(lease["state_chunks"]), int(lease["state_size"]))
            except Exception as e:
                # not the job's fault (the market or the network): given back as 'abort' (no
                # strike, not paid), and the market leases the job again
                log.warn("lease {s}: fetching its state by chunks failed ({e}); giving it back", s=stateid, e=e)
                message = f"the state could not be fetched: {e}"
                yield self.report(stateid, SliceReport("abort", message=message), received + lease["timeout"])
                return
        try:
            env.open_envelope(lease["state"], lease["module"])
        except Exception as e:
            yield self.report(
                stateid,
                SliceReport("refused", message=f"state refused before running: {e}"),
                received + lease["timeout"],
            )
            return
        # leave room to upload before the deadline: 5 % of the lease, at least half a second
        margin = max(0.5, 0.05 * lease["timeout"])
        seconds = max(0.05, min(lease["slice"], lease["timeout"] - margin))
        replay = lease.get("replay")
        if replay is not None:
            why = self.replay_refusal(lease)
            if why is not None:
                log.warn("lease {s}: replay refused: {why}", s=stateid, why=why)
                yield self.report(stateid, SliceReport("refused", message=why), received + lease["timeout"])
                return
            # a replay has no clock: its step cap stops it; the sandbox's wall limit is the lease's time
            seconds = max(0.05, lease["timeout"] - margin)
        self.current = lease
        watcher = None
        assert self.runner is not None  # startService made it before starting the loop
        throttle = Throttle(self.reactor, self.cpu_percent, self.runner.pids)
        try:
            if replay is not None:
                d = self.runner.run_replay(lease["state"], lease["module"], replay, seconds, lease["job"])
            else:
                d = self.runner.run(lease["state"], lease["module"], seconds, lease["job"])
            throttle.start()
            if self.stopping:
                self.runner.freeze_now()
            # the owner may cancel the job mid-slice: the worker asks the market (``alive``, as a
            # task's run does) and on "no" freezes at the next freeze point instead of the slice's end
            watcher = self._watch_cancel(stateid, d) if replay is None else None
            report = yield d
        finally:
            throttle.stop()
            if watcher is not None and watcher.running:
                watcher.stop()
            self.current = None
        answer = yield self.report(
            stateid, report, received + lease["timeout"], "state_size" in lease and replay is None
        )
        if replay is not None:
            stats = report.stats or {}
            log.info(
                "lease {s}: replay {how} after {n} steps; the market says verified={v}",
                s=stateid,
                how="matched" if stats.get("matched") else ("finished" if report.status == "finished" else "unmatched"),
                n=stats.get("steps"),
                v=(answer or {}).get("verified"),
            )
        self.slices_done += 1

    @defer.inlineCallbacks
    def fetch_state(self, stateid: int, count: int, size: int):
        """A leased state stored in chunks, fetched one chunk at a time (``state_get``) into one
        buffer: the worker holds the state once, plus one chunk in flight."""
        if not 0 < size <= count * STATE_CHUNK:
            raise ValueError(f"the market announced {count} chunks of {size} bytes")
        buffer = bytearray()
        for i in range(count):
            piece = yield self.rpc.call("state_get", stateid, i)
            buffer += piece.data if isinstance(piece, xmlrpc.client.Binary) else bytes(piece)
            if len(buffer) > size:
                raise ValueError(f"the market sent more than the {size} bytes it announced")
        if len(buffer) != size:
            raise ValueError(f"the market sent {len(buffer)} bytes of the {size} it announced")
        return bytes(buffer)

    @defer.inlineCallbacks
    def send_state(self, stateid: int, envelope: bytes, info: dict[str, Any]):
        """Check a state over one chunk in by chunks (``state_put`` each, then ``state`` with an
        empty state and ``info {chunks, size}``): no request body holds more than one chunk."""
        view = memoryview(envelope)
        count = -(-len(envelope) // STATE_CHUNK)
        for i in range(count):
            yield self.rpc.call(
                "state_put", stateid, i, xmlrpc.client.Binary(bytes(view[i * STATE_CHUNK : (i + 1) * STATE_CHUNK]))
            )
        answer = yield self.rpc.call(
            "state", stateid, xmlrpc.client.Binary(b""), dict(info, chunks=count, size=len(envelope))
        )
        return answer

    def _watch_cancel(self, stateid: int, running: defer.Deferred) -> task.LoopingCall:
        """Poll ``alive`` every ``CANCEL_POLL_SECONDS`` while the slice runs; a lease no longer
        wanted (its job cancelled, or expired) freezes the slice now. The state it checks in is
        refused by the market, as any state of a cancelled job; a failed poll is ignored."""
        runner = self.runner
        assert runner is not None

        def poll():
            def seen(alive):
                if alive is False and not running.called:
                    log.info("lease {s}: its job was cancelled; freezing the slice now", s=stateid)
                    runner.freeze_now()
                    watcher.stop()

            return self.rpc.call("alive", stateid).addCallbacks(seen, lambda f: None)

        watcher = task.LoopingCall(poll)
        watcher.clock = self.reactor
        watcher.start(CANCEL_POLL_SECONDS, now=False)
        return watcher

    @defer.inlineCallbacks
    def report(self, stateid: int, report: SliceReport, local_deadline: float, chunks_ok: bool = False):
        """Check the slice in; retry through short outages until the lease's deadline.

        A server that cannot be reached is left at once for another (any front end takes any
        check-in: they share the database); when none could be reached, or on Fault 9 (the
        market's database is unavailable), the check-in is sent again, 0.5 s doubling to 5 s, until
        the next try would land after ``local_deadline``; then the worker gives up (logged) and the
        market rolls the lease back: nothing is paid for the slice, the job resumes from its last
        committed state. A check-in that reached a front end which died before answering gets
        the first answer again when sent again (the lease is closed), never committed or paid
        twice. A ``nofreeze`` failure that an older market refuses as an unknown status is sent
        again as ``timeout``.
        """
        args: tuple[object, ...]
        by_chunks = False
        # what the slice printed: a replay's output is the owner's already
        # (XML 1.0 cannot carry most control characters: they travel as visible escapes)
        printed = ""
        if report.log and not (report.stats or {}).get("replay"):
            printed = text.printable(report.log.decode("utf-8", "replace").replace("\r\n", "\n"), lines=True)
        if report.status == "finished" and report.message:  # a task: its pythia status is the outcome
            method, args = "result", (stateid, report.result, {"outcome": report.message, "error": report.error})
        elif report.status == "finished":
            done: dict[str, Any] = {"outcome": "error" if report.error else "finished", "error": report.error}
            if printed:
                done["log"] = printed
            method, args = "result", (stateid, report.result, done)
        elif report.status == "ok" and report.envelope is not None:
            info: dict[str, Any] = {"status": "ok", "progress": report.progress}
            if printed:
                info["log"] = printed
            stats = report.stats or {}
            if stats.get("replay") and not stats.get("matched"):
                # a replay stops at the match, at the job's end (a result) or at its cap: this is the cap
                info["replay"] = "capped"
            method, args = "state", (stateid, report.envelope, info)
            # a market of this release takes a state over one chunk by chunks (it announces state_size)
            by_chunks = chunks_ok and len(report.envelope) > STATE_CHUNK
        else:
            method, args = "fail", (stateid, report.status, report.message[:4000])
        delay = 0.5
        tries = 0
        while True:
            tries += 1
            try:
                # a call is worth nothing after the lease's deadline: no front end would take it then
                timeout = max(1.0, min(self.rpc_timeout, local_deadline - self.reactor.seconds()))
                if by_chunks:
                    answer = yield self.send_state(stateid, args[1], args[2])  # type: ignore[arg-type]
                else:
                    answer = yield self.rpc.call(
                        method,
                        *[xmlrpc.client.Binary(a) if isinstance(a, bytes) else a for a in args],
                        timeout=timeout,
                    )
                log.info(
                    "lease {s}: {what} -> {status}{again}",
                    s=stateid,
                    what=method,
                    status=answer.get("status"),
                    again=f" (after {tries} tries)" if tries > 1 else "",
                )
                if method == "result":
                    self.last_result = answer
                return answer
            except xmlrpc.client.Fault as f:
                if method == "state" and f.faultCode == faults.TOO_LARGE:
                    # a state over the market's max-state-size: every slice would make one as
                    # large, so the job fails this slice (three such and it ends) instead of
                    # being leased again forever
                    log.error("lease {s}: the market refused the state: {msg}", s=stateid, msg=f.faultString)
                    method, args, by_chunks = (
                        "fail",
                        (stateid, "refused", f"state refused: {f.faultString}"[:4000]),
                        False,
                    )
                    continue
                if method == "fail" and args[1] == "nofreeze" and f.faultCode == faults.BAD_ARGUMENT:
                    log.info("lease {s}: the market does not know 'nofreeze'; reporting 'timeout'", s=stateid)
                    args = (stateid, "timeout", args[2])
                    continue
                if f.faultCode != faults.UNAVAILABLE:
                    log.error("lease {s}: the server refused the check-in: {msg}", s=stateid, msg=f.faultString)
                    return None
                why: object = f"Fault {f.faultCode}: {f.faultString}"
            except Exception as e:
                why = e
            if self.reactor.seconds() + delay > local_deadline:
                log.warn(
                    "lease {s}: gave up checking in after {n} tries, before the lease's deadline ({why});"
                    " the market will roll the lease back",
                    s=stateid,
                    n=tries,
                    why=why,
                )
                return None
            log.info("lease {s}: {m} not delivered ({why}); retrying in {d:g} s", s=stateid, m=method, why=why, d=delay)
            yield self.sleep(delay)
            delay = min(delay * 2, 5.0)
