"""The XML-RPC endpoint's HTTP/1.1: a small Twisted protocol for ``POST /RPC2`` only.

Why not twisted.web: a worker makes two calls per slice, and at a thousand slices a second the
server's one Python process is what caps the market. twisted.web builds a request object, two
header objects, a resource traversal and a Date string for every call; measured with wrk against
the same XML-RPC echo on this machine, it served 7,800 calls/s and this protocol 20,100
(docs/benchmarks.md). The web site (``--web``) stays on twisted.web; this serves one endpoint.

The market is open to strangers, so a request is read in steps and nothing is held without a bound
(docs/rpc.md, "What the endpoint refuses"):

1. **Head.** At most 16 KiB (431), complete within ``header-timeout`` of its first byte (408).
   ``POST /RPC2`` with a ``Content-Length`` only: another path 404, another method 405,
   ``Transfer-Encoding`` 411, a malformed line or header 400.
2. **Credentials, before any body byte is read.** Reading pauses while the service identifies the
   caller from the Authorization header (a cache hit costs a dictionary lookup; a miss is a
   database read off the reactor thread). An unknown caller gets Fault 2 (HTTP 200, as scripts
   expect) with ``Connection: close``.
3. **Room.** A body over the caller's own limit (a worker's state limit, a member's upload limit)
   gets 413. Otherwise it needs room in the process's body budget (``market.edge.budget``): it
   waits with reading paused, and after ``body-wait`` seconds gets Fault 9 (busy, retry).
4. **Body.** Read only now (``Expect: 100-continue`` answered now, so a refused client never
   sends it), at ``min-body-rate`` or better after ``body-grace`` (408).
5. **Answer.** ``service.answer(body, caller)``; the room is given back when it is sent. Requests
   are answered in order on a kept-alive connection (pipelining allowed, but only a head's worth
   of the next request is read while one is answered); ``Connection: close`` and HTTP/1.0 close.

Every refusal is a status (or a Fault) with a one-line reason, after which the connection closes;
whatever the client still sends of a refused request's body is read and thrown away, never kept,
for at most ``linger`` seconds, so that it can read the answer. A connection over the caps of
``market.edge.gate`` gets 503 at once; one that sends nothing within ``header-timeout`` of opening,
or nothing for ``idle-timeout`` after an answer, is closed (stray bytes start a request's head and
its deadline, they do not extend the idle time).
"""

from __future__ import annotations

from collections.abc import Hashable
from email.utils import formatdate
from typing import Any, Protocol, TypedDict, cast

from twisted.internet import defer, protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from market.edge.budget import BodyBudget
from market.edge.deadlines import BODY, HEAD, IDLE, Deadlines
from market.edge.gate import Crowded, Gate
from market.settings import ConnectionSettings, show_size

log = Logger()

MAX_HEADER = 16 * 1024
#: what is kept of the next request while one is being answered (a pipelining client): its head and
#: a little more, never its body, which is read only once its sender is known and there is room
HOLD = MAX_HEADER + 64 * 1024
REASONS = {
    100: b"Continue",
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    411: b"Length Required",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}
TEXT = b"text/plain; charset=utf-8"
XML = b"text/xml; charset=utf-8"

# what a connection is doing: reading a head; waiting for its caller to be identified; waiting for
# room for the body; reading the body; having it answered; throwing a refused body away; closed
_HEAD, _AUTH, _ROOM, _BODY, _CALL, _LINGER, _CLOSED = range(7)


# A request's head, once read: the body's length, the refusal to answer instead of calling (status,
# reason), the Authorization header, whether the connection stays open, whether to send 100 Continue.
_Head = TypedDict(
    "_Head",
    {"length": int, "refusal": tuple[int, str] | None, "authorization": bytes, "keep": bool, "continue": bool},
)


class Caller(Protocol):
    """Whom a request's credentials name, as far as HTTP cares: how large a body they may send,
    and whose share of the body budget it counts against."""

    @property
    def max_body(self) -> int: ...

    @property
    def owner(self) -> Hashable: ...


class Service(Protocol):
    """What the channel serves (``market.rpc.methods.MarketRPC``)."""

    def identify(self, authorization: bytes) -> Caller | defer.Deferred[Any]:
        """The caller an Authorization header names (at once, or a Deferred of it); raises (or
        fails with) an error otherwise."""

    def answer(self, body: bytes, caller: Any) -> bytes | defer.Deferred[bytes]:
        """The response body for a call by ``caller`` (what :meth:`identify` gave)."""

    def refusal(self, error: BaseException) -> bytes:
        """The response body (an XML-RPC Fault) that refuses a caller with ``error``."""


class _Connection(Protocol):
    """What a channel uses of its transport. ITransport does not declare pausing, but the
    transports an endpoint gives (TCP, TLS through its wrapper, and the tests' StringTransport)
    all pause and resume reading."""

    def write(self, data: bytes) -> None: ...

    def loseConnection(self) -> None: ...

    def abortConnection(self) -> None: ...

    def pauseProducing(self) -> None: ...

    def resumeProducing(self) -> None: ...

    def getPeer(self) -> Any: ...


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


class RPCChannel(protocol.Protocol):
    """One client connection: requests are read, answered one at a time, in order."""

    _connection: _Connection  # the transport, from connectionMade on

    def __init__(self, factory: RPCFactory):
        self.factory = factory
        self._buffer = bytearray()
        self._state = _HEAD
        self._head: _Head | None = None  # the request being served, from its head to its answer
        self._caller: Caller | None = None
        self._room = 0  # bytes of the body budget this request holds
        self._waiting: defer.Deferred | None = None  # for the caller's identity or for room
        self._paused = False
        self._proceeding = False
        self._discard = 0  # bytes of a refused request's body still to throw away
        self._scanned = 0  # bytes at the front of the buffer already searched for a head's end
        self._gate_key: str | None = None
        self._abort: Any = None
        self.deadlines = Deadlines(factory.clock, factory.settings, self._expired)

    # -- connection ----------------------------------------------------------------------------
    def connectionMade(self) -> None:
        self._connection = cast(_Connection, self.transport)  # set by makeConnection; see _Connection
        try:
            self._gate_key = self.factory.gate.enter(self._connection.getPeer())
        except Crowded as e:
            self._state = _CLOSED
            self._write(503, str(e), close=True)
            self._close()
            return
        self.deadlines.opened()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._state = _CLOSED
        self.deadlines.stop()
        if self._gate_key is not None:
            self.factory.gate.leave(self._gate_key)
            self._gate_key = None
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.cancel()
        self._give_back()
        if self._abort is not None and self._abort.active():
            self._abort.cancel()
        self._buffer = bytearray()

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state == _LINGER:
            self._discard -= len(data)
            if self._discard <= 0:
                self._close()
            return
        if state == _CLOSED:
            return
        if state == _BODY:
            self.deadlines.received(len(data))
        elif state == _HEAD and self.deadlines.phase == IDLE:
            self.deadlines.head()
        self._buffer += data
        if state == _HEAD or state == _BODY:
            self._proceed()
        elif len(self._buffer) > HOLD:
            # waiting for the caller, for room, or for an answer: keep no more than a head
            self._pause()

    # -- requests ------------------------------------------------------------------------------
    def _proceed(self) -> None:
        if self._proceeding:  # an answer given at once, from inside this loop: the loop goes on
            return
        self._proceeding = True
        try:
            while True:
                if self._state == _HEAD:
                    if not self._start_request():
                        return
                elif self._state == _BODY:
                    head = self._head
                    assert head is not None
                    length = head["length"]
                    if len(self._buffer) < length:
                        return
                    with memoryview(self._buffer) as view:
                        body = bytes(view[:length])  # the one copy of the body
                        # a new buffer for what follows: a bytearray keeps its allocation when
                        # its front is deleted, and a kept-alive connection would hold the size of
                        # its largest body for as long as it stays open
                        rest = bytearray(view[length:])
                    self._buffer = rest
                    self._call(body)
                else:
                    return
        finally:
            self._proceeding = False

    def _start_request(self) -> bool:
        """Read a head and, when the caller is known at once, get room for its body; True when
        the body can be read now."""
        try:
            head = self._read_head()
        except Refused as e:  # cannot even tell where the next request starts: close
            self._write(e.code, e.reason, close=True)
            self._close()
            return False
        if head is None:
            return False
        self._head = head
        self.deadlines.serving()  # identifying the caller and finding room are the market's waits
        if head["refusal"]:
            code, reason = head["refusal"]
            self._refuse(code, reason)
            return False
        self._state = _AUTH
        try:
            identity = self.factory.service.identify(head["authorization"])
        except Exception as e:
            self._unknown(e)
            return False
        if isinstance(identity, defer.Deferred):
            self._pause()
            self._waiting = identity
            identity.addCallbacks(self._identified, self._not_identified)
            return self._state == _BODY  # (a Deferred that had already fired)
        return self._admit(identity)

    def _identified(self, caller: Caller) -> None:
        self._waiting = None
        if self._state == _AUTH and self._admit(caller):
            self._proceed()

    def _not_identified(self, failure: Failure) -> None:
        self._waiting = None
        if self._state == _AUTH:
            self._unknown(cast(BaseException, failure.value))

    def _unknown(self, error: BaseException) -> None:
        """The credentials name no one (or could not be checked): the service's Fault, then close."""
        try:
            answer = self.factory.service.refusal(error)
        except Exception:
            log.failure("the XML-RPC refusal failed")
            self._refuse(500, "internal error in the market server; it has been logged")
            return
        self._refuse(200, answer, XML)

    def _admit(self, caller: Caller) -> bool:
        """The caller is known: refuse a body over their limit, else get room for it; True when
        the body can be read now."""
        head = self._head
        assert head is not None
        length = head["length"]
        budget = self.factory.budget
        limit = min(caller.max_body, budget.largest)
        if length > limit:
            self._refuse(413, f"request body over {show_size(limit)}, the limit for your credentials; send less")
            return False
        self._caller = caller
        if length:
            room = budget.take(caller.owner, length)
            if isinstance(room, defer.Deferred):
                self._state = _ROOM
                self._pause()
                self._waiting = room
                room.addCallbacks(self._roomy, self._no_room)
                return self._state == _BODY
            self._room = length
        self._read_body()
        return True

    def _roomy(self, _: bool) -> None:
        self._waiting = None
        assert self._head is not None
        self._room = self._head["length"]
        if self._state == _ROOM:
            self._read_body()
            self._proceed()
        else:  # (cannot happen: closing cancels the wait) never keep room for a closed connection
            self._give_back()

    def _no_room(self, failure: Failure) -> None:
        self._waiting = None
        if self._state == _ROOM:
            self._unknown(cast(BaseException, failure.value))
        elif not failure.check(defer.CancelledError):
            log.failure("waiting for room for a body failed", failure)

    def _read_body(self) -> None:
        head = self._head
        assert head is not None
        self._state = _BODY
        if head["continue"]:
            self._connection.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if head["length"] > len(self._buffer):
            self.deadlines.body(head["length"], len(self._buffer))
        self._resume()

    def _read_head(self) -> _Head | None:
        buffer = self._buffer
        if buffer[:2] == b"\r\n":
            # a client may send empty lines between requests (RFC 9112 section 2.2): drop them at once
            blank = 2
            while buffer[blank : blank + 2] == b"\r\n":
                blank += 2
            del buffer[:blank]
            self._scanned = 0
        # search only what is new (a head arriving a byte at a time is not scanned again and again)
        end = buffer.find(b"\r\n\r\n", max(0, self._scanned - 3), MAX_HEADER + 4)
        if end < 0:
            if len(buffer) > MAX_HEADER:
                raise Refused(431, "request headers over 16 KiB")
            self._scanned = len(buffer)
            return None
        self._scanned = 0
        lines = bytes(buffer[:end]).split(b"\r\n")
        del buffer[: end + 4]
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
        return {
            "length": int(length),
            "refusal": refusal,
            "authorization": headers.get(b"authorization", b""),
            "keep": (b"close" not in connection) if version == b"HTTP/1.1" else (b"keep-alive" in connection),
            "continue": headers.get(b"expect", b"").lower() == b"100-continue",
        }

    def _refuse(self, code: int, body: str | bytes, content_type: bytes = TEXT) -> None:
        """Answer the request being read and close: what is here of its body is dropped, and what
        the client still sends is read and thrown away for at most ``linger`` seconds (closing with
        unread bytes would reset the connection, and the client might never see why)."""
        head = self._head
        # a client that asked "Expect: 100-continue" and got no 100 sends no body
        length = head["length"] if head is not None and not head["continue"] else 0
        self._discard = length - min(len(self._buffer), length)
        self._buffer = bytearray()  # nothing after a refused request is read as a request
        self._give_back()
        self._write(code, body, close=True, content_type=content_type)
        if self._discard <= 0:
            self._close()
            return
        self._state = _LINGER
        self.deadlines.linger()
        self._resume()

    def _call(self, body: bytes) -> None:
        self._state = _CALL
        self.deadlines.serving()
        try:
            answer = self.factory.service.answer(body, cast(Caller, self._caller))
        except Exception:
            log.failure("the XML-RPC answer failed")
            self._failed(None)
            return
        if isinstance(answer, defer.Deferred):
            answer.addCallbacks(self._reply, self._failed)
        else:
            self._reply(answer)

    def _reply(self, body: bytes) -> None:
        if self._state != _CALL:
            return
        head = self._head
        assert head is not None
        self._give_back()
        self._head, self._caller = None, None
        self._write(200, body, close=not head["keep"], content_type=XML)
        if not head["keep"]:
            self._close()
            return
        self._state = _HEAD
        if self._buffer:
            self.deadlines.head()
        else:
            self.deadlines.idle()
        self._resume()
        self._proceed()

    def _failed(self, failure: Failure | None) -> None:
        if failure is not None:
            log.failure("the XML-RPC answer failed", failure)
        if self._state == _CALL:
            self._give_back()
            self._write(500, "internal error in the market server; it has been logged", close=True)
            self._close()

    def _expired(self, phase: str, reason: str) -> None:
        """A phase overran its deadline (``market.edge.deadlines``)."""
        if phase == HEAD and self._state == _HEAD or phase == BODY and self._state == _BODY:
            self._give_back()
            self._write(408, reason, close=True)
        self._close()

    # -- plumbing ------------------------------------------------------------------------------
    def _give_back(self) -> None:
        if self._room:
            room, self._room = self._room, 0
            caller = self._caller
            assert caller is not None
            self.factory.budget.give(caller.owner, room)

    def _pause(self) -> None:
        if not self._paused:
            self._paused = True
            self._connection.pauseProducing()

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._connection.resumeProducing()

    def _close(self) -> None:
        """Close once what was written has been sent; abort if the client will not take it."""
        if self._abort is not None:
            return
        self._state = _CLOSED
        self.deadlines.stop()
        self._connection.loseConnection()
        self._abort = self.factory.clock.callLater(self.factory.settings.linger, self._connection.abortConnection)

    def _write(self, code: int, body: str | bytes, close: bool, content_type: bytes = TEXT) -> None:
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


class RPCFactory(protocol.Factory):
    """Serves ``service`` (identify, then answer) at ``path`` over HTTP/1.1, within ``settings``."""

    def __init__(
        self,
        service: Service,
        path: bytes = b"/RPC2",
        settings: ConnectionSettings | None = None,
        clock: Any = None,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.service, self.path, self.clock = service, path, clock
        self.settings = settings or ConnectionSettings()
        self.gate = Gate(self.settings.max_connections, self.settings.max_per_address)
        self.budget = BodyBudget(self.settings, clock)
        self.date = _Date(clock)

    def buildProtocol(self, addr) -> RPCChannel:
        return RPCChannel(self)
