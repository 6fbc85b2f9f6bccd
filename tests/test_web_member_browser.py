"""Issue 19's member pages in real headless Chromium, one flow each, against the web site served
in-process over SQLite (``tests.test_web_support.start_site``): the statement, the account page
(spending cap, e-mail when jobs end, a job held by the cap), password reset and resending the
confirmation (links from the site's outbox), and a member revoking their own client.

The browser script runs in a thread (``deferToThread``) so the test's reactor keeps serving the
site; the store is only touched from the reactor thread, between scripts.

With ``MARKET_WEB_SCREENSHOTS=DIR`` the pages are saved as 128-colour PNGs in DIR (docs/screenshots,
shown in docs/web.md): statement.png, account.png, reset.png.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest
import pytest_twisted
from twisted.internet import threads

from market import accounts
from market.core.errors import Forbidden
from market.rpc.methods import MarketRPC
from tests import marketdata as md
from tests.support import need, page_wait
from tests.test_caps import run_until_held
from tests.test_statement import _two_jobs, an_hour_ago_within_one_day
from tests.test_web_account_tokens import _Dispatcher, _header, _identify, _mail_link
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver
from tests.test_web_support import sqlite_db, start_site


def _wait(d, condition, what: str, timeout: float = 20):
    return page_wait(condition, lambda: f"{what} (at {d.current_url}: {d.title})", timeout)


def _shot(d, name: str) -> None:
    """The page as a small PNG (128 colours, like the other screenshots), if asked for."""
    shots = os.environ.get("MARKET_WEB_SCREENSHOTS")
    if not shots:
        return
    from PIL import Image

    os.makedirs(shots, exist_ok=True)
    path = os.path.join(shots, f"{name}.png")
    d.set_window_size(1000, 760)
    d.save_screenshot(path)
    Image.open(path).convert("RGB").quantize(128).save(path, optimize=True)


def _login(d, base: str, name: str, password: str) -> None:
    d.get(base + "/login")
    d.find_element("name", "name").send_keys(name)
    d.find_element("name", "password").send_keys(password)
    d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
    _wait(d, lambda: d.title.startswith("Home"), "the home page after logging in")


def _text(d, selector: str) -> str:
    return d.find_element("css selector", selector).text


@pytest_twisted.async_yield_fixture
async def site(tmp_path):
    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    db = sqlite_db(tmp_path)
    wm, serving = await start_site(db, tmp_path)
    drivers = []

    def browser():
        drivers.append(_driver(tempfile.mkdtemp(dir=tmp_path), tempfile.mkdtemp(dir=tmp_path)))
        return drivers[-1]

    wm.chromium = browser
    try:
        yield wm
    finally:
        for d in drivers:
            await threads.deferToThread(d.quit)
        await serving.stopListening()
        wm.web.reports.close()
        db.close()


@pytest_twisted.ensureDeferred
async def test_a_member_reads_their_statement_per_job_and_per_day_and_a_bad_range_says_why(site):
    accounts.create_account(site.db, "wendy", "wendy@example.org", "correct horse", confirm=False)
    paid_at = an_hour_ago_within_one_day(time.time())
    _, _, _, cheap, dear = _two_jobs(site.db, paid_at, owner=site.account_id("wendy"))  # 0.07 + 10.00
    today = time.strftime("%Y-%m-%d", time.gmtime(paid_at))

    def script():
        d = site.chromium()
        seen = {}
        _login(d, site.base, "wendy", "correct horse")
        d.get(site.base + "/ledger")
        d.find_element("link text", "Statement").click()
        _wait(d, lambda: d.title.startswith("Statement"), "the statement page")
        seen["jobs"] = [r.text for r in d.find_elements("css selector", "#statement tbody tr")]
        seen["total"] = _text(d, "#statement tfoot")
        _shot(d, "statement")
        d.find_element("css selector", "select[name=by] option[value=day]").click()
        d.find_element("css selector", "form.statement-range button[type=submit]").click()
        _wait(d, lambda: "by=day" in d.current_url, "the statement by day")
        seen["days"] = [r.text for r in d.find_elements("css selector", "#statement tbody tr")]
        # a range that ends before it starts, typed into the date fields
        for field, value in (("since", "2027-02-10"), ("until", "2027-02-01")):
            d.execute_script("arguments[0].value = arguments[1]", d.find_element("name", field), value)
        d.find_element("css selector", "form.statement-range button[type=submit]").click()
        _wait(d, lambda: "since=2027-02-10" in d.current_url, "the refused range")
        seen["refused"] = _text(d, "p.error[role=alert]")
        seen["table after refusal"] = bool(d.find_elements("id", "statement"))
        return seen

    seen = await threads.deferToThread(script)
    # slices that moved money: 3 of cheap's 10 carried their 0.7 cents on (tests/test_statement.py)
    assert sorted(seen["jobs"]) == [f"{cheap} cheap 7 0.07", f"{dear} dear 2 10.00"], seen["jobs"]
    assert seen["total"] == "In all 10.07"
    assert any(row.startswith(today) and "−10.07" in row for row in seen["days"]), seen["days"]
    assert seen["refused"] == "a statement's range must end after it starts"
    assert not seen["table after refusal"]


@pytest_twisted.ensureDeferred
async def test_a_member_sets_a_cap_and_mail_on_the_account_page_and_the_held_job_says_why(site):
    accounts.create_account(site.db, "cara", "cara@example.org", "correct horse", confirm=False)
    cara = site.account_id("cara")
    host, _ = md.account(site.db, "host", grant=0)
    box, _ = md.client(site.db, host, "box")
    job = md.job(site.db, cara, 10, "capped", submitted_at=time.time() - 100)  # 0.10 a 1 s slice
    d = await threads.deferToThread(site.chromium)

    def set_cap_and_mail():
        seen = {}
        _login(d, site.base, "cara", "correct horse")
        d.find_element("link text", "Your account: spending cap, e-mail when jobs end").click()
        _wait(d, lambda: d.title.startswith("Your account"), "the account page")
        seen["before"] = _text(d, "#cap-figures")
        d.find_element("id", "cap").send_keys("0.45")
        d.find_element("css selector", "form[action='/account/cap'] button[type=submit]").click()
        _wait(d, lambda: d.find_elements("css selector", "#spending-cap p.ok"), "the cap's notice")
        seen["cap set"] = _text(d, "#spending-cap p.ok")
        seen["figures"] = _text(d, "#cap-figures")
        d.find_element("id", "notify-on").click()
        d.find_element("css selector", "form[action='/account/notify'] button[type=submit]").click()
        _wait(d, lambda: d.find_elements("css selector", "#notify p.ok"), "the e-mail notice")
        seen["mail set"] = _text(d, "#notify p.ok")
        d.get(site.base + "/account")
        seen["mail kept"] = d.find_element("id", "notify-on").is_selected()
        return seen

    seen = await threads.deferToThread(set_cap_and_mail)
    assert seen["before"].startswith("No spending cap")
    assert seen["cap set"].startswith("Your spending cap is set.")
    assert "0.45 credits in all: 0.00 spent" in seen["figures"] and "0.45 left" in seen["figures"]
    assert seen["mail set"] == "You will get an e-mail when a job finishes or fails."
    assert seen["mail kept"]

    # windows of the real store lease the job until its next slice would pass the account's cap
    assert run_until_held(site.db, box, time.time() + 10) == [10, 10, 10, 10]

    def held_job():
        d.get(f"{site.base}/jobs/{job}")
        seen = {"status": _text(d, "#job-status"), "why": _text(d, "#job-reason")}
        d.get(site.base + "/account")
        seen["figures"] = _text(d, "#cap-figures")
        _shot(d, "account")
        return seen

    seen = await threads.deferToThread(held_job)
    assert seen["status"] == "held"
    assert seen["why"].startswith("spending cap reached: 0.40 of 0.45 credits (the account's cap"), seen["why"]
    assert "0.40 spent" in seen["figures"] and "0.05 left" in seen["figures"]


@pytest_twisted.ensureDeferred
async def test_a_member_resets_a_forgotten_password_from_the_mailed_link_and_logs_in_with_it(site):
    accounts.create_account(site.db, "alice", "alice@example.org", "old password", confirm=False)

    def script():
        d = site.chromium()
        seen = {}
        d.get(site.base + "/login")
        d.find_element("link text", "Forgot your password?").click()
        _wait(d, lambda: d.title.startswith("Forgot your password"), "the reset request form")
        d.find_element("name", "email").send_keys("alice@example.org")
        _shot(d, "reset")
        d.find_element("css selector", "form[action='/reset'] button[type=submit]").click()
        _wait(d, lambda: d.title.startswith("Check your e-mail"), "the request's answer")
        seen["sent"] = _text(d, "p[role=status]")
        link = _wait(d, lambda: _mail_link(site, "alice@example.org", "reset"), "the reset e-mail")
        d.get(site.base + link)
        _wait(d, lambda: d.title.startswith("Choose a new password"), "the new password form")
        d.find_element("name", "new").send_keys("new password")
        d.find_element("name", "again").send_keys("new password")
        d.find_element("css selector", "form[action^='/reset/'] button[type=submit]").click()
        _wait(d, lambda: d.title.startswith("Password changed"), "the changed password")
        seen["changed"] = _text(d, "p[role=status]")
        d.find_element("link text", "Log in").click()
        d.find_element("name", "name").send_keys("alice")
        d.find_element("name", "password").send_keys("old password")
        d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
        _wait(d, lambda: d.find_elements("css selector", "[role=alert]"), "the refused old password")
        seen["old refused"] = not d.title.startswith("Home")
        _login(d, site.base, "alice", "new password")
        seen["home"] = d.title
        return seen

    seen = await threads.deferToThread(script)
    assert "alice@example.org" in seen["sent"] and "a link is on its way" in seen["sent"]
    assert seen["changed"].startswith("Your password is changed")
    assert seen["old refused"]
    assert seen["home"].startswith("Home")


@pytest_twisted.ensureDeferred
async def test_a_member_without_the_confirmation_mail_gets_a_new_link_that_confirms(site):
    def script():
        d = site.chromium()
        seen = {}
        d.get(site.base + "/signup")
        for field, value in (
            ("name", "carol"),
            ("email", "carol@example.org"),
            ("password", "a good password"),
            ("again", "a good password"),
        ):
            d.find_element("name", field).send_keys(value)
        d.find_element("css selector", "form[action='/signup'] button[type=submit]").click()
        first = _wait(d, lambda: site.outbox.link("carol@example.org"), "the first confirmation e-mail")
        d.get(site.base + "/login")
        d.find_element("link text", "No confirmation e-mail?").click()
        _wait(d, lambda: d.title.startswith("Resend the confirmation"), "the resend form")
        d.find_element("name", "email").send_keys("carol@example.org")
        d.find_element("css selector", "form[action='/resend'] button[type=submit]").click()
        _wait(d, lambda: d.title.startswith("Check your e-mail"), "the resend's answer")
        seen["sent"] = _text(d, "p[role=status]")
        second = _wait(
            d,
            lambda: (site.outbox.link("carol@example.org") or first) != first and site.outbox.link("carol@example.org"),
            "the new confirmation e-mail",
        )
        d.get(first)
        seen["old link"] = d.find_element("tag name", "body").text
        d.get(second)
        seen["new link"] = d.find_element("tag name", "body").text
        _login(d, site.base, "carol", "a good password")
        seen["home"] = d.title
        return seen

    seen = await threads.deferToThread(script)
    assert "waiting for its confirmation" in seen["sent"] and "carol@example.org" in seen["sent"]
    assert "not valid" in seen["old link"].lower(), seen["old link"]
    assert "confirmed" in seen["new link"].lower()
    assert seen["home"].startswith("Home")


@pytest_twisted.ensureDeferred
async def test_a_member_revokes_their_own_client_on_the_clients_page(site):
    accounts.create_account(site.db, "alice", "alice@example.org", "correct horse", confirm=False)
    cid, token = md.client(site.db, site.account_id("alice"), "box")
    rpc = MarketRPC(_Dispatcher(site.db))
    header = _header(f"client/{cid}", token)
    await _identify(rpc, header)  # the client works, and its identity is cached

    def script():
        d = site.chromium()
        _login(d, site.base, "alice", "correct horse")
        d.find_element("link text", "Clients").click()
        _wait(
            d,
            lambda: d.title.startswith("Clients") or d.find_elements("css selector", "form[action$='/revoke']"),
            "the clients page",
        )
        d.find_element("css selector", "button[aria-label='Revoke the client box']").click()
        _wait(d, lambda: d.find_elements("id", "client-notice"), "the revocation notice")
        row = next(r for r in d.find_elements("css selector", "table tbody tr") if "box" in r.text)
        return {
            "notice": _text(d, "#client-notice"),
            "row": row.text,
            "buttons": len(d.find_elements("css selector", "button[aria-label='Revoke the client box']")),
        }

    seen = await threads.deferToThread(script)
    assert "is revoked" in seen["notice"], seen["notice"]
    assert seen["row"].startswith(f"{cid} box revoked"), seen["row"]
    assert seen["buttons"] == 0
    with pytest.raises(Forbidden, match="revoked"):
        await _identify(rpc, header)  # refused at once, cache or not
