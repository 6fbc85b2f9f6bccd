"""The XML-RPC endpoint's HTTP/1.1: a small Twisted protocol for ``POST /RPC2`` only.

Why not twisted.web: a worker makes two calls per slice, and at a thousand slices a second the
server's one Python process is what caps the market. twisted.web builds a request object, two
header objects, a resource traversal and a Date string for every call; measured with wrk against
the same XML-RPC echo on this machine, it served 7,800 calls/s and this protocol 20,100
(docs/benchmarks.md). The web site (``--web``) stays on twisted.web; this serves one endpoint.

What it speaks, and what it refuses (every refusal has a status and a plain-text reason):

- ``POST /RPC2`` with a ``Content-Length`` body; anything else is 404 (another path) or 405
  (another method). ``Transfer-Encoding`` bodies get 411: XML-RPC clients send a length.
- Requests are answered in order on a kept-alive connection (HTTP/1.1 default; HTTP/1.0 with
  ``Connection: keep-alive``); ``Connection: close`` is honoured. Pipelined requests wait their turn.
- ``Expect: 100-continue`` gets its interim response.
- Header block over 16 KiB: 431. Body over the cap (64 MiB): the body is read and thrown away,
  then 413 and the connection closes, so the client reads the reason rather than a reset.
- Malformed request line or header: 400, and the connection closes.
- A connection that sends nothing for ``idle`` seconds (10 minutes, longer than the longest slice)
  is closed.
"""

from __future__ import annotations

from email.utils import formatdate
from typing import Any, Protocol, TypedDict, cast

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

log = Logger()

MAX_HEADER = 16 * 1024
REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
}


# A request's head, once read: the body's length, the refusal to answer instead of calling (status,
# reason), the Authorization header, whether the connection stays open, whether to send 100 Continue.
_Head = TypedDict(
    "_Head",
    {"length": int, "refusal": tuple[int, str] | None, "authorization": bytes, "keep": bool, "continue": bool},
)


class _Connection(Protocol):
    """What a channel uses of its transport. ITransport does not declare pausing, but the
    transports an endpoint gives (TCP, TLS through its wrapper, and the tests' StringTransport)
    all pause and resume reading."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...


class Refused(Exception):
    """An HTTP-level refusal: status code and a one-line reason for the client."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Date:
    """The Date header, formatted once a second rather than once a response."""

    def __init__(self, clock):
        self.clock, self.second, self.value = clock, None, b""

    def __call__(self) -> bytes:
        now = int(self.clock.seconds())
        if now != self.second:
            self.second, self.value = now, formatdate(now, usegmt=True).encode()
        return self.value


class RPCChannel(protocol.Protocol, TimeoutMixin):
    """One client connection: requests are read, answered one at a time, in order."""

    _connection: _Connection  # the transport, from connectionMade on

    def __init__(self, factory: RPCFactory):
        self.factory = factory
        self._buffer = bytearray()
        self._head: _Head | None = None  # the request whose body is being read
        self._busy = False  # a call is being answered; later requests wait
        self._paused = False  # reading stopped while busy with a full buffer
        self._discard = 0  # bytes of a refused request's body still to throw away
        self._gone = False

    # -- connection ----------------------------------------------------------------------------
    def connectionMade(self) -> None:
        self._connection = cast(_Connection, self.transport)  # set by makeConnection; see _Connection
        self.setTimeout(self.factory.idle)

    def connectionLost(self, reason=None) -> None:
        self._gone = True
        self.setTimeout(None)

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()
        if self._discard:
            taken = min(self._discard, len(data))
            self._discard -= taken
            if self._discard:
                return
            data = data[taken:]
            self._refuse_now()
            return
        self._buffer += data
        if self._busy:
            if len(self._buffer) > MAX_HEADER + self.factory.max_body and not self._paused:
                # a client pipelining more than one large call: wait until this one is answered
                self._paused = True
                self._connection.pauseProducing()
            return
        self._proceed()

    # -- requests ------------------------------------------------------------------------------
    def _proceed(self) -> None:
        while not self._busy and not self._gone:
            if self._head is None:
                try:
                    self._head = self._read_head()
                except Refused as e:  # cannot even tell where the next request starts: close
                    self._send(e.code, e.reason, close=True)
                    return
                if self._head is None:
                    return
                if self._head["refusal"]:
                    self._skip_body(self._head)
                    return
                if self._head["continue"]:
                    self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            length = self._head["length"]
            if len(self._buffer) < length:
                return
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            head, self._head = self._head, None
            self._call(head, body)

    def _read_head(self) -> _Head | None:
        # a client may send empty lines between requests (RFC 9112 section 2.2)
        while self._buffer[:2] == b"\r\n":
            del self._buffer[:2]
        end = self._buffer.find(b"\r\n\r\n", 0, MAX_HEADER + 4)
        if end < 0:
            if len(self._buffer) > MAX_HEADER:
                raise Refused(431, "request headers over 16 KiB")
            return None
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        del self._buffer[: end + 4]
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            raise Refused(400, "malformed request line (want: POST /RPC2 HTTP/1.1)")
        method, target, version = parts
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise Refused(400, "malformed header line")
            name = name.lower()
            if name in headers and name in (b"content-length", b"authorization", b"transfer-encoding"):
                raise Refused(400, f"more than one {name.decode('latin-1')} header")
            headers[name] = value.strip()
        if b"transfer-encoding" in headers:
            raise Refused(411, "send the body with a Content-Length (XML-RPC clients do)")
        length = headers.get(b"content-length", b"0")
        if not length.isdigit() or len(length) > 18:
            raise Refused(400, "malformed Content-Length")
        connection = headers.get(b"connection", b"").lower()
        refusal: tuple[int, str] | None = None
        if method != b"POST":
            refusal = (
                405,
                f"the market's XML-RPC takes POST {self.factory.path.decode()}, not {method.decode('latin-1')[:20]}",
            )
        elif target.split(b"?", 1)[0] != self.factory.path:
            refusal = (
                404,
                f"nothing at {target.decode('latin-1')[:100]}; the market's XML-RPC is at {self.factory.path.decode()}",
            )
        elif int(length) > self.factory.max_body:
            refusal = (413, f"request body over {self.factory.max_body // (1024 * 1024)} MiB; send smaller states")
        return {
            "length": int(length),
            "refusal": refusal,
            "authorization": headers.get(b"authorization", b""),
            "keep": (b"close" not in connection) if version == b"HTTP/1.1" else (b"keep-alive" in connection),
            "continue": headers.get(b"expect", b"").lower() == b"100-continue",
        }

    def _skip_body(self, head: _Head) -> None:
        """A refused request: read its body and throw it away, then answer and close. Closing with
        unread bytes would reset the connection, and the client would never see why."""
        here = min(len(self._buffer), head["length"])
        del self._buffer[:here]
        self._discard = head["length"] - here
        if not self._discard:
            self._refuse_now()

    def _refuse_now(self) -> None:
        head, self._head = self._head, None
        # only ever called with a refused request's head held (its body skipped)
        assert head is not None and head["refusal"] is not None
        code, reason = head["refusal"]
        self._send(code, reason, close=True)

    def _call(self, head: _Head, body: bytes) -> None:
        self._busy = True
        try:
            answer = self.factory.rpc.answer(body, head["authorization"])
        except Exception:
            log.failure("the XML-RPC answer failed")
            self._send(500, "internal error in the market server; it has been logged", close=True)
            return
        if isinstance(answer, defer.Deferred):
            answer.addCallback(self._reply, head)
            answer.addErrback(self._failed)
        else:
            self._reply(answer, head)

    def _reply(self, body: bytes, head: _Head) -> None:
        if self._gone:
            return
        self._busy = False
        self._send(200, body, close=not head["keep"], content_type=b"text/xml; charset=utf-8")
        if self._paused and not self._gone:
            self._paused = False
            self._connection.resumeProducing()
        self._proceed()

    def _failed(self, failure) -> None:
        log.failure("the XML-RPC answer failed", failure)
        if not self._gone:
            self._send(500, "internal error in the market server; it has been logged", close=True)

    def _send(self, code: int, body, close: bool, content_type: bytes = b"text/plain; charset=utf-8") -> None:
        if isinstance(body, str):
            body = (body + "\n").encode("utf-8")
        head = b"HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n" % (
            code,
            REASONS[code],
            self.factory.date(),
            content_type,
            len(body),
            b"Connection: close\r\n" if close else b"",
        )
        self._connection.write(head + body)
        if close:
            self._gone = True
            self.setTimeout(None)
            self._connection.loseConnection()


class RPCFactory(protocol.Factory):
    """Serves ``rpc.answer(body, authorization)`` at ``path`` over HTTP/1.1."""

    def __init__(
        self, rpc: Any, path: bytes = b"/RPC2", max_body: int = 64 * 1024 * 1024, idle: float = 600.0, clock=None
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.rpc, self.path, self.max_body, self.idle = rpc, path, max_body, idle
        self.date = _Date(clock)

    def buildProtocol(self, addr) -> RPCChannel:
        return RPCChannel(self)
