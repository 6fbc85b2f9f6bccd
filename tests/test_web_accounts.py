"""Web accounts: sign up, confirm by e-mailed link, log in and out, change password; sessions,
cookies, CSRF, the log-in rate limit and no user enumeration."""

from __future__ import annotations

import re

import pytest_twisted

from tests.test_web_support import Browser, market, sqlite_db, start_site  # noqa: F401  (fixture)


def _signup(name, email="x@example.org", password="a good password", again=None):
    return {"name": name, "email": email, "password": password, "again": again if again is not None else password}


@pytest_twisted.ensureDeferred
async def test_login_page_is_the_start_page_for_visitors(market):
    page = await market.browser.get("/")
    assert page.code == 200
    assert "Log in" in page.text and 'href="/signup"' in page.text
    assert page.csrf()


@pytest_twisted.ensureDeferred
async def test_signup_sends_a_link_that_confirms_the_account_and_then_login_works(market):
    b = market.browser
    page = await b.post("/signup", _signup("alice", "alice@example.org"))
    assert page.code == 200 and "Check your e-mail" in page.text
    link = market.outbox.link("alice@example.org")
    assert link and link.startswith(market.base + "/confirm/")
    # before confirming, the right password does not log in
    page = await b.post("/login", {"name": "alice", "password": "a good password"})
    assert page.code == 403 and "not confirmed" in page.text
    page = await b.get(link[len(market.base) :])
    assert page.code == 200 and "confirmed" in page.text
    # a confirmation link works once
    again = await b.get(link[len(market.base) :])
    assert again.code == 404 and "not valid" in again.text
    page = await b.post("/login", {"name": "alice", "password": "a good password"})
    assert page.code == 303 and page.header("location") == "/"
    home = await b.get("/")
    assert "Welcome alice." in home.text and "100.00" in home.text


@pytest_twisted.ensureDeferred
async def test_signup_errors_are_shown_in_the_form(market):
    page = await market.browser.post("/signup", _signup("A!", "not-an-address", "short", "other"))
    assert page.code == 400
    assert "is not allowed" in page.text  # name
    assert "does not look like an e-mail address" in page.text
    assert "at least 8 characters" in page.text
    assert 'aria-invalid="true"' in page.text and "Traceback" not in page.text


@pytest_twisted.ensureDeferred
async def test_signup_with_a_taken_name_looks_the_same_and_warns_the_owner(market):
    await market.member("bob")
    taken = await market.new_browser().post("/signup", _signup("bob", "mallory@example.org"))
    free = await market.new_browser().post("/signup", _signup("carol", "mallory@example.org"))
    assert taken.code == free.code == 200
    assert taken.text.replace("mallory", "") == free.text.replace("mallory", "")
    to = [m["To"] for m in market.outbox.messages()]
    assert "bob@example.org" in to  # the owner hears of it; the asker gets nothing about bob
    assert market.outbox.link("mallory@example.org")  # only carol's link
    assert sum(1 for m in market.outbox.messages() if m["To"] == "mallory@example.org") == 1


@pytest_twisted.ensureDeferred
async def test_login_failures_say_the_same_for_unknown_names_and_wrong_passwords(market):
    await market.member("dave")
    unknown = await market.new_browser().post("/login", {"name": "nobody", "password": "whatever1"})
    wrong = await market.new_browser().post("/login", {"name": "dave", "password": "whatever1"})
    assert unknown.code == wrong.code == 401
    assert "Wrong account name or password." in unknown.text
    strip = lambda p: p.text.replace("nobody", "").replace("dave", "").replace(p.csrf(), "")  # noqa: E731
    assert strip(unknown) == strip(wrong)


@pytest_twisted.ensureDeferred
async def test_session_cookie_is_httponly_samesite_and_only_its_hash_is_stored(market):
    b = market.new_browser()
    from market import accounts

    accounts.create_account(market.db, "erin", "erin@example.org", "correct horse", confirm=False)
    page = await b.post("/login", {"name": "erin", "password": "correct horse"})
    cookie = next(c for c in page.cookies() if c.startswith("market_session="))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP here; see the Secure test below
    token = b.jar["market_session"]
    rows = market.db.transact(lambda tx: tx.all("SELECT token_hash FROM web_sessions"))
    assert rows and all(token not in r["token_hash"] for r in rows)


@pytest_twisted.ensureDeferred
async def test_cookies_are_secure_when_the_public_url_is_https(tmp_path):
    from market import accounts
    from market.web.context import Web

    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path)
    try:
        wm.web.sessions.secure = True  # what Web does for --public-url https://...
        assert Web(db, None, None, public_url="https://market.example").sessions.secure
        accounts.create_account(db, "fred", "fred@example.org", "correct horse", confirm=False)
        page = await wm.browser.post("/login", {"name": "fred", "password": "correct horse"})
        assert all("Secure" in c for c in page.cookies())
    finally:
        await port.stopListening()
        db.close()


@pytest_twisted.ensureDeferred
async def test_sessions_live_in_the_database_and_logout_ends_them(market):
    b = await market.member("gina")
    assert (await b.get("/jobs")).code == 200
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM web_sessions")) == 1
    home = await b.get("/")
    page = await b.post("/logout", {}, csrf=home.csrf())
    assert page.code == 303
    assert market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM web_sessions")) == 0
    assert (await b.get("/jobs")).header("location") == "/login"


@pytest_twisted.ensureDeferred
async def test_a_stolen_cookie_stops_working_after_logout(market):
    b = await market.member("hank")
    stolen = Browser(market.base, dict(b.jar))
    home = await b.get("/")
    await b.post("/logout", {}, csrf=home.csrf())
    assert (await stolen.get("/jobs")).code == 303


@pytest_twisted.ensureDeferred
async def test_every_form_refuses_a_post_without_the_csrf_token(market):
    b = await market.member("ivy")
    for path in ("/logout", "/password", "/submit", "/jobs/prices", "/clients"):
        page = await b.post(path, {"name": "x"}, csrf=None)
        assert page.code == 403, path
        assert "did not come from this site" in page.text
        page = await b.post(path, {"name": "x"}, csrf="forged-token")
        assert page.code == 403, path
    anonymous = market.new_browser()
    for path in ("/login", "/signup"):
        assert (await anonymous.post(path, {"name": "ivy", "password": "correct horse"}, csrf=None)).code == 403
    # still logged in: the refused logout did nothing
    assert (await b.get("/jobs")).code == 200


@pytest_twisted.ensureDeferred
async def test_every_form_on_every_page_carries_the_csrf_token(market):
    b = await market.member("jack")
    for path in ("/", "/submit", "/jobs", "/clients", "/password", "/ledger"):
        page = await b.get(path)
        assert page.code == 200, path
        # every form that changes something (POST) carries it; a GET form (the jobs list's filters) changes nothing
        posts = len(re.findall(r'<form[^>]*method="post"', page.text, flags=re.I))
        assert posts == page.text.count('name="csrf"'), path
        assert page.text.count("<form") == posts + len(re.findall(r'<form[^>]*method="get"', page.text, flags=re.I)), (
            path
        )
    for path in ("/login", "/signup"):
        page = await market.new_browser().get(path)
        assert page.text.count("<form") == page.text.count('name="csrf"') == 1


@pytest_twisted.ensureDeferred
async def test_login_is_rate_limited_per_name(tmp_path):
    from twisted.internet.task import Clock

    from market import accounts
    from market.web.throttle import LoginThrottle

    db = sqlite_db(tmp_path)
    clock = Clock()
    clock.advance(1000)
    wm, port = await start_site(db, tmp_path, throttle=LoginThrottle(clock, per_name=3, per_address=100, period=60))
    try:
        accounts.create_account(db, "kim", "kim@example.org", "correct horse", confirm=False)
        for _ in range(3):
            assert (await wm.browser.post("/login", {"name": "kim", "password": "wrong guess"})).code == 401
        blocked = await wm.browser.post("/login", {"name": "kim", "password": "correct horse"})
        assert blocked.code == 429 and "Too many failed log-ins" in blocked.text
        # an unknown name is limited the same way (no telling which names exist)
        for _ in range(3):
            await wm.browser.post("/login", {"name": "nobody", "password": "wrong guess"})
        assert (await wm.browser.post("/login", {"name": "nobody", "password": "x"})).code == 429
        clock.advance(61)
        assert (await wm.browser.post("/login", {"name": "kim", "password": "correct horse"})).code == 303
    finally:
        await port.stopListening()
        db.close()


def test_throttle_counts_per_address_too():
    from twisted.internet.task import Clock

    from market.web.throttle import LoginThrottle

    clock = Clock()
    t = LoginThrottle(clock, per_name=100, per_address=4, period=10)
    for i in range(4):
        assert t.attempt(f"name{i}", "10.0.0.1") == 0
    assert t.attempt("another", "10.0.0.1") > 0
    assert t.attempt("another", "10.0.0.2") == 0
    clock.advance(10)
    assert t.attempt("another", "10.0.0.1") == 0


@pytest_twisted.ensureDeferred
async def test_change_password_needs_the_current_one_and_logs_out_other_sessions(market):
    b = await market.member("lena", "first password")
    other = market.new_browser()
    assert (await other.post("/login", {"name": "lena", "password": "first password"})).code == 303
    wrong = await b.post(
        "/password", {"current": "not it at all", "new": "second password", "again": "second password"}
    )
    assert wrong.code == 400 and "not your current password" in wrong.text
    differ = await b.post(
        "/password", {"current": "first password", "new": "second password", "again": "third password"}
    )
    assert differ.code == 400 and "differ" in differ.text
    ok = await b.post("/password", {"current": "first password", "new": "second password", "again": "second password"})
    assert ok.code == 200 and "password is changed" in ok.text
    assert (await b.get("/jobs")).code == 200  # this session stays
    assert (await other.get("/jobs")).code == 303  # the other one is gone
    fresh = market.new_browser()
    assert (await fresh.post("/login", {"name": "lena", "password": "first password"})).code == 401
    assert (await fresh.post("/login", {"name": "lena", "password": "second password"})).code == 303


@pytest_twisted.ensureDeferred
async def test_member_pages_send_visitors_to_the_login_page(market):
    for path in ("/jobs", "/submit", "/clients", "/ledger", "/password", "/jobs/1", "/clients/1", "/jobs/1/result"):
        page = await market.browser.get(path)
        assert page.code == 303 and page.header("location") == "/login", path


@pytest_twisted.ensureDeferred
async def test_pages_carry_security_headers_and_no_script(market):
    page = await market.browser.get("/login")
    assert "default-src 'none'" in page.header("content-security-policy")
    assert page.header("x-content-type-options") == "nosniff"
    assert page.header("referrer-policy") == "no-referrer"
    assert "<script" not in page.text
    css = await market.browser.get("/static/style.css")
    assert css.code == 200 and css.header("content-type").startswith("text/css")


@pytest_twisted.ensureDeferred
async def test_unknown_pages_are_plain_404s(market):
    page = await market.browser.get("/no/such/page")
    assert page.code == 404 and "There is no page here." in page.text
    assert (await market.browser.request("DELETE", "/login")).code == 405


@pytest_twisted.ensureDeferred
async def test_autoescape_keeps_markup_in_names_as_text(market):
    b = await market.member("mona")
    page = await b.post("/clients", {"name": "<script>alert(1)</script>"})
    assert page.code == 400
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;" in page.text


@pytest_twisted.ensureDeferred
async def test_without_a_relay_the_mail_is_filed_in_the_outbox_and_its_link_logged(market):
    from twisted.logger import formatEvent, globalLogPublisher

    lines = []

    def observe(event):
        lines.append(formatEvent(event))

    globalLogPublisher.addObserver(observe)
    try:
        await market.browser.post("/signup", _signup("nora", "nora@example.org"))
    finally:
        globalLogPublisher.removeObserver(observe)
    link = market.outbox.link("nora@example.org")
    files = list(market.outbox.path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".eml" and files[0].stat().st_mode & 0o077 == 0
    assert any(link in line and "outbox" in line for line in lines)


@pytest_twisted.ensureDeferred
async def test_password_hashing_runs_off_the_reactor_thread(market, monkeypatch):
    import threading

    from market.accounts import credentials

    threads = []
    real_hash, real_verify = credentials.hash_password, credentials.verify_password

    def hash_password(password):
        threads.append(threading.current_thread())
        return real_hash(password)

    def verify_password(password_hash, password):
        threads.append(threading.current_thread())
        return real_verify(password_hash, password)

    monkeypatch.setattr(credentials, "hash_password", hash_password)
    monkeypatch.setattr(credentials, "verify_password", verify_password)
    b = market.new_browser()
    await b.post("/signup", _signup("olga", "olga@example.org"))
    await b.post("/login", {"name": "olga", "password": "wrong password"})
    await b.post("/login", {"name": "nobody", "password": "wrong password"})
    assert len(threads) >= 3
    assert all(t is not threading.main_thread() for t in threads)
