"""Job logs (issue 19): what a job prints reaches its owner, and nobody else, within a bound.

The store's bounds, the web's owner-only pages (in process), and the whole path through a real
``twistd market``, a real sandboxed ``twistd worker`` and the ``market logs`` CLI.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import pytest_twisted

from market.core.errors import NotFound
from market.store import jobs as sql_jobs
from market.store import logs as sql_logs
from tests import marketdata as md
from tests.test_rpc_leases import leased  # noqa: F401 - the fixture
from tests.test_web_support import make_job, market  # noqa: F401 - the fixture

PRINTER = (
    "def main(n):\n"
    "    total = 0\n"
    "    for i in range(n):\n"
    "        total += i\n"
    "        if i % 4000000 == 0:\n"
    "            print('line', i, 'total', total)\n"
    "    print('done', total)\n"
    "    return total\n"
)
FLOOD = (
    "def main(n):\n"
    "    for i in range(n):\n"
    "        print('flood line', i, 'x' * 80)\n"
    "    print('the last line')\n"
    "    return n\n"
)


# -- the bounds (pure) ---------------------------------------------------------------------------


def test_bounded_keeps_the_newest_bytes_and_starts_at_a_whole_character():
    text = "é" * 10  # two bytes each
    out = sql_logs.bounded(text, 7)
    assert out == ("é" * 3).encode() and len(out) == 6
    assert sql_logs.bounded("short", 100) == b"short"


def test_bounded_turns_bytes_that_are_not_utf8_into_replacement_characters():
    out = sql_logs.bounded(b"ok \xff\xfe end", 100)
    assert out.decode("utf-8") == "ok \ufffd\ufffd end"
    assert sql_logs.bounded("lone \udc80 surrogate", 100).decode("utf-8") == "lone ? surrogate"


def test_a_slices_output_cut_at_its_bound_says_so_within_the_bound():
    out = sql_logs.slice_output("a" * 500 + "the end\n", 200)
    assert len(out) == 200 and out.startswith(sql_logs.CUT) and out.endswith(b"aathe end\n")
    assert sql_logs.slice_output("fits\n", 200) == b"fits\n"


# -- the store ----------------------------------------------------------------------------------


def _append(db, job_id, text, bound, lease_id=1):
    db.transact(sql_logs.append, job_id, lease_id, sql_logs.bounded(text, 1 << 20), time.time(), bound)


def test_a_jobs_log_is_trimmed_to_the_job_bound_oldest_first(db):
    owner, _ = md.account(db, "ann")
    job = md.job(db, owner, 1)
    for i in range(10):
        _append(db, job, f"slice {i} " + "x" * 90 + "\n", 450, lease_id=i + 1)
    log = db.transact(sql_logs.read, owner, job)["log"]
    assert len(log.encode()) == 450
    assert log.endswith("slice 9 " + "x" * 90 + "\n") and "slice 5" not in log
    stored = db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM slice_logs WHERE job_id = ?", (job,)))
    assert stored == 5  # four whole slices and the tail of the fifth newest; older rows deleted


def test_reading_after_a_row_gives_only_what_came_since(db):
    owner, _ = md.account(db, "ann")
    job = md.job(db, owner, 1)
    _append(db, job, "first\n", 1000)
    first = db.transact(sql_logs.read, owner, job)
    _append(db, job, "second\n", 1000)
    since = db.transact(sql_logs.read, owner, job, first["next"])
    assert first["log"] == "first\n" and since["log"] == "second\n" and since["next"] > first["next"]
    assert db.transact(sql_logs.read, owner, job, since["next"])["log"] == ""


def test_another_member_cannot_read_a_jobs_log(db):
    owner, _ = md.account(db, "ann")
    stranger, _ = md.account(db, "bob")
    job = md.job(db, owner, 1)
    _append(db, job, "private\n", 1000)
    with pytest.raises(NotFound):
        db.transact(sql_logs.read, stranger, job)


# -- the web (in process) -------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_job_page_shows_the_owner_the_output_escaped_and_a_stranger_gets_not_found(market):
    b = await market.member("nina")
    job = make_job(market.db, market.account_id("nina"), "printer", 100)
    _append(market.db, job, "<script>alert(1)</script> \x1b[2J hello\n", 1000)
    page = await b.get(f"/jobs/{job}")
    assert page.code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt; \\x1b[2J hello" in page.text and "<script>alert" not in page.text
    plain = await b.get(f"/jobs/{job}/log")
    assert plain.code == 200 and plain.header("content-type").startswith("text/plain")
    assert plain.text == "<script>alert(1)</script> \\x1b[2J hello\n"
    tail = json.loads((await b.get(f"/jobs/{job}/log?after=0")).body)
    assert tail["log"].endswith("hello\n") and tail["final"] is False
    _append(market.db, job, "more\n", 1000)
    newer = json.loads((await b.get(f"/jobs/{job}/log?after={tail['next']}")).body)
    assert newer["log"] == "more\n"
    other = await market.member("otto")
    for path in (f"/jobs/{job}/log", f"/jobs/{job}/log?after=0"):
        refused = await other.get(path)
        assert refused.code == 404 and "hello" not in refused.text, path


# -- a real market, a real worker, the CLI ----------------------------------------------------------


def _submit(db, owner, source, args, name):
    from market.jobs import submission

    return db.transact(submission.submit, owner, submission.prepare(source, "main", args), name, 5, time.time())


def _logs(server, name, token, *args):
    from tests.servers import MARKET

    env = dict(os.environ, PYTHONPATH=os.getcwd(), MARKET_TOKEN=token)
    return subprocess.run(
        [*MARKET, "logs", *args, "--server", server.url, "--account", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.fixture
def processes():
    from tests.servers import stop_all

    running: list = []
    yield running
    stop_all(running)


def test_a_real_worker_carries_what_a_job_prints_to_its_owner_only(tmp_path, processes):
    from market.accounts import issue_api_token
    from tests.test_worker_e2e import sqlite_market, start_workers, wait_until

    db, server, owner, host = sqlite_market(tmp_path, processes)
    token = issue_api_token(db, owner)
    stranger, _ = md.account(db, "stranger")
    stranger_token = issue_api_token(db, stranger)
    job = _submit(db, owner, PRINTER, [40_000_000], "printer")
    start_workers(server, db, host, processes, str(tmp_path), 1)
    # --follow prints as the job runs and returns when it ends
    follow = _logs(server, "owner", token, str(job), "--follow")
    assert follow.returncode == 0, follow.stderr
    wait_until(lambda: db.transact(sql_jobs.job_row, job)["status"] == "finished", 120, "the job")
    slices = db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM slice_logs WHERE job_id = ?", (job,)))
    assert slices >= 2  # slices of 1 s (min-slice): the output came in over several check-ins
    expected = [f"line {i} total {i * (i + 1) // 2}" for i in range(0, 40_000_000, 4_000_000)]
    expected.append(f"done {40_000_000 * 39_999_999 // 2}")
    r = _logs(server, "owner", token, str(job))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected  # every line once, in order: a late slice's output is not kept
    assert follow.stdout.splitlines() == expected
    refused = _logs(server, "stranger", stranger_token, str(job))
    assert refused.returncode != 0 and "line" not in refused.stdout and f"no job {job}" in refused.stderr


def test_a_flood_of_output_is_cut_at_the_job_bound(tmp_path, processes):
    from tests.test_worker_e2e import sqlite_market, start_workers, wait_until

    db, server, owner, host = sqlite_market(tmp_path, processes, "--job-log", "4096", "--slice-log", "2048")
    job = _submit(db, owner, FLOOD, [200_000], "flood")  # ~19 MB of printing
    start_workers(server, db, host, processes, str(tmp_path), 1)
    wait_until(lambda: db.transact(sql_jobs.job_row, job)["status"] == "finished", 180, "the job")
    sizes = db.transact(lambda tx: [len(bytes(r["output"])) for r in tx.all("SELECT output FROM slice_logs")])
    assert sum(sizes) <= 4096 and all(s <= 2048 for s in sizes)
    log = db.transact(sql_logs.read, owner, job)["log"]
    assert log.endswith("flood line 199999 " + "x" * 80 + "\nthe last line\n")


# -- the live tail in real Chromium ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_chromium_sees_new_output_on_the_job_page_without_a_reload(market, tmp_path):
    from twisted.internet import reactor, threads

    from tests.support import need
    from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    await market.member("lena", password="a long password")
    job = make_job(market.db, market.account_id("lena"), "live", 100)
    _append(market.db, job, "before the page\n", 10_000)

    def browse():
        d = _driver(str(tmp_path), str(tmp_path / "profile"))
        try:
            d.get(market.base + "/login")
            d.find_element("name", "name").send_keys("lena")
            d.find_element("name", "password").send_keys("a long password")
            d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
            _until(lambda: d.title.startswith("Home"), "the home page")
            d.get(f"{market.base}/jobs/{job}")
            assert "before the page" in d.find_element("id", "job-log").text
            d.execute_script("window.notReloaded = true")
            threads.blockingCallFromThread(reactor, _append, market.db, job, "<b>live</b> line\n", 10_000)
            _until(lambda: "<b>live</b> line" in d.find_element("id", "job-log").text, "the new output")
            assert d.execute_script("return window.notReloaded") is True
            assert d.find_elements("css selector", "#job-log b") == []  # text, never markup
        finally:
            d.quit()

    await threads.deferToThread(browse)


def _until(condition, what, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


# -- what a (hostile) worker may send -------------------------------------------------------------


def test_a_workers_log_is_cut_to_the_slice_bound_decoded_safely_and_read_by_the_owner_only(leased):
    import xmlrpc.client

    from market.accounts import issue_api_token
    from market.rpc.client import blocking
    from market.settings import DispatchSettings
    from tests.test_rpc_leases import refusal

    db, server, mine, stranger, lease, job_id = leased
    state = xmlrpc.client.Binary(md.next_state_of(db, job_id))
    code, _ = refusal(lambda: mine.state(lease, state, {"log": 12}))
    assert code == 1  # not text: refused, the lease still open
    code, _ = refusal(lambda: stranger.state(lease, state, {"log": "not yours"}))
    assert code == 4
    flood = b"\xff\xfe not utf-8 " + b"y" * 300_000 + b" the end\n"
    assert mine.state(lease, state, {"log": xmlrpc.client.Binary(flood)})["status"] == "accepted"
    stored = db.transact(lambda tx: [bytes(r["output"]) for r in tx.all("SELECT output FROM slice_logs")])
    assert len(stored) == 1 and len(stored[0]) == DispatchSettings().slice_log
    assert stored[0].startswith(sql_logs.CUT) and stored[0].decode("utf-8").endswith("y the end\n")
    owner = blocking(server.url, "owner", issue_api_token(db, db.transact(jsql_owner, job_id)))
    answer = owner.logs(job_id)
    assert answer["log"].endswith(" the end\n") and answer["slices"] == 1
    assert owner.logs(job_id, answer["next"])["log"] == ""
    other_id, _ = md.account(db, "nosy")
    nosy = blocking(server.url, "nosy", issue_api_token(db, other_id))
    code, words = refusal(lambda: nosy.logs(job_id))
    assert code == 4 and "the end" not in words


def jsql_owner(tx, job_id):
    return sql_jobs.job_row(tx, job_id)["account_id"]
