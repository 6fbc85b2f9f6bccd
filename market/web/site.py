"""Every route of the web site in one table, the Klein application and the Twisted ``Site`` around it.

A page module holds one class of handlers (``AccountPages``, ``JobPages``, ``MarketPages``,
``FeedPages``): ordinary methods over the shared :class:`~market.web.context.Web`, which know
nothing of URLs. :func:`routes` says which URL and method reach which handler and who may use it;
:func:`make_app` puts each handler behind the checks its :class:`~market.web.context.Access` names
and adds the error pages; :func:`make_web_site` caps request bodies.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from klein import Klein
from twisted.logger import Logger
from twisted.web import server
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute

from market.core.errors import KINDS, MarketError, kind_of
from market.web.account_pages import AccountPages
from market.web.batch_pages import BatchPages
from market.web.context import (
    ANYONE,
    ANYONE_FORM,
    ID,
    MAX_BODY,
    MEMBERS,
    MEMBERS_FORM,
    NO_SESSION,
    Access,
    Refused,
    Web,
)
from market.web.feed import FeedPages
from market.web.job_pages import JobPages
from market.web.live import LiveStreams
from market.web.market_pages import MarketPages
from market.web.token_pages import TokenPages

log = Logger()

#: error kind -> HTTP status, from the one error table (market.core.errors)
STATUS = {name: kind.http for name, kind in KINDS.items()}


class CappedRequest(server.Request):
    """A request that stops storing its body past ``max_body`` bytes and is then refused with 413.

    Twisted buffers a whole body before any resource sees it; without a cap one upload could fill
    the disk or memory. The rest of an over-long body is read and thrown away.
    """

    max_body = MAX_BODY
    too_large = False
    _received = 0

    def gotLength(self, length):
        if length is not None and length > self.max_body:
            self.too_large = True
            length = 0
        super().gotLength(length)

    def handleContentChunk(self, data):
        self._received += len(data)
        if self._received > self.max_body:
            self.too_large = True
        if self.too_large:
            return
        super().handleContentChunk(data)

    def requestReceived(self, command, path, version):
        if self.too_large and self.content is not None:  # content: set by gotLength, which comes first
            # parse no form from a partial body: the page handler answers 413
            self.content.seek(0)
            self.content.truncate()
        super().requestReceived(command, path, version)


@dataclass(frozen=True)
class Route:
    """A request ``method`` on ``path`` (a werkzeug rule) goes to ``handler``, behind the checks of ``access``."""

    method: str
    path: str
    access: Access
    handler: Callable[..., Awaitable[Any]]


def routes(web: Web) -> list[Route]:
    """Every route of the site, one per handler (docs/web.md describes the pages).

    Who may use a route (:class:`~market.web.context.Access`): ``ANYONE`` or only logged-in
    ``MEMBERS`` (anyone else is sent to /login); ``..._FORM`` routes take a form and refuse it
    without the visitor's CSRF token; ``NO_SESSION`` routes serve a file or the feed and look up
    no session at all.
    """
    account, jobs, market, feed = AccountPages(web), JobPages(web), MarketPages(web), FeedPages(web)
    batches, tokens = BatchPages(web), TokenPages(web)
    live = web.live_streams = LiveStreams(web)  # (its open streams, for operators and tests)
    return [
        Route("GET",  "/",                                     ANYONE,       account.home),
        Route("GET",  "/login",                                ANYONE,       account.login_form),
        Route("POST", "/login",                                ANYONE_FORM, account.login),
        Route("POST", "/logout",                               ANYONE_FORM, account.logout),
        Route("GET",  "/signup",                               ANYONE,       account.signup_form),
        Route("POST", "/signup",                               ANYONE_FORM, account.signup),
        Route("GET",  "/confirm/<token>",                      ANYONE,       account.confirm),
        Route("GET",  "/reset",                                ANYONE,       account.reset_request_form),
        Route("POST", "/reset",                                ANYONE_FORM, account.reset_request),
        Route("GET",  "/reset/<token>",                        ANYONE,       account.reset_form),
        Route("POST", "/reset/<token>",                        ANYONE_FORM, account.reset),
        Route("GET",  "/resend",                               ANYONE,       account.resend_form),
        Route("POST", "/resend",                               ANYONE_FORM, account.resend),
        Route("GET",  "/account",                              MEMBERS,      account.account),
        Route("POST", "/account/cap",                          MEMBERS_FORM, account.set_cap),
        Route("POST", "/account/notify",                       MEMBERS_FORM, account.set_notify),
        Route("GET",  "/password",                             MEMBERS,      account.password_form),
        Route("POST", "/password",                             MEMBERS_FORM, account.change_password),
        Route("GET",  "/submit",                               MEMBERS,      jobs.submit_form),
        Route("POST", "/submit",                               MEMBERS_FORM, jobs.submit),
        Route("GET",  "/jobs",                                 MEMBERS,      jobs.jobs),
        Route("POST", "/jobs/prices",                          MEMBERS_FORM, jobs.prices),
        Route("GET",  f"/jobs/<{ID}:job_id>",                  MEMBERS,      jobs.job),
        Route("GET",  f"/jobs/<{ID}:job_id>/result",           MEMBERS,      jobs.result),
        Route("POST", f"/jobs/<{ID}:job_id>/cancel",           MEMBERS_FORM, jobs.cancel),
        Route("GET",  "/batches",                              MEMBERS,      batches.batches),
        Route("GET",  "/batches/new",                          MEMBERS,      batches.submit_form),
        Route("POST", "/batches/new",                          MEMBERS_FORM, batches.submit),
        Route("GET",  f"/batches/<{ID}:batch_id>",             MEMBERS,      batches.batch),
        Route("GET",  f"/batches/<{ID}:batch_id>/results",     MEMBERS,      batches.results),
        Route("POST", f"/batches/<{ID}:batch_id>/cancel",      MEMBERS_FORM, batches.cancel),
        Route("POST", f"/batches/<{ID}:batch_id>/price",       MEMBERS_FORM, batches.price),
        Route("GET",  f"/jobs/<{ID}:job_id>/log",              MEMBERS,      jobs.log),
        Route("GET",  f"/jobs/<{ID}:job_id>/events",           MEMBERS,      live.events),
        Route("GET",  f"/batches/<{ID}:batch_id>/events",      MEMBERS,      live.batch_events),
        Route("GET",  "/clients",                              MEMBERS,      market.clients),
        Route("POST", "/clients",                              MEMBERS_FORM, market.register),
        Route("GET",  f"/clients/<{ID}:client_id>",            MEMBERS,      market.client),
        Route("POST", f"/clients/<{ID}:client_id>/revoke",     MEMBERS_FORM, market.revoke),
        Route("GET",  "/tokens",                               MEMBERS,      tokens.tokens),
        Route("POST", "/tokens",                               MEMBERS_FORM, tokens.create),
        Route("POST", f"/tokens/<{ID}:token_id>/revoke",       MEMBERS_FORM, tokens.revoke),
        Route("GET",  "/ledger",                               MEMBERS,      market.ledger),
        Route("GET",  "/statement",                            MEMBERS,      market.statement),
        Route("GET",  "/report",                               ANYONE,       market.report_page),
        Route("GET",  "/report.xml",                           ANYONE,       market.report_xml),
        Route("GET",  "/schema/report.xsd",                    NO_SESSION,   market.schema),
        Route("GET",  "/static/style.css",                     NO_SESSION,   market.stylesheet),
        Route("GET",  "/static/live.js",                       NO_SESSION,   market.script),
        Route("GET",  f"/feed/<{ID}:account_id>/<token>.atom", NO_SESSION,   feed.feed),
    ]  # fmt: skip


def make_app(web: Web) -> Klein:
    """The Klein app with every route of :func:`routes` and the error pages (plain words, never a traceback)."""
    app = Klein()
    for route in routes(web):
        # the endpoint (werkzeug's name for a rule) is the handler's: "JobPages.submit"
        endpoint = route.handler.__qualname__
        app.route(route.path, methods=[route.method], endpoint=endpoint)(web.guarded(route.access, route.handler))

    @app.handle_errors(NoRoute)
    def no_route(request, failure):
        return web.refusal(request, 404, "There is no page here.")

    @app.handle_errors(MethodNotAllowed)
    def wrong_method(request, failure):
        return web.refusal(request, 405, "This page does not take that kind of request.")

    @app.handle_errors(Refused)
    def refused(request, failure):
        return web.refusal(request, failure.value.code, str(failure.value))

    @app.handle_errors(MarketError)
    def market_error(request, failure):
        code = STATUS[kind_of(failure.value).name]
        return web.refusal(request, code, str(failure.value))

    @app.handle_errors(Exception)
    def bug(request, failure):
        log.failure("web request {uri} failed", failure, uri=request.uri)
        return web.refusal(request, 500, "Something went wrong on the server. It has been logged; try again later.")

    return app


class QuietSite(server.Site):
    """A ``Site`` whose access lines are only its refusals and failures (status 400 and above):
    a line for every page and stylesheet served drowned the market's own log."""

    def log(self, request) -> None:
        if (request.code or 0) >= 400:
            super().log(request)


def make_web_site(web: Web, max_body: int = MAX_BODY) -> server.Site:
    """A ``Site`` serving the app, with capped request bodies and no tracebacks shown."""
    site = QuietSite(make_app(web).resource())
    cap = max_body  # the class body below cannot see a parameter named like its attribute

    class Request(CappedRequest):
        max_body = cap

    site.requestFactory = Request
    site.displayTracebacks = False
    return site
