"""Job states and the small things members read, on the web site (in-process, real SQLite store)
and through the ``market`` command: the feed's words, ledger memos, ``market db audit``."""

from __future__ import annotations

import time

import pytest_twisted
from lxml import etree

from market.store import accounts as sql
from tests.test_web_support import finish_job, make_job, market  # noqa: F401  (fixture)

ATOM = {"a": "http://www.w3.org/2005/Atom"}


@pytest_twisted.ensureDeferred
async def test_the_feed_says_failed_with_why_and_a_slice_once(market):
    import re

    b = await market.member("fay")
    me = market.account_id("fay")
    job = make_job(market.db, me, "will fail", 100)
    market.db.transact(
        lambda tx: tx.execute(
            "UPDATE jobs SET status = 'finished', outcome = 'memory', finished_at = ? WHERE id = ?", (time.time(), job)
        )
    )
    page = await b.get("/jobs")
    path = re.search(r'href="(/feed/\d+/[0-9a-f]+\.atom)"', page.text).group(1)
    doc = etree.fromstring((await market.new_browser().get(path)).body)
    titles = doc.xpath("//a:entry/a:title/text()", namespaces=ATOM)
    assert f"Job {job} (will fail) failed: the job ran out of memory three times" in titles
    assert not [t for t in titles if t.endswith(" finished")]
    summaries = doc.xpath("//a:entry/a:summary/text()", namespaces=ATOM)
    assert not [s for s in summaries if "slice slice" in s]


@pytest_twisted.ensureDeferred
async def test_a_held_job_says_why_with_the_accounts_money_and_the_price(market):
    b = await market.member("hal")
    me = market.account_id("hal")
    job = make_job(market.db, me, "too dear", 100_000)  # 1000.00 credits per second
    market.db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'held' WHERE id = ?", (job,)))
    page = await b.get(f"/jobs/{job}")
    assert 'class="status-held" id="job-status">held<' in page.text
    assert "the account has 100.00 credits available, below the cost of one slice at 1000.00 per second" in page.text
    listing = await b.get("/jobs")
    assert 'class="status-held" title="the account has 100.00 credits available' in listing.text


@pytest_twisted.ensureDeferred
async def test_the_ledger_page_shows_memos_without_internal_ids(market):
    b = await market.member("lee")
    me = market.account_id("lee")
    other = market.db.transact(lambda tx: sql.create_account(tx, "host", "host@example.org", "x", time.time(), None, 0))
    market.db.transact(lambda tx: sql.transfer(tx, me, other, 150, time.time(), "payment", "job 12 slice 307"))
    page = await b.get("/ledger")
    assert "a slice of job 12" in page.text and "slice 307" not in page.text


def test_market_db_audit_speaks_credits_and_keeps_json_for_scripts(db, db_url):
    import json

    from tests import marketdata as md
    from tests.test_cli import market as run

    md.account(db, "ann", grant=12_345)
    words = run(db_url, "db", "audit")
    assert words.returncode == 0, words.stderr
    assert words.stdout.splitlines()[0] == "the ledger balances"
    assert "123.45 credits" in words.stdout and "{" not in words.stdout
    raw = run(db_url, "db", "audit", "--json")
    assert raw.returncode == 0 and json.loads(raw.stdout)["granted"] == 12_345


def test_the_web_site_logs_access_lines_only_for_refusals_and_failures():
    from market.web.site import QuietSite

    class Lines:
        def __init__(self):
            self.lines = []

        def write(self, line):
            self.lines.append(line)

    class Request:
        def __init__(self, code):
            self.code = code

    site = QuietSite(None)
    site._logFile = Lines()
    site._logFormatter = lambda when, request: f"status {request.code}"
    site._logDateTime = "now"
    for code in (200, 303, 304, 404, 500):
        site.log(Request(code))
    assert site._logFile.lines == ["status 404\n", "status 500\n"]


def test_the_worker_rpc_client_opens_connections_without_a_log_line():
    from twisted.internet.task import Clock

    from market.rpc.client import AsyncRPC

    rpc = AsyncRPC(Clock(), "http://127.0.0.1:1/RPC2", "client/1", "t")
    assert rpc._pool._factory.noisy is False
