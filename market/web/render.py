"""Pages from Jinja2 templates (autoescaped), with the headers every page of the site carries."""

from __future__ import annotations

import datetime
import os
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from market.core import ledger, money, states
from market.core.text import printable

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")

# No inline script or style, no framing, forms post only to us. The one script is our own
# static/live.js (the job page's live parts, fetched from us only); every page works without it.
SECURITY_HEADERS = {
    b"Content-Security-Policy": b"default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    b" script-src 'self'; connect-src 'self';"
    b" frame-ancestors 'none'; base-uri 'none'",
    b"X-Content-Type-Options": b"nosniff",
    # tokens travel in some URLs (confirmation links, feeds): never leak them to other sites
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
}


def _when(t: float | None) -> str:
    if t is None:
        return ""
    return datetime.datetime.fromtimestamp(float(t), datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(ms: Any) -> str:
    ms = int(ms or 0)
    return f"{ms // 1000}.{ms % 1000 // 100} s"


def _percent(progress: float | None) -> str:
    return "" if progress is None else f"{100 * float(progress):.0f}%"


class Verbatim(str):
    """Text a form must give back exactly as it came (a module's source): shown without :func:`shown`'s escapes."""


def verbatim(value: Any) -> Verbatim:
    return Verbatim(value)


def shown(value: Any) -> Any:
    """Every ``{{ value }}`` of every template: text with its control, bidi and XML-invalid
    characters written as visible escapes (``printable``; newlines and tabs kept), before
    autoescaping. Autoescape stops markup; this stops what it lets through: a name that
    reads backwards (U+202E), characters a browser shows as nothing or a copy-and-paste carries
    into a terminal. Markup the templates made and ``verbatim`` text pass as they are."""
    if isinstance(value, (Markup, Verbatim)) or not isinstance(value, str):
        return value
    return printable(value, lines=True)


def environment() -> Environment:
    """The template environment: autoescape on for every template, every value :func:`shown`,
    undefined names are errors."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        finalize=shown,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["verbatim"] = verbatim
    env.filters["credits"] = money.format_cents
    env.filters["when"] = _when
    env.filters["seconds"] = _seconds
    env.filters["percent"] = _percent
    env.filters["memo"] = ledger.memo_words  # a ledger memo without internal ids
    env.filters["state"] = states.state_of  # a job row as members read it (market.core.states)
    return env


class Renderer:
    """Renders a template into a request's response, with the security headers."""

    def __init__(self, env: Environment | None = None):
        self.env = env or environment()

    def page(self, request, template: str, code: int = 200, **values: Any) -> bytes:
        """The page ``template`` with ``values`` as bytes, after setting the response code and headers."""
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"text/html; charset=utf-8")
        # pages show balances, tokens and private jobs: never keep them in shared caches
        request.setHeader(b"Cache-Control", b"no-store")
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        values.setdefault("visitor", None)
        values.setdefault("message", None)
        return self.env.get_template(template).render(**values).encode("utf-8")
