"""Issue 19, accounts in the web: named API tokens (shown once, stored hashed, last use shown,
revoked at once for XML-RPC), password reset and "resend the confirmation" by e-mail (no
enumeration, single use, expiring, rate-limited), disabled accounts and revoked clients."""

from __future__ import annotations

import base64
import re

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from market.accounts import credentials
from market.core.errors import Forbidden, NotAuthenticated
from market.rpc.methods import Caller, MarketRPC
from market.store import tokens as sql_tokens
from tests import marketdata as md
from tests.test_web_support import market, sqlite_db, start_site  # noqa: F401  (fixture)


class _Dispatcher:
    def __init__(self, db):
        self.db, self.clock = db, Clock()
        self.clock.advance(1_700_000_000)


def _header(user: str, token: str) -> bytes:
    return b"Basic " + base64.b64encode(f"{user}:{token}".encode())


async def _identify(rpc, header):
    caller = rpc.identify(header)
    return caller if isinstance(caller, Caller) else await caller


def _mail_link(wm, to: str, path: str) -> str | None:
    for msg in reversed(wm.outbox.messages()):
        if msg["To"] == to:
            m = re.search(rf"https?://\S+(/{path}/\S+)", msg.get_payload(decode=True).decode())
            if m:
                return m.group(1)
    return None


async def _create_token(b, name: str):
    form = await b.get("/tokens")
    page = await b.post("/tokens", {"name": name}, csrf=form.csrf())
    assert page.code == 200, page.text
    token = re.search(r'<code id="api-token">([^<]+)</code>', page.text).group(1)
    return page, token


@pytest_twisted.ensureDeferred
async def test_a_token_made_on_the_tokens_page_works_for_xmlrpc_and_is_stored_only_hashed(market):
    b = await market.member("alice")
    page, token = await _create_token(b, "laptop")
    assert "only this once" in page.text and "MARKET_TOKEN=" in page.text and "laptop" in page.text
    rows = market.db.transact(lambda tx: tx.all("SELECT token_hash, last_used FROM api_tokens"))
    assert rows == [{"token_hash": credentials.token_hash(token), "last_used": None}]
    rpc = MarketRPC(_Dispatcher(market.db))
    caller = await _identify(rpc, _header("alice", token))
    assert caller.kind == "account" and caller.row["name"] == "alice"
    # its last use is recorded and shown; the token itself is never shown again
    listing = await b.get("/tokens")
    assert token not in listing.text and "never" not in listing.text.split('id="tokens"')[1]


@pytest_twisted.ensureDeferred
async def test_a_token_revoked_in_the_web_is_refused_at_once_even_while_cached(market):
    b = await market.member("alice")
    _, token = await _create_token(b, "ci")
    rpc = MarketRPC(_Dispatcher(market.db))
    header = _header("account/alice", token)
    await _identify(rpc, header)  # now cached for AUTH_CACHE_SECONDS; the clock does not move
    listing = await b.get("/tokens")
    token_id = int(re.search(r'action="/tokens/(\d+)/revoke"', listing.text).group(1))
    page = await b.post(f"/tokens/{token_id}/revoke", {}, csrf=listing.csrf())
    assert page.code == 200 and "is revoked" in page.text and "No tokens yet" in page.text
    with pytest.raises(NotAuthenticated):
        await _identify(rpc, header)


@pytest_twisted.ensureDeferred
async def test_a_member_cannot_revoke_another_members_token(market):
    a = await market.member("alice")
    await _create_token(a, "mine")
    (token_id,) = market.db.transact(lambda tx: [r["id"] for r in tx.all("SELECT id FROM api_tokens")])
    m = await market.member("mallory")
    form = await m.get("/tokens")
    page = await m.post(f"/tokens/{token_id}/revoke", {}, csrf=form.csrf())
    assert page.code == 404 and "no token" in page.text
    assert len(market.db.transact(sql_tokens.list_api_tokens, market.account_id("alice"))) == 1


@pytest_twisted.ensureDeferred
async def test_token_names_are_bounded_and_unique_among_live_tokens(market):
    b = await market.member("alice")
    await _create_token(b, "laptop")
    form = await b.get("/tokens")
    page = await b.post("/tokens", {"name": "laptop"}, csrf=form.csrf())
    assert page.code == 400 and "already have a token named" in page.text
    page = await b.post("/tokens", {"name": "bad\x1b[31m"}, csrf=form.csrf())
    assert page.code == 400 and "1 to 64 printable" in page.text
    await b.post("/tokens", {"name": "y" * 5000}, csrf=form.csrf())  # kept to its first 64 characters
    names = [t["name"] for t in market.db.transact(sql_tokens.list_api_tokens, market.account_id("alice"))]
    assert names == ["y" * 64, "laptop"]


@pytest_twisted.ensureDeferred
async def test_the_cli_token_keeps_working_beside_the_web_tokens(market):
    from market import accounts

    account_id, _ = md.account(market.db, "bob")
    cli_token = accounts.issue_api_token(market.db, account_id)  # what market account token does
    b = market.new_browser()
    await market.web.db.run(
        lambda tx: tx.execute(
            "UPDATE accounts SET password_hash = ? WHERE id = ?",
            (credentials.hash_password("correct horse"), account_id),
        )
    )
    assert (await b.post("/login", {"name": "bob", "password": "correct horse"})).code == 303
    _, web_token = await _create_token(b, "web")
    rpc = MarketRPC(_Dispatcher(market.db))
    assert (await _identify(rpc, _header("bob", cli_token))).row["id"] == account_id
    assert (await _identify(rpc, _header("bob", web_token))).row["id"] == account_id
    with pytest.raises(NotAuthenticated):
        await _identify(rpc, _header("bob", web_token[:-2] + "xx"))


# -- password reset --------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_password_reset_by_mail_sets_a_new_password_once_and_logs_out_every_session(market):
    member = await market.member("alice", "old password")
    visitor = market.new_browser()
    form = await visitor.get("/reset")
    page = await visitor.post("/reset", {"email": "alice@example.org"}, csrf=form.csrf())
    assert page.code == 200 and "Check your e-mail" in page.text
    link = _mail_link(market, "alice@example.org", "reset")
    assert link
    form = await visitor.get(link)
    assert form.code == 200 and "Choose a new password" in form.text
    page = await visitor.post(link, {"new": "new password", "again": "new password"}, csrf=form.csrf())
    assert page.code == 200 and "Password changed" in page.text
    # single use
    again = await visitor.post(link, {"new": "third password", "again": "third password"}, csrf=form.csrf())
    assert again.code == 404 and "not valid" in again.text
    # the old session is over; the old password fails; the new one works
    assert (await member.get("/jobs")).code in (302, 303)
    fresh = market.new_browser()
    assert (await fresh.post("/login", {"name": "alice", "password": "old password"})).code == 401
    assert (await fresh.post("/login", {"name": "alice", "password": "new password"})).code == 303


@pytest_twisted.ensureDeferred
async def test_the_reset_request_answers_the_same_for_an_unknown_address_and_mails_nothing(market):
    await market.member("alice")
    known = await market.new_browser().post("/reset", {"email": "alice@example.org"})
    unknown = await market.new_browser().post("/reset", {"email": "nobody@example.org"})
    assert known.code == unknown.code == 200
    assert known.text.replace("alice", "nobody") == unknown.text.replace("alice", "nobody")
    assert [m["To"] for m in market.outbox.messages()] == ["alice@example.org"]


@pytest_twisted.ensureDeferred
async def test_a_reset_link_expires(tmp_path):
    db = sqlite_db(tmp_path)
    clock = Clock()
    clock.advance(1_000_000)
    wm, serving = await start_site(db, tmp_path, clock=clock)
    try:
        await wm.member("alice")
        await wm.new_browser().post("/reset", {"email": "alice@example.org"})
        link = _mail_link(wm, "alice@example.org", "reset")
        clock.advance(sql_tokens.RESET_SECONDS + 1)
        page = await wm.new_browser().get(link)
        assert page.code == 404 and "expired" in page.text
    finally:
        await serving.stopListening()
        wm.web.reports.close()
        db.close()


@pytest_twisted.ensureDeferred
async def test_reset_and_resend_requests_are_rate_limited_like_signups(market):
    b = market.new_browser()
    codes = [(await b.post("/reset", {"email": "x@example.org"})).code for _ in range(12)]
    assert 429 in codes and codes[0] == 200
    page = await b.post("/resend", {"email": "x@example.org"})
    assert page.code == 429 and "Try again" in page.text


# -- resend the confirmation -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_resend_mails_a_new_confirmation_link_and_the_old_one_stops_working(market):
    b = market.browser
    await b.post(
        "/signup",
        {"name": "carol", "email": "carol@example.org", "password": "a good password", "again": "a good password"},
    )
    first = market.outbox.link("carol@example.org")
    page = await market.new_browser().post("/resend", {"email": "carol@example.org"})
    assert page.code == 200 and "Check your e-mail" in page.text
    second = market.outbox.link("carol@example.org")
    assert second and second != first
    assert (await b.get(first[len(market.base) :])).code == 404
    assert (await b.get(second[len(market.base) :])).code == 200
    # a confirmed account gets no new confirmation mail
    before = len(market.outbox.messages())
    await market.new_browser().post("/resend", {"email": "carol@example.org"})
    assert len(market.outbox.messages()) == before


# -- disabled accounts and revoked clients ---------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_disabled_account_is_logged_out_and_cannot_log_in(market):
    from market.store import accounts as sql_accounts

    b = await market.member("alice")
    market.db.transact(sql_accounts.set_disabled, "alice", 1.0)
    assert (await b.get("/jobs")).code in (302, 303)
    page = await market.new_browser().post("/login", {"name": "alice", "password": "correct horse"})
    assert page.code == 403 and "disabled" in page.text
    market.db.transact(sql_accounts.set_disabled, "alice", None)
    assert (await market.new_browser().post("/login", {"name": "alice", "password": "correct horse"})).code == 303


@pytest_twisted.ensureDeferred
async def test_a_member_revokes_their_client_in_the_web_and_its_token_is_refused_at_once(market):
    b = await market.member("alice")
    cid, token = md.client(market.db, market.account_id("alice"), "box")
    rpc = MarketRPC(_Dispatcher(market.db))
    header = _header(f"client/{cid}", token)
    await _identify(rpc, header)  # cached
    listing = await b.get("/clients")
    page = await b.post(f"/clients/{cid}/revoke", {}, csrf=listing.csrf())
    assert page.code == 200 and "is revoked" in page.text and ">revoked<" in page.text
    with pytest.raises(Forbidden, match="revoked"):
        await _identify(rpc, header)
    # another member cannot revoke it (nor learn it exists)
    m = await market.member("mallory")
    other, _ = md.client(market.db, market.account_id("alice"), "box2")
    form = await m.get("/clients")
    assert (await m.post(f"/clients/{other}/revoke", {}, csrf=form.csrf())).code == 404
