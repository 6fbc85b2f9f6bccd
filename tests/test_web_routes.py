"""The site's route table (``market.web.site.routes``) and its page handlers, without the site.

The table is where a URL meets its handler and its checks; these tests hold it to one route per
handler and a CSRF check on every form, and show that a handler is an ordinary method that can be
called with a request and a visitor, no Klein app or HTTP server around it.
"""

from __future__ import annotations

import inspect

import pytest_twisted
from twisted.web.test.requesthelper import DummyRequest

from market.web.account_pages import AccountPages
from market.web.context import Pages, Web
from market.web.market_pages import MarketPages
from market.web.sessions import Visitor
from market.web.site import routes
from tests.test_web_support import sqlite_db


def _table():
    return routes(Web(None, None, None))


def test_every_handler_has_exactly_one_route():
    routed = [route.handler.__qualname__ for route in _table()]
    assert len(routed) == len(set(routed)), "a handler with two routes"
    # every public method of every page class is a handler, and every handler is routed
    handlers = {
        f"{page.__name__}.{name}"
        for page in Pages.__subclasses__()
        for name, method in vars(page).items()
        if inspect.iscoroutinefunction(method) and not name.startswith("_")
    }
    assert handlers == set(routed)


def test_every_route_that_takes_a_form_checks_its_csrf_token():
    unchecked = [f"{r.method} {r.path}" for r in _table() if r.method != "GET" and not r.access.posted]
    assert not unchecked


@pytest_twisted.ensureDeferred
async def test_a_page_handler_runs_without_the_site():
    request = DummyRequest([b"signup"])
    body = await AccountPages(Web(None, None, None)).signup_form(request, Visitor(csrf="the-token"))
    assert request.responseCode == 200
    assert b'name="csrf" value="the-token"' in body


@pytest_twisted.ensureDeferred
async def test_a_members_handler_runs_on_a_store_without_http(tmp_path):
    from twisted.internet import reactor

    from market import accounts

    db = sqlite_db(tmp_path)
    try:
        new = accounts.create_account(db, "hana", "hana@example.org", "correct horse", confirm=False)
        visitor = Visitor(csrf="t", account_id=new.id, name="hana")
        request = DummyRequest([b"ledger"])
        body = await MarketPages(Web(db, reactor, None)).ledger(request, visitor)
        assert request.responseCode == 200 and b"hana" in body
    finally:
        db.close()
