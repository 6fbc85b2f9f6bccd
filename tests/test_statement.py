"""Statements: an account's money per job, per batch, per client and per day over a date range,
owner-only and bounded — from the store (SQLite and MariaDB) and through ``market statement``
against a real ``twistd market``."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time

import pytest
import pytest_twisted

from market.core.errors import MarketError
from market.store import statements
from tests import marketdata as md
from tests.test_money_carry import run_slices
from tests.test_web_support import market  # noqa: F401 - the fixture

T = 1_800_000_000.0  # 2027-01-15 08:00 UTC
DAY = 86_400


def an_hour_ago_within_one_day(now):
    """About an hour before ``now``, moved back so that the two jobs' slices (``t`` .. ``t`` + 400 s)
    fall within one UTC day: a by-day statement then shows them on one line at any time of day (in
    the hour after midnight UTC an hour ago is yesterday and the slices straddled two days)."""
    t = now - 3600
    if int(t // DAY) != int((t + 400) // DAY):
        t = (t // DAY) * DAY + DAY - 3600  # 23:00 of t's day
    return t


def _two_jobs(db, t=T, owner=None):
    if owner is None:
        owner, _ = md.account(db, "alice", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    box, _ = md.client(db, host, "box")
    cheap = md.job(db, owner, 1, "cheap", submitted_at=t)
    run_slices(db, box, cheap, t, 10)  # 10 x 0.7 s at 1 c/s: 7 cents
    dear = md.job(db, owner, 250, "dear", submitted_at=t + 200)
    run_slices(db, box, dear, t + 200, 2, seconds=2.0)  # 2 x 2 s at 2.50/s: 10.00
    return owner, host, box, cheap, dear


def test_a_statement_by_job_shows_what_each_job_paid_in_the_range(db):
    owner, _, _, cheap, dear = _two_jobs(db)
    s = db.transact(statements.statement, owner, "job", T - DAY, T + DAY)
    assert s["rows"] == [
        # slices that moved money: 3 of the 10 carried their 0.7 cents on and paid nothing
        {"job": cheap, "name": "cheap", "batch": 0, "slices": 7, "paid": 7},
        {"job": dear, "name": "dear", "batch": 0, "slices": 2, "paid": 1000},
    ]
    assert s["paid"] == 1007 and not s["truncated"]
    # a range that ends before the slices holds nothing
    assert db.transact(statements.statement, owner, "job", T - DAY, T)["rows"] == []


def test_a_statement_by_client_shows_what_the_accounts_workers_earned(db):
    owner, host, box, _, _ = _two_jobs(db)
    s = db.transact(statements.statement, host, "client", T - DAY, T + DAY)
    assert s["rows"] == [{"client": box, "name": "box", "slices": 9, "earned": 1007}]
    # the job owner's own statement lists no client of its own, and none of the host's
    assert db.transact(statements.statement, owner, "client", T - DAY, T + DAY)["rows"] == []


def test_a_statement_by_day_shows_money_in_and_out_per_utc_day(db):
    owner, host, _, _, _ = _two_jobs(db)
    mine = db.transact(statements.statement, owner, "day", T - DAY, T + DAY)["rows"]
    assert mine == [{"day": "2027-01-15", "in": 0, "out": 1007}]
    theirs = db.transact(statements.statement, host, "day", T - DAY, T + DAY)["rows"]
    assert theirs == [{"day": "2027-01-15", "in": 1007, "out": 0}]


def test_a_stranger_sees_none_of_another_accounts_money(db):
    _two_jobs(db)
    stranger, _ = md.account(db, "stranger", grant=0)
    for by in statements.BY:
        assert db.transact(statements.statement, stranger, by, T - DAY, T + DAY)["rows"] == []


def test_a_statement_is_bounded_in_range_and_rows(db):
    owner, _, _, cheap, _ = _two_jobs(db)
    with pytest.raises(MarketError, match="at most 366 days"):
        db.transact(statements.statement, owner, "job", T - 400 * DAY, T)
    with pytest.raises(MarketError, match="job, batch, client, day"):
        db.transact(statements.statement, owner, "week", T - DAY, T + DAY)
    s = db.transact(statements.statement, owner, "job", T - DAY, T + DAY, 1)
    assert s["truncated"] and [r["job"] for r in s["rows"]] == [cheap]


def test_dates_are_whole_utc_days_with_until_included():
    assert statements.parse_range("2027-01-15", "2027-01-15", 0.0) == (1_800_000_000.0 - 8 * 3600, T - 8 * 3600 + DAY)
    assert statements.parse_range(None, None, T) == (T - 30 * DAY, T)
    with pytest.raises(MarketError, match="a date like"):
        statements.parse_range("15/01/2027", None, T)


# -- through the real market ----------------------------------------------------------------------


@pytest.fixture
def processes():
    from tests.servers import stop_all

    running: list = []
    yield running
    stop_all(running)


def _statement(server, name, token, *args):
    from tests.servers import MARKET

    env = dict(os.environ, PYTHONPATH=os.getcwd(), MARKET_TOKEN=token)
    return subprocess.run(
        [*MARKET, "statement", *args, "--server", server.url, "--account", name],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_market_statement_prints_text_json_and_csv_to_the_owner_only(tmp_path, processes):
    from market.accounts import issue_api_token
    from market.store import Database, upgrade
    from tests.servers import Market

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    server = Market(url, str(tmp_path)).start()
    processes.append(server)
    now = time.time()
    paid_at = an_hour_ago_within_one_day(now)
    owner, host, box, cheap, dear = _two_jobs(db, paid_at)
    token, host_token = issue_api_token(db, owner), issue_api_token(db, host)

    text = _statement(server, "alice", token)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["job", "name", "batch", "slices", "paid"]
    assert lines[1].split() == [str(cheap), "cheap", "0", "7", "0.07"]
    assert lines[2].split() == [str(dear), "dear", "0", "2", "10.00"]
    assert lines[3] == "paid in all: 10.07 credits"

    as_json = json.loads(_statement(server, "alice", token, "--json").stdout)
    assert as_json["paid"] == "10.07" and [r["paid"] for r in as_json["rows"]] == ["0.07", "10.00"]

    as_csv = list(csv.DictReader(io.StringIO(_statement(server, "host", host_token, "--by", "client", "--csv").stdout)))
    assert as_csv == [{"client": str(box), "name": "box", "slices": "9", "earned": "10.07"}]

    day = time.strftime("%Y-%m-%d", time.gmtime(paid_at + 10))
    by_day = _statement(server, "alice", token, "--by", "day", "--since", day, "--until", day, "--json")
    assert json.loads(by_day.stdout)["rows"][0]["out"] == "10.07"

    # the host (a stranger to alice's jobs) sees none of them
    assert json.loads(_statement(server, "host", host_token, "--json").stdout)["rows"] == []
    bad = _statement(server, "alice", token, "--since", "yesterday")
    assert bad.returncode != 0 and "a date like 2026-12-04" in bad.stderr


@pytest_twisted.ensureDeferred
async def test_the_statement_page_shows_the_members_own_money_and_refuses_a_bad_range(market):
    b = await market.member("wendy")
    wendy = market.account_id("wendy")
    _, _, _, cheap, dear = _two_jobs(market.db, an_hour_ago_within_one_day(time.time()), owner=wendy)
    ledger = await b.get("/ledger")
    assert 'href="/statement"' in ledger.text
    page = await b.get("/statement")
    assert page.code == 200 and 'id="statement"' in page.text
    assert f'<a href="/jobs/{cheap}">{cheap}</a></td><td>cheap</td>' in page.text
    assert f'<a href="/jobs/{dear}">{dear}</a></td><td>dear</td>' in page.text
    assert "10.07" in page.text  # in all
    by_day = await b.get("/statement?by=day")
    assert by_day.code == 200 and "−10.07" in by_day.text
    bad = await b.get("/statement?since=soon")
    assert bad.code == 400 and "a date like 2026-12-04" in bad.text
    # another member sees only their own (nothing)
    other = await market.member("xena")
    theirs = await other.get("/statement")
    assert theirs.code == 200 and "No money moved in this range." in theirs.text and "cheap" not in theirs.text
