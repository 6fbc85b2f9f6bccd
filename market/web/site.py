"""The Klein application and the Twisted ``Site`` around it: routes, error pages, the upload cap."""

from __future__ import annotations

from klein import Klein
from twisted.logger import Logger
from twisted.web import server
from werkzeug.exceptions import MethodNotAllowed
from werkzeug.exceptions import NotFound as NoRoute

from market.core.errors import KINDS, MarketError, kind_of
from market.web import account_pages, feed, job_pages, market_pages
from market.web.context import MAX_BODY, Refused, Web

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
        if self.too_large:
            # parse no form from a partial body: the page handler answers 413
            self.content.seek(0)
            self.content.truncate()
        super().requestReceived(command, path, version)


def make_app(web: Web) -> Klein:
    """The Klein app with every route and the error pages (plain words, never a traceback)."""
    app = Klein()
    account_pages.install(app, web)
    job_pages.install(app, web)
    market_pages.install(app, web)
    feed.install(app, web)

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


def make_web_site(web: Web, max_body: int = MAX_BODY) -> server.Site:
    """A ``Site`` serving the app, with capped request bodies and no tracebacks shown."""
    site = server.Site(make_app(web).resource())
    site.requestFactory = type("Request", (CappedRequest,), {"max_body": max_body})
    site.displayTracebacks = False
    return site
