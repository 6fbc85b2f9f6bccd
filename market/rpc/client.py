"""Talking to the market's XML-RPC: a blocking client (CLI) and a Twisted one (worker).

The Twisted client keeps connections open (one HTTP pool) and uses ``xmlrpc.client`` only to
encode and decode, which DESIGN.md measured faster than ``twisted.web.xmlrpc.Proxy``.
"""

from __future__ import annotations

import base64
import functools
import xmlrpc.client
from typing import Any

from market.core.errors import MarketError

DEFAULT_SERVER = "http://127.0.0.1:7080/RPC2"


class ServerUnreachable(MarketError):
    kind = "database"


def basic(user: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()


class _AuthTransport(xmlrpc.client.Transport):
    def __init__(self, authorization: str):
        super().__init__()
        self._authorization = authorization

    def send_headers(self, connection, headers):
        connection.putheader("Authorization", self._authorization)
        super().send_headers(connection, headers)


def blocking(url: str, user: str, token: str) -> xmlrpc.client.ServerProxy:
    """A ServerProxy that authenticates with HTTP Basic (token never put in the URL)."""
    transport: _AuthTransport
    if url.startswith("https:"):

        class _T(_AuthTransport, xmlrpc.client.SafeTransport):
            pass

        transport = _T(basic(user, token))
    else:
        transport = _AuthTransport(basic(user, token))
    return xmlrpc.client.ServerProxy(url, transport=transport, allow_none=True)


@functools.cache
def _quiet_factory():
    """twisted.web's connection factory without its "Starting factory" log line per connection."""
    from twisted.web.client import _HTTP11ClientFactory

    class QuietClientFactory(_HTTP11ClientFactory):
        noisy = False

    return QuietClientFactory


class AsyncRPC:
    """A persistent-connection XML-RPC client for Twisted code."""

    def __init__(self, reactor, url: str, user: str, token: str, timeout: float = 60.0):
        from twisted.web.client import Agent, HTTPConnectionPool

        self.url = url.encode()
        self._auth = basic(user, token).encode()
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool._factory = _quiet_factory()
        self._pool.maxPersistentPerHost = 2
        self._agent = Agent(reactor, pool=self._pool, connectTimeout=10)
        self.timeout = timeout
        self.reactor = reactor

    def call(self, method: str, *args: Any):
        """-> Deferred firing with the result; errbacks with ``xmlrpc.client.Fault`` or a connection error."""
        from io import BytesIO

        from twisted.web.client import FileBodyProducer, readBody
        from twisted.web.http_headers import Headers

        body = xmlrpc.client.dumps(args, method, allow_none=True).encode("utf-8")
        d = self._agent.request(
            b"POST",
            self.url,
            Headers({b"content-type": [b"text/xml"], b"authorization": [self._auth]}),
            FileBodyProducer(BytesIO(body)),
        )
        timer = self.reactor.callLater(self.timeout, d.cancel)

        def got(response):
            if response.code != 200:
                return readBody(response).addCallback(
                    lambda text: _raise(
                        MarketError(f"server answered HTTP {response.code}: {text[:200].decode('utf-8', 'replace')}")
                    )
                )
            return readBody(response)

        def parse(data):
            values, _ = xmlrpc.client.loads(data, use_builtin_types=True)
            return values[0]

        def stop_timer(x):
            if timer.active():
                timer.cancel()
            return x

        d.addBoth(stop_timer)
        d.addCallback(got)
        d.addCallback(parse)
        return d

    def close(self):
        return self._pool.closeCachedConnections()


def _raise(e):
    raise e


def server_url(text: str) -> str:
    """The market's XML-RPC URL from what a person typed: ``HOST:PORT`` gets ``http://`` and a path
    ``/RPC2``; anything that cannot be a URL is refused in one line that shows the expected form."""
    from urllib.parse import urlsplit, urlunsplit

    typed = (text or "").strip()
    example = "like http://HOST:7080/RPC2 or HOST:7080"
    full = typed if "://" in typed else "http://" + typed
    try:
        parts = urlsplit(full)
        port = parts.port
    except ValueError as e:
        raise MarketError(f"server URL {typed!r} is not valid ({e}) — give one {example}") from None
    if parts.scheme not in ("http", "https"):
        raise MarketError(f"server URL {typed!r} must start with http:// or https:// — give one {example}")
    if not parts.hostname:
        raise MarketError(f"server URL {typed!r} names no host — give one {example}")
    if port == 0:
        raise MarketError(f"server URL {typed!r} has port 0 — give one {example}")
    path = parts.path if parts.path not in ("", "/") else "/RPC2"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))
