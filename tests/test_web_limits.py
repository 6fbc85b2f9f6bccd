"""The web site's limits for strangers: log-in attempts counted before hashing, sign-ups per address
and per mailbox, grants at confirmation, a cap on hashing at once, the report from cached files,
and member text shown escaped everywhere."""

from __future__ import annotations

import os
import threading
import time

import pytest
import pytest_twisted
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from twisted.internet import defer
from twisted.internet.task import Clock

from market.settings import WebSettings
from market.web.throttle import Busy, HashingGate, LoginThrottle, SignupThrottle, Throttle, mailbox
from tests.test_web_support import make_job, sqlite_db, start_site

# -- the throttles ----------------------------------------------------------------------------------


def test_an_attempt_is_counted_when_it_is_allowed_and_refused_ones_count_nothing():
    clock = Clock()
    t = LoginThrottle(clock, per_name=3, per_address=100, period=60)
    # twenty guesses arriving together, before any hash has finished: three are let through
    assert [t.attempt("kim", "10.0.0.1") for _ in range(20)].count(0.0) == 3
    assert t.attempt("kim", "10.0.0.1") == pytest.approx(60)
    clock.advance(60)
    assert t.attempt("kim", "10.0.0.1") == 0


def test_a_right_password_clears_the_name_and_gives_the_address_its_attempt_back():
    clock = Clock()
    t = LoginThrottle(clock, per_name=2, per_address=2, period=60)
    assert t.attempt("kim", "a") == 0
    t.succeeded("kim", "a")
    assert t.attempt("kim", "a") == 0 and t.attempt("kim", "a") == 0  # the name was cleared
    assert t.attempt("other", "a") > 0  # the address: two attempts that failed
    t.refund("kim", "a")  # an attempt that never ran (the site was busy) comes back to both keys
    assert t.attempt("other", "a") == 0


def test_a_throttle_remembers_a_bounded_number_of_keys():
    clock = Clock()
    t = Throttle(clock, {"address": 5}, period=100, max_keys=50)
    allowed = [t.attempt(address=f"10.0.{i // 250}.{i % 250}") == 0 for i in range(200)]
    assert allowed.count(True) == 50 and len(t) == 50  # the rest are refused until old keys age out
    clock.advance(100)
    assert t.attempt(address="10.9.9.9") == 0 and len(t) == 1  # the sweep forgot the old ones


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.booleans(), st.floats(0, 30)), max_size=80))
def test_failed_attempts_never_exceed_the_limits_in_any_period(events):
    """Per address: at most 5 failures in any 60 s. Per name: at most 3 since its last right password."""
    clock = Clock()
    t = LoginThrottle(clock, per_name=3, per_address=5, period=60)
    failed: list[tuple[str, float, int]] = []  # (name, when, how many right passwords before it)
    rights = {"a": 0, "b": 0, "c": 0}
    for name, right, pause in events:
        clock.advance(pause)
        if t.attempt(name, "addr") == 0:
            if right:
                t.succeeded(name, "addr")
                rights[name] += 1
            else:
                failed.append((name, clock.seconds(), rights[name]))
    for name, at, era in failed:
        assert len([1 for _, a, _ in failed if at - 60 < a <= at]) <= 5
        assert len([1 for n, a, e in failed if n == name and e == era and at - 60 < a <= at]) <= 3


def test_sign_ups_are_counted_per_address_and_per_mailbox():
    clock = Clock()
    t = SignupThrottle(clock, per_address=10, per_email=2, period=3600)
    assert t.attempt("10.0.0.1", "Ann+one@Example.org") == 0
    assert t.attempt("10.0.0.2", "ann+two@example.org") == 0
    assert t.attempt("10.0.0.3", "ANN@example.org") > 0  # the same mailbox, a third time
    assert t.attempt("10.0.0.3", "bob@example.org") == 0
    assert mailbox(" Ann+x@Example.ORG ") == "ann@example.org"


@pytest_twisted.ensureDeferred
async def test_hashing_beyond_the_waiting_line_is_refused_at_once():
    gate = HashingGate(running=1, waiting=1)
    release = threading.Event()
    first = defer.ensureDeferred(gate.run(release.wait, 10))
    second = defer.ensureDeferred(gate.run(lambda: "second"))
    with pytest.raises(Busy):
        await gate.run(lambda: "third")
    release.set()
    assert await first is True and await second == "second"


# -- the pages --------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_parallel_log_in_guesses_reach_the_hash_only_as_often_as_the_limit(tmp_path):
    from twisted.internet import reactor

    from market import accounts

    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path, throttle=LoginThrottle(reactor, per_name=4, per_address=100, period=60))
    try:
        accounts.create_account(db, "kim", "kim@example.org", "correct horse", confirm=False)
        form = await wm.browser.get("/login")
        guesses = [
            wm.browser.post("/login", {"name": "kim", "password": f"guess {i}"}, csrf=form.csrf()) for i in range(20)
        ]
        codes = [page.code for page in await defer.gatherResults([defer.ensureDeferred(g) for g in guesses])]
        assert codes.count(401) == 4 and codes.count(429) == 16
        blocked = await wm.browser.post("/login", {"name": "kim", "password": "correct horse"})
        assert blocked.code == 429 and blocked.header("Retry-After")
    finally:
        await port.stopListening()
        db.close()


@pytest_twisted.ensureDeferred
async def test_a_busy_site_answers_503_and_counts_nothing(tmp_path):
    from market import accounts

    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path)
    wm.web.hashing = HashingGate(running=1, waiting=0)
    try:
        accounts.create_account(db, "kim", "kim@example.org", "correct horse", confirm=False)
        release = threading.Event()
        busy = defer.ensureDeferred(wm.web.hashing.run(release.wait, 10))  # someone else's hash running
        page = await wm.browser.post("/login", {"name": "kim", "password": "correct horse"})
        assert page.code == 503 and page.header("Retry-After") == "60" and "Try again in a minute" in page.text
        release.set()
        await busy
        assert wm.web.throttle.wait("kim", "127.0.0.1") == 0 and len(wm.web.throttle.counts) == 0
        assert (await wm.browser.post("/login", {"name": "kim", "password": "correct horse"})).code == 303
    finally:
        await port.stopListening()
        db.close()


def _signup(name, email="new@example.org"):
    return {"name": name, "email": email, "password": "a long password", "again": "a long password"}


@pytest_twisted.ensureDeferred
async def test_sign_ups_are_limited_per_address_and_per_mailbox(tmp_path):
    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path, settings=WebSettings(signups_per_address=3, signups_per_email=2))
    try:
        assert (await wm.browser.post("/signup", _signup("one", "ann@example.org"))).code == 200
        assert (await wm.browser.post("/signup", _signup("two", "Ann+2@example.org"))).code == 200
        same_mailbox = await wm.browser.post("/signup", _signup("three", "ann+3@example.org"))
        assert same_mailbox.code == 429 and "Too many sign-ups" in same_mailbox.text
        assert (await wm.browser.post("/signup", _signup("four", "bob@example.org"))).code == 200
        same_address = await wm.browser.post("/signup", _signup("five", "cy@example.org"))
        assert same_address.code == 429 and same_address.header("Retry-After")
        names = db.transact(lambda tx: [r["name"] for r in tx.all("SELECT name FROM accounts ORDER BY id")])
        assert names == ["one", "two", "four"] and len(wm.outbox.messages()) == 3
        # a form with mistakes costs nothing and counts nothing
        wm.web.signups.counts.clear(address="127.0.0.1")
        assert (await wm.browser.post("/signup", _signup("x"))).code == 400
        assert wm.web.signups.counts.wait(address="127.0.0.1") == 0
    finally:
        await port.stopListening()
        db.close()


@pytest_twisted.ensureDeferred
async def test_a_signed_up_account_gets_its_starting_grant_when_confirmed_and_only_once(tmp_path):
    from market.store import accounts as sql

    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path)
    try:
        assert (await wm.browser.post("/signup", _signup("newbie", "newbie@example.org"))).code == 200
        assert db.transact(sql.account_by_name, "newbie")["balance"] == 0
        assert db.transact(sql.audit)["granted"] == 0
        link = wm.outbox.link("newbie@example.org").replace(wm.base, "")
        assert (await wm.browser.get(link)).code == 200
        assert (await wm.browser.get(link)).code == 404
        assert db.transact(sql.account_by_name, "newbie")["balance"] == 10_000
        audit = db.transact(sql.audit)
        assert audit["balanced"] and audit["granted"] == 10_000
    finally:
        await port.stopListening()
        db.close()


# -- the report from files ----------------------------------------------------------------------------


class SlowBuild:
    """A report build that records how many run at once and how often each requester's was built."""

    def __init__(self, seconds=0.05, fail_for=()):
        self.seconds, self.fail_for = seconds, set(fail_for)
        self.running = self.most = 0
        self.built: list[str | None] = []
        self.lock = threading.Lock()

    def __call__(self, db, requester, path):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.seconds)
            if requester in self.fail_for:
                raise RuntimeError("the database went away")
            with open(path, "wb") as f:
                f.write(f"report for {requester} #{len(self.built) + 1}".encode())
            self.built.append(requester)
        finally:
            with self.lock:
                self.running -= 1


def _read(f):
    with f:
        return f.read().decode()


@pytest_twisted.ensureDeferred
async def test_concurrent_requests_share_one_build_and_builds_run_one_at_a_time(tmp_path):
    from market.web.reports import ReportFiles

    build = SlowBuild()
    reports = ReportFiles(None, Clock(), max_age=60, max_files=10, directory=str(tmp_path), build=build)
    opened = await defer.gatherResults(
        [defer.ensureDeferred(reports.open(who)) for who in [None] * 10 + ["ann", "bob", "ann", "cy"]]
    )
    texts = [_read(f) for f in opened]
    assert sorted(build.built, key=str) == sorted([None, "ann", "bob", "cy"], key=str)
    assert build.most == 1  # one build at a time, whoever asked
    assert len(set(texts[:10])) == 1 and texts[10] == texts[12]


@pytest_twisted.ensureDeferred
async def test_a_report_is_rebuilt_at_most_every_max_age_and_the_old_file_is_served_meanwhile(tmp_path):
    from market.web.reports import ReportFiles

    clock, build = Clock(), SlowBuild(seconds=0.2)
    reports = ReportFiles(None, clock, max_age=60, directory=str(tmp_path), build=build)
    assert _read(await reports.open(None)) == "report for None #1"
    clock.advance(59)
    assert _read(await reports.open(None)) == "report for None #1" and reports.builds == 1
    clock.advance(1)
    # due: a rebuild starts, and this request (and the next) get the previous file without waiting
    assert _read(await reports.open(None)) == "report for None #1"
    assert _read(await reports.open(None)) == "report for None #1"
    while reports.builds < 2:
        await defer.ensureDeferred(_sleep(0.05))
    assert _read(await reports.open(None)) == "report for None #2" and build.built == [None, None]
    assert len(os.listdir(tmp_path)) == 1  # the replaced file is gone


async def _sleep(seconds):
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_members_report_files_are_bounded_least_recently_fetched_first(tmp_path):
    from market.web.reports import ReportFiles

    build = SlowBuild(seconds=0)
    reports = ReportFiles(None, Clock(), max_age=60, max_files=3, directory=str(tmp_path), build=build)
    _read(await reports.open(None))
    for name in ["m1", "m2", "m3", "m1", "m4", "m5"]:
        _read(await reports.open(name))
    assert len(reports) == 4 and len(os.listdir(tmp_path)) == 4  # the anonymous one and three members'
    _read(await reports.open("m1"))  # kept: fetched recently
    _read(await reports.open("m2"))  # evicted earlier: built again
    assert build.built.count("m1") == 1 and build.built.count("m2") == 2
    reports.close()
    assert os.listdir(tmp_path) == []


@pytest_twisted.ensureDeferred
async def test_a_failed_build_fails_its_waiters_and_the_next_request_tries_again(tmp_path):
    from market.web.reports import ReportFiles

    build = SlowBuild(seconds=0, fail_for={"ann"})
    reports = ReportFiles(None, Clock(), directory=str(tmp_path), build=build)
    with pytest.raises(RuntimeError, match="went away"):
        await reports.open("ann")
    build.fail_for.clear()
    assert _read(await reports.open("ann")) == "report for ann #1"


@pytest_twisted.ensureDeferred
async def test_report_xml_is_served_from_the_file_and_members_get_their_own(tmp_path):
    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path, settings=WebSettings(report_seconds=60))
    try:
        b = await wm.member("ann")
        make_job(db, wm.web.db.transact(lambda tx: tx.scalar("SELECT id FROM accounts WHERE name = 'ann'")))
        anonymous = [await wm.new_browser().get("/report.xml") for _ in range(5)]
        own = [await b.get("/report.xml") for _ in range(3)]
        assert wm.web.reports.builds == 2  # one anonymous, one for ann
        assert len({p.body for p in anonymous}) == 1 and b'owner="ann"' not in anonymous[0].body
        assert b'owner="ann"' in own[0].body and own[0].body.rstrip().endswith(b"</report>")
        etree.fromstring(own[0].body)
    finally:
        await port.stopListening()
        wm.web.reports.close()
        db.close()


# -- member text, escaped ----------------------------------------------------------------------------


def _rename(db, job_id, name):
    db.transact(lambda tx: tx.execute("UPDATE jobs SET name = ? WHERE id = ?", (name, job_id)))


@pytest_twisted.ensureDeferred
async def test_pages_and_the_feed_show_control_characters_of_names_as_escapes(tmp_path):
    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path)
    try:
        b = await wm.member("ann")
        ann = db.transact(lambda tx: tx.scalar("SELECT id FROM accounts WHERE name = 'ann'"))
        job_id = make_job(db, ann)
        _rename(db, job_id, "red \x1b[31m<b>x</b> \u202eabc\x00")  # a name from before names were checked
        for path in ("/jobs", f"/jobs/{job_id}"):
            page = await b.get(path)
            assert page.code == 200
            assert "red \\x1b[31m&lt;b&gt;x&lt;/b&gt; \\u202eabc\\x00" in page.text
            assert not [c for c in page.text if c in "\x1b\u202e\x00"]
        feed_path = (await b.get("/jobs")).text.split('href="/feed/')[1].split('"')[0]
        feed = await wm.new_browser().get("/feed/" + feed_path)
        assert feed.code == 200
        titles = etree.fromstring(feed.body).findall(".//{http://www.w3.org/2005/Atom}title")
        assert any("red \\x1b[31m<b>x</b> \\u202eabc\\x00" in t.text for t in titles)
    finally:
        await port.stopListening()
        db.close()


def test_a_submitted_modules_source_comes_back_in_the_form_exactly():
    from market.web.render import Renderer

    class Request:
        def setResponseCode(self, code):
            pass

        def setHeader(self, name, value):
            pass

    from market.web.sessions import Visitor

    source = "def main():\n    return '\x0c\t'\n"
    visitor = Visitor(csrf="x", account_id=1, name="ann")
    form = dict(source=source, functions=["main"], function="main", args="", name="", price="1.00", errors={})
    html = Renderer().page(Request(), "submit.html", visitor=visitor, max_kib=1024, **form).decode()
    assert "return &#39;\x0c\t&#39;" in html
