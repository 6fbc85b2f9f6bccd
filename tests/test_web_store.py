"""The web's SQL (market.store.web) on SQLite and MariaDB, and the main pages on both backends."""

from __future__ import annotations

import time

import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st

from market.store import web as sql_web
from tests import marketdata
from tests.test_web_support import finish_job, make_job, start_site


def test_job_events_are_the_accounts_own_newest_first(db):
    me, _ = marketdata.account(db, "ann")
    other, _ = marketdata.account(db, "ben")
    first = make_job(db, me, "first")
    make_job(db, other, "not mine")
    second = make_job(db, me, "second")
    finish_job(db, second, 7)
    events = db.transact(sql_web.job_events, me)
    assert {e["job_id"] for e in events} == {first, second}
    assert [e["event"] for e in events if e["job_id"] == second] == ["finished", "submitted"]
    assert [e["at"] for e in events] == sorted((e["at"] for e in events), reverse=True)


def test_end_other_sessions_keeps_the_current_one(db):
    from market.store import accounts as sql

    me, _ = marketdata.account(db, "cleo")
    now = time.time()
    for h in ("a" * 64, "b" * 64, "c" * 64):
        db.transact(sql.create_session, h, me, "x" * 43, now, now + 60)
    assert db.transact(sql_web.end_other_sessions, me, "b" * 64) == 2
    assert db.transact(sql.session, "b" * 64, now) is not None
    assert db.transact(sql.session, "a" * 64, now) is None


def test_owned_client_and_speeds(db):
    from market.core.errors import NotFound

    me, _ = marketdata.account(db, "dina")
    other, _ = marketdata.account(db, "egon")
    mine, _ = marketdata.client(db, me, "box", speed=50.0)
    theirs, _ = marketdata.client(db, other, "box", speed=70.0)
    assert db.transact(sql_web.owned_client, me, mine)["speed"] == 50.0
    try:
        db.transact(sql_web.owned_client, me, theirs)
        raise AssertionError("another member's client was found")
    except NotFound:
        pass
    assert db.transact(sql_web.client_speeds, me) == {mine: 50.0}


@pytest_twisted.ensureDeferred
async def test_the_main_pages_work_on_this_backend(db, tmp_path):
    wm, port = await start_site(db, tmp_path)
    try:
        b = await wm.member("fritz")
        me = wm.account_id("fritz")
        job = make_job(db, me, "on this backend")
        page = await b.get("/jobs")
        assert (await b.post("/jobs/prices", {f"price-{job}": "3.00"}, csrf=page.csrf())).code == 303
        for path in ("/", "/jobs", f"/jobs/{job}", "/submit", "/clients", "/ledger", "/report.xml"):
            assert (await b.get(path)).code == 200, path
        assert (await b.post("/clients", {"name": "pc"})).code == 200
    finally:
        await port.stopListening()


def test_parse_arguments_accepts_lists_objects_and_nothing():
    from market.web.job_pages import parse_arguments

    @settings(max_examples=60, deadline=None)
    @given(
        st.one_of(
            st.lists(st.integers() | st.text(max_size=5), max_size=4),
            st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), max_size=3),
        )
    )
    def check(value):
        import json

        args, kwargs = parse_arguments(json.dumps(value))
        assert (args if isinstance(value, list) else kwargs) == value

    check()
    assert parse_arguments("  ") == ([], {})


def test_throttle_never_allows_more_failures_than_its_limit_in_a_period():
    from twisted.internet.task import Clock

    from market.web.throttle import LoginThrottle

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.sampled_from(["a", "b"]), st.floats(0, 30)), max_size=60))
    def check(attempts):
        clock = Clock()
        t = LoginThrottle(clock, per_name=3, per_address=1000, period=60)
        allowed = []
        for name, pause in attempts:
            clock.advance(pause)
            if t.attempt(name, "addr") == 0:
                allowed.append((name, clock.seconds()))
        for name, at in allowed:
            window = [a for n, a in allowed if n == name and at - 60 < a <= at]
            assert len(window) <= 3

    check()
