"""The account page's spending cap (issue 19, item 6), through the real web site on SQLite."""

from __future__ import annotations

import time

import pytest_twisted

from market.core import caps
from market.store import caps as csql
from market.store import jobs as jsql
from tests.test_web_support import make_job, market  # noqa: F401 - the fixture


@pytest_twisted.ensureDeferred
async def test_a_member_sets_and_clears_the_accounts_spending_cap_on_the_account_page(market):
    b = await market.member("cara")
    cara = market.account_id("cara")
    home = await b.get("/")
    assert 'href="/account"' in home.text
    page = await b.get("/account")
    assert page.code == 200 and "No spending cap" in page.text

    job = make_job(market.db, cara, "capped")
    market.db.transact(
        lambda tx: tx.execute("UPDATE jobs SET status = 'held', hold_reason = 'cap' WHERE id = ?", (job,))
    )
    done = await b.post("/account/cap", {"cap": "12.50"}, csrf=page.csrf())
    assert done.code == 200 and "Your spending cap is set." in done.text
    assert "12.50" in done.text and 'value="12.50"' in done.text
    assert market.db.transact(csql.account_cap, cara) == caps.Cap(caps.ACCOUNT, 1250, 0)
    assert market.db.transact(jsql.job_row, job)["status"] == "ready"  # a change of cap releases held jobs
    since = market.db.transact(lambda tx: tx.scalar("SELECT cap_since FROM accounts WHERE id = ?", (cara,)))
    assert abs(since - time.time()) < 60

    bad = await b.post("/account/cap", {"cap": "lots"}, csrf=page.csrf())
    assert bad.code == 400 and "cap must be a number of credits" in bad.text and 'value="lots"' in bad.text
    assert market.db.transact(csql.account_cap, cara).limit == 1250  # unchanged

    cleared = await b.post("/account/cap", {"cap": ""}, csrf=page.csrf())
    assert cleared.code == 200 and "no spending cap now" in cleared.text
    assert market.db.transact(csql.account_cap, cara) is None


@pytest_twisted.ensureDeferred
async def test_the_account_cap_form_needs_the_members_csrf_token(market):
    b = await market.member("dora")
    refused = await b.post("/account/cap", {"cap": "1.00"}, csrf=None)
    assert refused.code in (400, 403)
    assert market.db.transact(csql.account_cap, market.account_id("dora")) is None
