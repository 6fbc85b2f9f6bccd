"""The batch page's loose ends (issue 19): a failed job counts as failed (``core.states``), not
finished, on the page, in RPC's new ``states`` key and in the live figures; the page updates
live from ``GET /batches/ID/events`` (the job page's server-sent events machinery), checked in
real headless Chromium."""

from __future__ import annotations

import json
import os
import tempfile
import time

import pytest_twisted

from market.store import batches as sql_batches
from market.store import live as sql_live
from tests.support import need, page_wait
from tests.test_web_batches import make_batch
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver
from tests.test_web_support import finish_job, market  # noqa: F401  (fixture)


def fail_job(
    db, job_id: int, error: str = 'File "<job>", line 2, in main\nZeroDivisionError: division by zero'
) -> None:
    db.transact(
        lambda tx: tx.execute(
            "UPDATE jobs SET status = 'finished', finished_at = ?, outcome = 'error', error = ? WHERE id = ?",
            (time.time(), error, job_id),
        )
    )


def test_a_batch_counts_a_failed_job_as_failed_in_its_summary_and_live_figures(db):
    from tests import marketdata as md
    from tests.test_web_support import MODULE

    owner, _ = md.account(db, "ann")
    batch_id, jobs = make_batch(db, owner, [1, 2, 3], price=100)
    assert MODULE  # the batch's module
    finish_job(db, jobs[0], 1)
    fail_job(db, jobs[1])
    summary = db.transact(sql_batches.summary, owner, batch_id)
    assert summary["states"] == {"finished": 1, "failed": 1, "ready": 1}
    assert summary["counts"] == {"finished": 2, "ready": 1}  # the stored statuses stay as they were
    live = db.transact(sql_live.batch_live, owner, batch_id)
    assert live["states"] == {"failed": 1, "finished": 1, "ready": 1} and live["over"] is False
    fail_job(db, jobs[2])
    live = db.transact(sql_live.batch_live, owner, batch_id)
    assert live["over"] is True and live["states"] == {"failed": 2, "finished": 1} and live["estimate"] is None


@pytest_twisted.ensureDeferred
async def test_the_batch_page_shows_failed_jobs_as_failed_and_its_events_end_when_the_batch_does(market):
    b = await market.member("bo")
    batch_id, jobs = make_batch(market.db, market.account_id("bo"), [1, 2])
    finish_job(market.db, jobs[0], 1)
    fail_job(market.db, jobs[1])
    page = await b.get(f"/batches/{batch_id}")
    assert '<span class="status-failed">failed 1</span>' in page.text
    assert '<span class="status-finished">finished 1</span>' in page.text
    assert 'class="status-failed">failed: the job raised an error (line 2)' in page.text
    events = await b.get(f"/batches/{batch_id}/events")
    figures = [json.loads(x[len("data: ") :]) for x in events.text.split("\n\n") if x.startswith("data: ")]
    assert len(figures) == 1 and figures[0]["over"] is True and figures[0]["states"] == {"failed": 1, "finished": 1}
    stranger = await market.member("cid")
    assert (await stranger.get(f"/batches/{batch_id}/events")).code == 404


@pytest_twisted.ensureDeferred
async def test_the_batch_page_updates_live_in_chromium(market, tmp_path):
    from twisted.internet import threads

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    b = await market.member("liv")
    owner = market.account_id("liv")
    batch_id, jobs = make_batch(market.db, owner, [1, 2, 3, 4])
    finish_job(market.db, jobs[0], 1)
    profile = tempfile.mkdtemp(dir=tmp_path)

    def wait_for(d, what, predicate):
        page_wait(predicate, lambda: f"{what}: {d.find_element('tag name', 'body').text}", pause=0.2)

    def script():
        d = _driver(tempfile.mkdtemp(dir=tmp_path), profile)
        try:
            d.get(market.base + "/login")
            for name, value in b.jar.items():
                d.add_cookie({"name": name, "value": value, "path": "/"})
            d.get(f"{market.base}/batches/{batch_id}")
            counts = lambda: d.find_element("id", "batch-counts").text  # noqa: E731
            assert counts() == "finished 1, ready 3", counts()
            assert not d.find_element("id", "batch-live-ended").is_displayed()
            # the jobs move on while the page stays open: no reload
            fail_job(market.db, jobs[1])
            finish_job(market.db, jobs[2], 3)
            wait_for(d, "the new counts", lambda: counts() == "failed 1, finished 2, ready 1")
            assert d.find_element("id", "batch-progress-text").text == "75%"
            assert d.find_element("css selector", "#batch-counts .status-failed").text == "failed 1"
            finish_job(market.db, jobs[3], 4)
            wait_for(d, "the end", lambda: d.find_element("id", "batch-live-ended").is_displayed())
            assert counts() == "failed 1, finished 3"
        finally:
            d.quit()

    await threads.deferToThread(script)
