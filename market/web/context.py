"""What every page handler shares: the store, the clock, sessions, mail, templates, and the guards.

A handler is a method of a page object (``AccountPages``, ``JobPages``, ...) built with the one
:class:`Web`: ``async def handler(self, request, visitor, **route_values)``. It checks nothing
itself: the route table (``market.web.site.routes``) gives each route an :class:`Access`, and
:meth:`Web.guarded` puts the handler behind the checks it names (find the visitor, refuse an
over-long upload, members only, the CSRF token of a form). So no route can be added without
saying who may use it, and a test can call a handler without the site around it.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from market.core import verification as policy
from market.core.errors import MarketError
from market.settings import WebSettings
from market.web.mail import Mailer
from market.web.render import Renderer
from market.web.reports import ReportFiles
from market.web.sessions import Sessions, Visitor, csrf_ok
from market.web.throttle import HashingGate, LoginThrottle, SignupThrottle

#: the route converter for ids: larger numbers are no stored row, so they are "no page" rather than a database error
ID = "int(max=9223372036854775807)"

#: the request body cap: a 1 MiB module (the XML-RPC limit) plus the form around it
MAX_BODY = 1024 * 1024 + 64 * 1024


class Refused(MarketError):
    """A request the site turns down with an HTTP status and a plain-words page."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Access:
    """Who may use a route, and what :meth:`Web.guarded` checks before its handler runs."""

    #: False for files and feeds: the handler is ``(request, **route_values)``, no session is
    #: looked up, no cookie set, nothing checked
    visitor: bool = True
    #: only logged-in members: anyone else is sent to /login (GET) or refused (403)
    members: bool = False
    #: a form post: the visitor's CSRF token must come with it (403 otherwise)
    posted: bool = False


ANYONE = Access()
ANYONE_FORM = Access(posted=True)
MEMBERS = Access(members=True)
MEMBERS_FORM = Access(members=True, posted=True)
NO_SESSION = Access(visitor=False)


class Web:
    """The site's shared parts. ``public_url`` (no trailing slash) is used for links in e-mails;
    ``settings`` (the ``[web]`` section) sets the limits: the report's age and files, log-in and
    sign-up rates. ``throttle``, ``signups`` and ``reports`` replace the parts built from them."""

    def __init__(
        self,
        db,
        clock,
        mailer: Mailer,
        *,
        public_url: str | None = None,
        rpc_endpoint: str = "tcp:7080",
        settings: WebSettings | None = None,
        throttle: LoginThrottle | None = None,
        signups: SignupThrottle | None = None,
        reports: ReportFiles | None = None,
        renderer: Renderer | None = None,
        max_module: int = 1024 * 1024,
        offload: Any = None,
        verification: policy.Settings | None = None,
        max_batch: int = 10_000,
        max_argument_set: int = 64 * 1024,
        max_price: int | None = None,
    ):
        s = settings or WebSettings()
        #: the dispatcher's verification settings: the fee shown before a member submits
        self.verification = verification or policy.Settings()
        #: the market's ceiling on prices (``max-price``), None for none
        self.max_price = max_price
        self.settings = s
        self.db = db
        self.clock = clock
        #: the helper pool (``market.offload.pool.HelperPool``) for CPU-heavy work on members' input
        self.offload = offload
        self.mailer = mailer
        #: the job pages' live streams (``market.web.live.LiveStreams``), set by ``site.routes``
        self.live_streams: Any = None
        #: e-mail on finish or failure (``market.web.notify.Notifier``), set by ``make_site``
        self.notifier: Any = None
        self.public_url = public_url.rstrip("/") if public_url else None
        self.rpc_endpoint = rpc_endpoint
        self.max_module = max_module
        #: the dispatcher's batch bounds (``max-batch``, ``max-argument-set``): the batch form's too
        self.max_batch, self.max_argument_set = max_batch, max_argument_set
        self.renderer = renderer or Renderer()
        secure = bool(self.public_url and self.public_url.startswith("https:"))
        self.sessions = Sessions(db, clock, secure=secure)
        self.throttle = throttle or LoginThrottle(clock, s.login_per_name, s.login_per_address, s.login_period)
        self.signups = signups or SignupThrottle(clock, s.signups_per_address, s.signups_per_email, s.signup_period)
        self.hashing = HashingGate()
        self.reports = reports or ReportFiles(db, clock, s.report_seconds, s.report_files)

    # -- responses -----------------------------------------------------------------------------
    def render(self, request, template: str, visitor: Visitor | None, code: int = 200, **values: Any) -> bytes:
        return self.renderer.page(request, template, code, visitor=visitor, **values)

    def refusal(self, request, code: int, message: str, visitor: Visitor | None = None) -> bytes:
        return self.render(request, "refused.html", visitor, code, message=message, status=code)

    def busy(self, request, visitor: Visitor | None = None) -> bytes:
        """503: more log-ins and sign-ups are being checked than the site lets wait."""
        request.setHeader(b"Retry-After", b"60")
        return self.refusal(
            request, 503, "The market is checking many passwords at the moment. Try again in a minute.", visitor
        )

    @staticmethod
    def redirect(request, path: str) -> bytes:
        """303 See Other to a path on this site (after a form post, so reloading does not re-post)."""
        request.setResponseCode(303)
        request.setHeader(b"Location", path.encode("ascii"))
        return b""

    # -- URLs --------------------------------------------------------------------------------
    def base_url(self, request) -> str:
        """The site's base URL: ``--public-url`` if given, else what the browser asked for."""
        if self.public_url:
            return self.public_url
        scheme = "https" if request.isSecure() else "http"
        host = (request.getHeader(b"host") or b"localhost").decode("ascii", "replace")
        return f"{scheme}://{host}"

    def rpc_url(self, request) -> str:
        """The market's XML-RPC URL for workers: the site's host with the ``--rpc`` endpoint's port."""
        parts = self.rpc_endpoint.split(":")
        kind = parts[0]
        port = next((p for p in parts[1:] if p.isdigit()), "7080")
        host = urlsplit(self.base_url(request)).hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        return f"{'https' if kind == 'ssl' else 'http'}://{host}:{port}/RPC2"

    # -- guards ------------------------------------------------------------------------------
    def guarded(self, access: Access, handler: Callable[..., Awaitable[Any]]) -> Callable:
        """``handler(request, visitor, **kw)`` behind the checks ``access`` names, as ``(request, **kw)``."""
        if not access.visitor:
            return handler

        @functools.wraps(handler)
        async def guarded(request, **kw):
            visitor = await self.sessions.visitor(request)
            if getattr(request, "too_large", False):
                return self.refusal(
                    request,
                    413,
                    f"That upload is over {MAX_BODY // 1024} KiB. A job module"
                    f" may be at most {self.max_module // 1024} KiB.",
                    visitor,
                )
            if access.members and not visitor.member:
                if request.method == b"GET":
                    return self.redirect(request, "/login")
                return self.refusal(request, 403, "Please log in first.", visitor)
            if access.posted and not csrf_ok(request, visitor):
                return self.refusal(
                    request,
                    403,
                    "This form has expired or did not come from this site. Go back, reload the page and send it again.",
                    visitor,
                )
            return await handler(request, visitor, **kw)

        return guarded


class Pages:
    """A page module's handlers: methods over the site's shared parts, routed by ``site.routes``."""

    def __init__(self, web: Web):
        self.web = web


def field(request, name: str, default: str = "", limit: int = 4096) -> str:
    """A form field as text (UTF-8; at most ``limit`` characters kept)."""
    values = request.args.get(name.encode("ascii"))
    if not values:
        return default
    return values[0].decode("utf-8", "replace")[:limit]


def address(request) -> str:
    """The client's IP address (for the log-in and sign-up rate limits)."""
    peer = request.getClientAddress()
    return getattr(peer, "host", "unknown")
