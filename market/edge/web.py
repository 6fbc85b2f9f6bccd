"""twisted.web's ``Site`` behind the same gate and deadlines as the XML-RPC port.

twisted.web's own timeout is one idle timer that every received byte resets (a client sending a
byte every few seconds keeps a connection forever) and it has no cap on connections. :func:`guard`
gives a ``Site`` a channel that keeps the market's deadlines instead (``market.edge.deadlines``:
headers within ``header-timeout`` of their first byte, bodies at ``min-body-rate`` after
``body-grace``, ``idle-timeout`` between requests that bytes do not extend) and counts its
connections in a :class:`~market.edge.gate.Gate`. The site's own request class still caps what a
body may hold (``market.web.site.CappedRequest``); twisted.web keeps a body over 100 KB in a
temporary file, not in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.python.failure import Failure
from twisted.web import http, server

from market.edge.deadlines import BODY, HEAD, IDLE, Deadlines
from market.edge.gate import Crowded, Gate
from market.settings import ConnectionSettings


class GuardedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with the market's deadlines and connection caps (no HTTP/2: the market
    does not offer it)."""

    def __init__(self, settings: ConnectionSettings, gate: Gate, clock: Any):
        super().__init__()
        self._gate, self._clock = gate, clock
        self._gate_key: str | None = None
        self._answering = False  # a request's content is all here: the site is answering it
        self.deadlines = Deadlines(clock, settings, self._expired)

    def connectionMade(self) -> None:
        super().connectionMade()
        transport = self.transport
        assert transport is not None
        try:
            self._gate_key = self._gate.enter(transport.getPeer())
        except Crowded as e:
            reason = (str(e) + "\n").encode("utf-8")
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(reason), reason)
            )
            self.deadlines.stop()
            self.dataReceived = lambda data: None  # type: ignore[method-assign]  # read nothing more
            transport.loseConnection()
            return
        self.deadlines.opened()

    def dataReceived(self, data: bytes) -> None:
        phase = self.deadlines.phase
        if phase == IDLE:
            self.deadlines.head()
        elif phase == BODY:
            self.deadlines.received(len(data))
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self.length:  # (0: no body; None: chunked, whose length is not known)
            self.deadlines.body(self.length)
        elif self.length is None:
            self.deadlines.body(2**62)  # a chunked body: held to the rate until it ends

    def allContentReceived(self) -> None:
        self._answering = True
        self.deadlines.serving()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        self._answering = False
        # idle first: the next request's buffered bytes are replayed by requestDone, and they
        # start its head phase
        self.deadlines.idle()
        super().requestDone(request)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.deadlines.stop()
        if self._gate_key is not None:
            self._gate.leave(self._gate_key)
            self._gate_key = None
        super().connectionLost(reason)

    def _expired(self, phase: str, reason: str) -> None:
        transport = self.transport
        assert transport is not None
        if phase in (HEAD, BODY) and not self._answering:
            body = (reason + "\n").encode("utf-8")
            transport.write(
                b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
            )
        transport.loseConnection()
        self._abortingCall = self._clock.callLater(self.abortTimeout, self.forceAbortClient)


def guard(site: server.Site, settings: ConnectionSettings, clock: Any = None) -> server.Site:
    """Give ``site`` the market's deadlines and connection caps (its own idle timer is switched
    off); returns it, for chaining. Its connections are counted in a gate of its own."""
    if clock is None:
        from twisted.internet import reactor as clock
    gate = Gate(settings.max_connections, settings.max_per_address)

    def channel() -> GuardedChannel:
        return GuardedChannel(settings, gate, clock)

    site.timeOut = None
    # HTTPFactory.buildProtocol calls self.protocol(); the instance attribute wins over the class's
    site.protocol = channel  # type: ignore[assignment]  # twisted types it as its own factory function
    site.gate = gate  # type: ignore[attr-defined]  # for tests and the log: how many are open
    return site
