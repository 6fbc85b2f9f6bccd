"""A failed job in real headless Chromium: the job page shows it failed, in red, with its error
and the module's line; a finished job stays green. (In-process site over SQLite.)"""

from __future__ import annotations

import os
import tempfile
import time

import pytest_twisted

from tests.support import need
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver
from tests.test_web_support import make_job, sqlite_db, start_site

ERROR = "ZeroDivisionError: division by zero (line 3 in main)"


def _look(base: str, workdir: str, failed: int, finished: int) -> dict:
    d = _driver(tempfile.mkdtemp(dir=workdir), tempfile.mkdtemp(dir=workdir))
    try:
        d.get(base + "/login")
        d.find_element("name", "name").send_keys("rita")
        d.find_element("name", "password").send_keys("correct horse")
        d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
        deadline = time.monotonic() + 20
        while not d.title.startswith("Home"):
            assert time.monotonic() < deadline, d.title
            time.sleep(0.1)
        seen = {}
        for key, job_id in (("failed", failed), ("finished", finished)):
            d.get(f"{base}/jobs/{job_id}")
            status = d.find_element("id", "job-status")
            seen[key] = {
                "text": status.text,
                "color": status.value_of_css_property("color"),
                "reason": d.find_element("id", "job-reason").text,
                "line": [e.text for e in d.find_elements("id", "error-line")],
                "error": [e.text for e in d.find_elements("id", "job-error")],
            }
        return seen
    finally:
        d.quit()


@pytest_twisted.ensureDeferred
async def test_a_failed_job_is_red_with_its_error_and_line_in_chromium(tmp_path):
    from twisted.internet import threads

    from market import accounts

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    db = sqlite_db(tmp_path)
    wm, serving = await start_site(db, tmp_path)
    try:
        accounts.create_account(db, "rita", "rita@example.org", "correct horse", confirm=False)
        me = wm.account_id("rita")
        failed, finished = make_job(db, me, "divides"), make_job(db, me, "adds")
        db.transact(
            lambda tx: tx.execute(
                "UPDATE jobs SET status = 'finished', outcome = 'error', error = ?, finished_at = ? WHERE id = ?",
                (ERROR, time.time(), failed),
            )
        )
        db.transact(
            lambda tx: tx.execute(
                "UPDATE jobs SET status = 'finished', outcome = 'finished', finished_at = ? WHERE id = ?",
                (time.time(), finished),
            )
        )
        seen = await threads.deferToThread(_look, wm.base, str(tmp_path), failed, finished)
    finally:
        await serving.stopListening()
        wm.web.reports.close()
        db.close()
    assert seen["failed"]["text"] == "failed" and seen["failed"]["color"] == "rgba(164, 22, 26, 1)"  # --bad
    assert seen["failed"]["reason"] == "the job raised an error"
    assert seen["failed"]["line"] == ["at line 3"] and seen["failed"]["error"] == [ERROR]
    assert seen["finished"]["text"] == "finished" and seen["finished"]["color"] == "rgba(27, 110, 58, 1)"  # --good
    assert seen["finished"]["line"] == [] and seen["finished"]["error"] == []
