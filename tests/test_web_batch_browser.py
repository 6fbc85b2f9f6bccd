"""The batch page in real headless Chromium: counts and progress, paging, reprice and cancel all
through the page's forms, and the JSON Lines and CSV downloads saved by the browser."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import time

import pytest_twisted

from tests.support import need, page_wait
from tests.test_web_batches import make_batch
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver
from tests.test_web_support import finish_job, market  # noqa: F401  (fixture)


def _downloaded(folder: str, name: str) -> str:
    path = os.path.join(folder, name)
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        assert time.monotonic() < deadline, f"no download in {os.listdir(folder)}"
        time.sleep(0.1)
    with open(path, encoding="utf-8") as f:
        return f.read()


@pytest_twisted.ensureDeferred
async def test_the_batch_page_in_chromium_pages_reprices_cancels_and_downloads_results(market, tmp_path):
    from twisted.internet import threads

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    b = await market.member("gil")
    owner = market.account_id("gil")
    batch_id, jobs = make_batch(market.db, owner, list(range(1, 56)))
    for i, job in enumerate(jobs[:5]):
        finish_job(market.db, job, {"set": i})
    downloads = tempfile.mkdtemp(dir=tmp_path)
    profile = tempfile.mkdtemp(dir=tmp_path)

    def script():
        d = _driver(downloads, profile)
        try:
            d.get(market.base + "/login")
            for name, value in b.jar.items():
                d.add_cookie({"name": name, "value": value, "path": "/"})
            d.get(f"{market.base}/batches/{batch_id}")
            body = d.find_element("tag name", "body").text
            assert "finished 5" in body and "ready 50" in body and "Page 1 of 2" in body, body
            d.find_element("link text", "Next →").click()
            assert "Page 2 of 2" in d.find_element("tag name", "body").text
            assert "sweep #55" in d.find_element("id", "batch-job-list").text
            d.get(f"{market.base}/batches/{batch_id}")
            price = d.find_element("id", "batch-price")
            price.clear()
            price.send_keys("3.25")
            d.find_element("css selector", f"form[action='/batches/{batch_id}/price'] button").click()
            page_wait(lambda: "3.25 credits per second" in d.find_element("tag name", "body").text, "the new price")
            d.find_element("id", "results-jsonl").click()
            jsonl = _downloaded(downloads, f"batch-{batch_id}-results.jsonl")
            d.find_element("id", "results-csv").click()
            table = _downloaded(downloads, f"batch-{batch_id}-results.csv")
            d.find_element("css selector", f"form[action='/batches/{batch_id}/cancel'] button").click()
            page_wait(lambda: "cancelled 50" in d.find_element("tag name", "body").text, "the cancelled jobs")
            return jsonl, table
        finally:
            d.quit()

    jsonl, table = await threads.deferToThread(script)
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["index"] for r in records] == list(range(55))
    assert [r["result"] for r in records[:5]] == [{"set": i} for i in range(5)]
    assert all(r["result"] is None for r in records[5:])
    rows = list(csv.DictReader(io.StringIO(table)))
    assert [json.loads(r["result"]) for r in rows[:5]] == [{"set": i} for i in range(5)] and len(rows) == 55
    prices = market.db.transact(
        lambda tx: {r["price"] for r in tx.all("SELECT price FROM jobs WHERE batch_id = ?", (batch_id,))}
    )
    assert prices == {100, 325}  # the finished five keep their price
