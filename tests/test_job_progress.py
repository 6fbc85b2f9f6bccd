"""Live progress (issue 19): cost so far and the estimate of the rest, the same in the core, the
RPC ``progress`` call, ``market status`` / ``market watch`` and the job page's live figures."""

from __future__ import annotations

import json
import os
import time

import pytest
import pytest_twisted

from market.core.progress import estimate
from market.store import live as sql_live
from tests import marketdata as md
from tests.test_web_support import make_job, market  # noqa: F401 - the fixture

# -- the estimate (pure, plain values) -------------------------------------------------------------


def test_half_done_after_ten_seconds_means_ten_more_seconds_at_the_current_price():
    e = estimate(0.5, 10_000, 250, 2_500)
    assert (e.cost_cents, e.remaining_seconds, e.remaining_cents, e.total_cents) == (2_500, 10.0, 2_500, 5_000)


def test_the_remaining_cost_is_rounded_up_to_a_cent():
    e = estimate(0.75, 1_000, 1, 1)  # 333.33... ms more at 1 cent per second
    assert e.remaining_seconds == 0.334 and e.remaining_cents == 1


def test_no_progress_or_no_execution_means_no_estimate():
    for progress, executed in ((None, 5_000), (0.0, 5_000), (0.5, 0), (float("nan"), 5_000)):
        e = estimate(progress, executed, 100, 7)
        assert e.remaining_seconds is None and e.remaining_cents is None and e.total_cents is None
        assert e.cost_cents == 7


def test_progress_over_one_is_clamped_and_an_ended_job_has_nothing_left():
    assert estimate(3.0, 5_000, 100, 500).remaining_cents == 0
    ended = estimate(0.1, 5_000, 100, 500, over=True)
    assert ended.remaining_seconds == 0.0 and ended.total_cents == 500


# -- the store ---------------------------------------------------------------------------------


def test_cost_so_far_is_what_the_jobs_leases_paid_less_reversed_ones(db):
    owner, _ = md.account(db, "ann")
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box")
    job = md.job(db, owner, 200)

    def leases(tx):
        tx.execute("UPDATE jobs SET executed_ms = 4000, progress = 0.25, slices = 2 WHERE id = ?", (job,))
        state = tx.scalar("SELECT id FROM states WHERE job_id = ?", (job,))
        for paid, reversed_ in ((300, 0), (500, 0), (900, 1)):
            tx.insert(
                "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
                " status, paid, reversed) VALUES (?, ?, ?, 0, 1, 1, 'accepted', ?, ?)",
                (job, state, client, paid, reversed_),
            )

    db.transact(leases)
    live = db.transact(sql_live.job_live, owner, job)
    assert live["cost"] == "8.00" and live["remaining_seconds"] == 12.0 and live["remaining_cost"] == "24.00"
    assert live["total_cost"] == "32.00" and live["slices"] == 2 and live["over"] is False


# -- the web: server-sent events ----------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_the_events_of_an_ended_job_are_one_event_then_the_end_and_a_stranger_gets_not_found(market):
    from tests.test_web_support import finish_job

    b = await market.member("nina")
    job = make_job(market.db, market.account_id("nina"), "done", 100)
    finish_job(market.db, job, 42)
    page = await b.get(f"/jobs/{job}/events")
    assert page.code == 200 and page.header("content-type").startswith("text/event-stream")
    events = [json.loads(line[len("data: ") :]) for line in page.text.split("\n\n") if line.startswith("data: ")]
    assert len(events) == 1 and events[0]["over"] is True and events[0]["progress"] == 1.0
    other = await market.member("otto")
    refused = await other.get(f"/jobs/{job}/events")
    assert refused.code == 404 and "data:" not in refused.text


@pytest_twisted.ensureDeferred
async def test_a_member_with_too_many_live_pages_open_is_refused(market):
    from market.web import live

    b = await market.member("pia")
    account = market.account_id("pia")
    job = make_job(market.db, account, "busy", 100)
    market.web.live_streams.open[account] = live.PER_ACCOUNT
    try:
        refused = await b.get(f"/jobs/{job}/events")
    finally:
        del market.web.live_streams.open[account]
    assert refused.code == 429 and "Too many live pages" in refused.text


@pytest_twisted.ensureDeferred
async def test_chromium_sees_the_progress_update_on_the_job_page_without_a_reload(market, tmp_path):
    from twisted.internet import reactor, threads

    from tests.support import need
    from tests.test_job_logs import _until
    from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    await market.member("lena", password="a long password")
    job = make_job(market.db, market.account_id("lena"), "live", 150)

    def progress():
        market.db.transact(
            lambda tx: tx.execute("UPDATE jobs SET progress = 0.4, executed_ms = 8000, slices = 3 WHERE id = ?", (job,))
        )

    def browse():
        d = _driver(str(tmp_path), str(tmp_path / "profile"))
        try:
            d.get(market.base + "/login")
            d.find_element("name", "name").send_keys("lena")
            d.find_element("name", "password").send_keys("a long password")
            d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
            _until(lambda: d.title.startswith("Home"), "the home page")
            d.get(f"{market.base}/jobs/{job}")
            assert d.find_element("id", "live-progress").text == "not reported"
            d.execute_script("window.notReloaded = true")
            threads.blockingCallFromThread(reactor, progress)
            _until(lambda: d.find_element("id", "live-progress").text == "40%", "the new progress")
            assert d.find_element("id", "live-slices").text == "3"
            assert d.find_element("id", "live-cpu").text == "8.0"
            # 12 more seconds at 1.50 per second
            assert "18.00 credits at 1.50 per second" in d.find_element("id", "live-remaining").text
            assert d.execute_script("return window.notReloaded") is True
        finally:
            d.quit()

    await threads.deferToThread(browse)


# -- a real market and worker, the CLI -----------------------------------------------------------------


@pytest.fixture
def processes():
    from tests.servers import stop_all

    running: list = []
    yield running
    stop_all(running)


def _cli(server, token, *args):
    import subprocess

    from tests.servers import MARKET

    env = dict(os.environ, PYTHONPATH=os.getcwd(), MARKET_TOKEN=token)
    return subprocess.run(
        [*MARKET, *args, "--server", server.url, "--account", "owner"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_market_watch_follows_a_real_job_to_its_end_and_status_shows_the_same_figures(tmp_path, processes):
    from market.accounts import issue_api_token
    from market.store import jobs as sql_jobs
    from tests.test_job_logs import PRINTER, _submit
    from tests.test_worker_e2e import sqlite_market, start_workers

    db, server, owner, host = sqlite_market(tmp_path, processes)
    token = issue_api_token(db, owner)
    job = _submit(db, owner, PRINTER, [40_000_000], "watched")
    cancelled = _submit(db, owner, PRINTER, [40_000_000], "cancelled")
    db.transact(sql_jobs.cancel_job, owner, cancelled, time.time())
    start_workers(server, db, host, processes, str(tmp_path), 1)
    watch = _cli(server, token, "watch", str(job), "--every", "0.5")
    assert watch.returncode == 0, watch.stderr
    assert "progress: 100%" in watch.stdout and watch.stdout.count(f"job {job}:") >= 2  # it refreshed
    live = db.transact(sql_live.job_live, owner, job)
    status = _cli(server, token, "status", str(job))
    assert status.returncode == 0, status.stderr
    assert f"cost so far: {live['cost']} credits" in status.stdout and live["cost"] != "0.00"
    assert f"slices: {live['slices']}" in status.stdout and "remaining: none" in status.stdout
    assert f"cost so far: {live['cost']} credits" in watch.stdout  # the same figures in both
    ended = _cli(server, token, "watch", str(cancelled))
    assert ended.returncode == 1 and "cancelled" in ended.stdout


# -- the stream on a fake clock: no queued reads, a bounded lifetime ------------------------------------


class _SlowDb:
    """A database whose reads wait until the test answers them."""

    def __init__(self):
        self.pending: list = []

    def run(self, fn, *args):
        from twisted.internet import defer

        d: defer.Deferred = defer.Deferred()
        self.pending.append(d)
        return d


def _figures(over=False):
    return {"over": over, "progress": 0.5}


def test_a_slow_read_skips_ticks_instead_of_queueing_them_and_a_stream_ends_after_its_lifetime():
    from twisted.internet.task import Clock
    from twisted.web.test.requesthelper import DummyRequest

    from market.web.live import LiveStreams

    class FakeWeb:
        db = _SlowDb()
        clock = Clock()

    web = FakeWeb()
    streams = LiveStreams(web, every=2.0, lifetime=10.0)
    request = DummyRequest([b"events"])
    ended = streams._stream(request, lambda tx: None, _figures())
    assert len(request.written) == 1 and request.written[0].startswith(b"data: ")
    web.clock.advance(2.0)
    web.clock.advance(2.0)
    web.clock.advance(2.0)
    assert len(web.db.pending) == 1  # one read running: the next ticks were skipped, not queued
    web.db.pending[0].callback(_figures())
    assert len(request.written) == 2 and not ended.called
    web.clock.advance(2.0)
    web.db.pending[1].callback(_figures())
    web.clock.advance(2.0)
    web.db.pending[2].callback(_figures())
    assert ended.called  # 10 s after it started: the browser's EventSource reconnects
    web.clock.advance(10.0)
    assert len(web.db.pending) == 3  # and it reads no more
