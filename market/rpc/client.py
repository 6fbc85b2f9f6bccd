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


class HTTPRefusal(MarketError):
    """The server answered with an HTTP status other than 200 (``code``): a 5xx is a dead or
    overloaded front end (or the proxy in front of one), a 4xx a refusal of this request."""

    kind = "database"

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


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

    def call(self, method: str, *args: Any, timeout: float | None = None):
        """-> Deferred firing with the result; errbacks with ``xmlrpc.client.Fault``, a connection
        error or :class:`HTTPRefusal`. ``timeout`` (seconds) overrides the client's for this call."""
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
        timer = self.reactor.callLater(self.timeout if timeout is None else timeout, d.cancel)

        def got(response):
            if response.code != 200:
                return readBody(response).addCallback(
                    lambda text: _raise(
                        HTTPRefusal(
                            response.code,
                            f"server answered HTTP {response.code}: {text[:200].decode('utf-8', 'replace')}",
                        )
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


#: the most servers one worker may be given (each keeps its own connection pool)
MAX_SERVERS = 64


class ServersUnreachable(ServerUnreachable):
    """No front end could be reached in a whole round; ``wait`` is how long to wait before the
    next round (bounded exponential backoff with jitter, :mod:`market.core.failover`)."""

    def __init__(self, errors: list[tuple[str, BaseException]], wait: float):
        shown = "; ".join(f"{url}: {_describe(e)}" for url, e in errors)
        super().__init__(f"no market server could be reached ({shown})")
        self.errors = errors
        self.wait = wait


def _reasons(e: BaseException) -> list[BaseException]:
    """``e``, or the failures twisted.web's ResponseFailed & co. wrap."""
    inner = getattr(e, "reasons", None)
    return [getattr(r, "value", r) for r in inner] if inner else [e]


def _timed_out(e: BaseException) -> bool:
    """The call was cancelled by its own timeout (the front end accepted it but never answered)."""
    from twisted.internet import defer

    return any(isinstance(r, defer.CancelledError) for r in _reasons(e))


def _describe(e: BaseException) -> str:
    if _timed_out(e):
        return "no answer before the call's timeout"
    return "; ".join(str(r) or type(r).__name__ for r in _reasons(e))


def broke_after_connecting(e: BaseException) -> bool:
    """True when the call failed on a connection that was open (reset, closed under it, no answer):
    a kept-alive connection to a front end that died or closed it; a fresh connection may reach a
    live one (a name with several addresses is connected to a live address, refused ones skipped)."""
    from twisted.internet import error
    from twisted.web.client import RequestTransmissionFailed, ResponseFailed

    if _timed_out(e):
        return False  # a front end that hung once would hang again: move on instead
    return isinstance(e, (error.ConnectionClosed, ResponseFailed, RequestTransmissionFailed))


def unreachable(e: BaseException) -> bool:
    """True when ``e`` says the front end could not be reached or is not a working market
    (refused, reset, timed out, a name that does not resolve, HTTP 5xx, an answer that is not
    XML-RPC): another front end may serve. False for an answer: a Fault, or HTTP 4xx (the request
    itself was refused, and every front end of the market would refuse it alike)."""
    from xml.parsers.expat import ExpatError

    from twisted.internet import defer, error
    from twisted.web.client import RequestTransmissionFailed, ResponseFailed

    if isinstance(e, HTTPRefusal):
        return e.code >= 500
    return isinstance(
        e,
        (
            error.ConnectError,
            error.ConnectionClosed,
            error.ConnectingCancelledError,
            error.DNSLookupError,
            defer.CancelledError,
            ResponseFailed,
            RequestTransmissionFailed,
            ExpatError,
            xmlrpc.client.ResponseError,
        ),
    )


class FailoverRPC:
    """An XML-RPC client over several front ends of one market (they share its database, so any
    serves any call): a call goes to the current front end; when it cannot be reached the call is
    sent at once to another, and fails with :class:`ServersUnreachable` (carrying the wait the
    rotation chose) only when every front end failed since the last answer. A Fault is an answer:
    it is returned as is and never moves the client. The choice is :class:`market.core.failover.Rotation`.

    A call whose open connection broke is first sent again, at once, on a new connection to the
    same front end: a kept-alive connection can close under a live front end, and a name that
    resolves to several addresses then connects to a live one (Twisted's ``HostnameEndpoint``
    tries every address of the name, a refused one at once, a silent one in parallel after
    0.3 s), so one name in DNS for all front ends fails over too.
    """

    def __init__(
        self,
        reactor,
        urls: list[str],
        user: str,
        token: str,
        *,
        draw=None,
        timeout: float = 60.0,
        client=AsyncRPC,
    ):
        from market.core.failover import Rotation

        if not urls:
            raise MarketError("no market server given — give at least one, like http://HOST:7080/RPC2")
        if draw is None:
            import random

            draw = random.random
        self.urls = list(urls)
        self.clients = [client(reactor, url, user, token, timeout) for url in self.urls]
        self.rotation = Rotation.starting_anywhere(len(self.urls), draw)

    @property
    def url(self) -> str:
        """The front end calls go to now."""
        return self.urls[self.rotation.current]

    def call(self, method: str, *args: Any, timeout: float | None = None):
        """-> Deferred firing with the result of the first front end that answers; errbacks with
        the Fault or HTTP 4xx it answered, or :class:`ServersUnreachable` after a failed round."""
        from twisted.internet import defer
        from twisted.logger import Logger

        log = Logger()
        result: defer.Deferred[Any] = defer.Deferred()
        errors: list[tuple[str, BaseException]] = []
        extra = {} if timeout is None else {"timeout": timeout}
        fresh: set[int] = set()  # servers this call already retried on a fresh connection

        def attempt(index: int | None = None) -> None:
            index = self.rotation.current if index is None else index
            d = self.clients[index].call(method, *args, **extra)
            d.addCallbacks(answered, failed, errbackArgs=(index,))

        def answered(value: Any) -> None:
            self.rotation.answered()
            result.callback(value)

        def failed(failure, index: int) -> None:
            if not unreachable(failure.value):
                if isinstance(failure.value, xmlrpc.client.Fault):
                    self.rotation.answered()
                result.errback(failure)
                return
            if broke_after_connecting(failure.value) and index not in fresh:
                # the connection broke, not necessarily the front end: once, at once, on a new one
                # (with the cached ones dropped: they may lead to the same dead process)
                fresh.add(index)
                self.clients[index].close()
                attempt(index)
                return
            errors.append((self.urls[index], failure.value))
            # another call (a cancel poll) may have moved the rotation already: then try where it went
            wait = self.rotation.unreachable() if index == self.rotation.current else 0.0
            if wait > 0 or len(errors) >= len(self.urls):
                result.errback(ServersUnreachable(errors, wait or self.rotation.first))
                return
            log.warn(
                "market server {url} unreachable ({why}); moving to {next}",
                url=self.urls[index],
                why=_describe(failure.value),
                next=self.url,
            )
            attempt()

        attempt()
        return result

    def close(self):
        from twisted.internet import defer

        return defer.gatherResults([c.close() for c in self.clients])


def server_urls(typed: list[str]) -> list[str]:
    """The market's front ends from what a person typed: each entry one URL or a comma-separated
    list of them (``server_url`` forms), duplicates dropped, at most ``MAX_SERVERS``."""
    urls: list[str] = []
    for entry in typed:
        for part in (entry or "").split(","):
            if not part.strip():
                continue
            url = server_url(part)
            if url not in urls:
                urls.append(url)
    if not urls:
        raise MarketError("no market server given — give one like http://HOST:7080/RPC2 or HOST:7080")
    if len(urls) > MAX_SERVERS:
        raise MarketError(f"{len(urls)} servers given, at most {MAX_SERVERS} are accepted — list fewer front ends")
    return urls


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
