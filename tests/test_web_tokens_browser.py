"""The API tokens page in real headless Chromium (in-process site over SQLite): a member creates a
named token, sees it once, uses it for XML-RPC, sees its last use, and revokes it; the revoked
token is refused at once. With ``MARKET_WEB_SCREENSHOTS=DIR`` the page is saved as DIR/tokens.png."""

from __future__ import annotations

import base64
import os
import tempfile

import pytest
import pytest_twisted
from twisted.internet import defer

from market.core.errors import NotAuthenticated
from market.rpc.methods import Caller, MarketRPC
from tests.support import need, page_wait
from tests.test_web_browser import CHROMEDRIVER, CHROMIUM, _driver
from tests.test_web_support import sqlite_db, start_site


class _Dispatcher:
    def __init__(self, db):
        from twisted.internet import reactor

        self.db, self.clock = db, reactor  # the site's clock too: "last used" reads right


async def _identify(rpc, token: str):
    caller = rpc.identify(b"Basic " + base64.b64encode(f"rita:{token}".encode()))
    return caller if isinstance(caller, Caller) else await caller


def _wait(d, condition, what: str) -> None:
    page_wait(condition, lambda: f"{what}: {d.title}")


def _script(base: str, workdir: str, rpc) -> dict:
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    d = _driver(tempfile.mkdtemp(dir=workdir), tempfile.mkdtemp(dir=workdir))
    seen = {}
    try:
        d.get(base + "/login")
        d.find_element("name", "name").send_keys("rita")
        d.find_element("name", "password").send_keys("correct horse")
        d.find_element("css selector", "form[action='/login'] button[type=submit]").click()
        _wait(d, lambda: d.title.startswith("Home"), "the home page")
        d.find_element("link text", "API tokens").click()
        _wait(d, lambda: d.title.startswith("API tokens"), "the tokens page")
        d.find_element("name", "name").send_keys("laptop")
        d.find_element("css selector", "form[action='/tokens'] button[type=submit]").click()
        _wait(d, lambda: d.find_elements("id", "api-token"), "the new token")
        token = d.find_element("id", "api-token").text
        seen["command"] = d.find_element("id", "token-command").text
        caller = blockingCallFromThread(reactor, lambda: defer.ensureDeferred(_identify(rpc, token)))
        seen["who"] = caller.row["name"]
        d.get(base + "/tokens")
        row = d.find_element("css selector", "#tokens tbody tr")
        seen["row"] = row.text
        seen["shown again"] = token in d.page_source
        if os.environ.get("MARKET_WEB_SCREENSHOTS"):
            d.save_screenshot(os.path.join(os.environ["MARKET_WEB_SCREENSHOTS"], "tokens.png"))
        d.find_element("css selector", "button[aria-label='Revoke the token laptop']").click()
        _wait(d, lambda: d.find_elements("id", "token-notice"), "the revocation notice")
        seen["notice"] = d.find_element("id", "token-notice").text
        seen["empty"] = "No tokens yet." in d.find_element("tag name", "body").text
        seen["token"] = token
        return seen
    finally:
        d.quit()


@pytest_twisted.ensureDeferred
async def test_tokens_page_creates_shows_once_and_revokes_in_chromium(tmp_path):
    from twisted.internet import threads

    from market import accounts

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    db = sqlite_db(tmp_path)
    wm, serving = await start_site(db, tmp_path)
    try:
        accounts.create_account(db, "rita", "rita@example.org", "correct horse", confirm=False)
        rpc = MarketRPC(_Dispatcher(db))
        seen = await threads.deferToThread(_script, wm.base, str(tmp_path), rpc)
        assert seen["who"] == "rita"
        assert seen["command"].startswith("MARKET_SERVER=") and f"MARKET_TOKEN={seen['token']}" in seen["command"]
        assert seen["row"].startswith("laptop") and "never" not in seen["row"]  # its last use is shown
        assert not seen["shown again"]
        assert seen["notice"] == "The token “laptop” is revoked." and seen["empty"]
        with pytest.raises(NotAuthenticated):
            await _identify(rpc, seen["token"])  # the cache entry from its use is dropped at once
    finally:
        await serving.stopListening()
        wm.web.reports.close()
        db.close()
