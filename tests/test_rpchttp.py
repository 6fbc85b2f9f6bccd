"""market.rpc.http: the HTTP/1.1 the XML-RPC endpoint speaks, on an in-memory transport.

What a client may rely on: answers in order on a kept-alive connection, and every refusal a
status (or a Fault) with a one-line reason, after which nothing half-read is left to confuse the
next request. What a stranger may rely on: nothing of a body is kept before its sender is known,
and no phase of a connection waits or buffers without a bound.
"""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from market.core.errors import NotAuthenticated
from market.rpc.http import HOLD, MAX_HEADER, RPCFactory
from market.settings import ConnectionSettings

GOOD = b"Basic Y2xpZW50LzE6dG9rZW4="
SETTINGS = ConnectionSettings(
    header_timeout=10, idle_timeout=600, body_grace=5, min_body_rate=1024, linger=2, state_body=1024 * 1024
)


class Who:
    """A caller, as the service identifies one."""

    def __init__(self, max_body=1024, owner="alice"):
        self.max_body, self.owner = max_body, owner


class Echo:
    """A stand-in for MarketRPC: knows one Authorization header; records calls; answers at once
    or when the test says; identifies at once or when the test says."""

    def __init__(self, deferred=False, slow_identify=False, max_body=1024):
        self.calls, self.pending, self.deferred = [], [], deferred
        self.identifying, self.slow_identify, self.max_body = [], slow_identify, max_body

    def identify(self, authorization):
        if authorization != GOOD:
            raise NotAuthenticated("wrong credentials")
        if self.slow_identify:
            d = Deferred()
            self.identifying.append(d)
            return d
        return Who(self.max_body)

    def answer(self, body, caller):
        self.calls.append((body, caller))
        if not self.deferred:
            return b"<answer>" + body + b"</answer>"
        d = Deferred()
        self.pending.append(d)
        return d

    def refusal(self, error):
        return b"<fault>" + str(error).encode() + b"</fault>"


def connect(rpc, settings=SETTINGS, factory=None, host="10.0.0.1"):
    clock = Clock()
    factory = factory or RPCFactory(rpc, settings=settings, clock=clock)
    channel = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    channel.makeConnection(transport)
    return channel, transport, factory.clock


def post(body=b"<call/>", path=b"/RPC2", extra=b"", version=b"HTTP/1.1", auth=GOOD, length=None):
    return (
        b"POST " + path + b" " + version + b"\r\nHost: market\r\nContent-Type: text/xml\r\n"
        + (b"Authorization: " + auth + b"\r\n" if auth else b"")
        + b"Content-Length: %d\r\n" % (len(body) if length is None else length)
        + extra
        + b"\r\n"
        + body
    )  # fmt: skip


def responses(transport):
    """(status, headers, body) of every response written so far."""
    data, out = transport.value(), []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        headers = dict(line.lower().split(b": ", 1) for line in lines[1:])
        length = int(headers.get(b"content-length", b"0"))
        out.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return out


# -- calls ------------------------------------------------------------------------------------------


def test_a_call_is_answered_with_its_body_and_the_connection_stays_open():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<call>1</call>"))
    [(status, headers, body)] = responses(transport)
    assert status == 200 and body == b"<answer><call>1</call></answer>"
    assert headers[b"content-type"].startswith(b"text/xml") and b"date" in headers
    assert [b for b, _ in rpc.calls] == [b"<call>1</call>"] and rpc.calls[0][1].owner == "alice"
    assert not transport.disconnecting


def test_pipelined_calls_are_answered_one_at_a_time_in_order():
    rpc = Echo(deferred=True)
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<first/>") + post(b"<second/>"))
    assert [body for body, _ in rpc.calls] == [b"<first/>"]  # the second waits its turn
    rpc.pending[0].callback(b"one")
    assert [body for body, _ in rpc.calls] == [b"<first/>", b"<second/>"]
    rpc.pending[1].callback(b"two")
    assert [(s, b) for s, _, b in responses(transport)] == [(200, b"one"), (200, b"two")]


def test_many_pipelined_calls_answered_at_once_do_not_recurse():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<x/>") * 2000)
    assert len(responses(transport)) == 2000


def test_a_request_arriving_a_byte_at_a_time_is_read_whole():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    for byte in b"\r\n" + post(b"<slow/>"):
        channel.dataReceived(bytes([byte]))
    assert [b for _, _, b in responses(transport)] == [b"<answer><slow/></answer>"]


def test_a_head_arriving_a_byte_at_a_time_is_not_searched_again_and_again():
    channel, transport, _ = connect(Echo())
    head = b"POST /RPC2 HTTP/1.1\r\nX-Pad: " + b"a" * (MAX_HEADER - 400) + b"\r\n"
    started = time.perf_counter()
    for byte in b"\r\n" * 1000 + head:
        channel.dataReceived(bytes([byte]))
    assert time.perf_counter() - started < 1.0 and not transport.value()
    channel.dataReceived(post()[len(b"POST /RPC2 HTTP/1.1\r\n") :])
    assert [s for s, _, _ in responses(transport)] == [200]


def test_connection_close_and_http_1_0_are_honoured():
    for extra, version, closes in [
        (b"Connection: close\r\n", b"HTTP/1.1", True),
        (b"", b"HTTP/1.0", True),
        (b"Connection: keep-alive\r\n", b"HTTP/1.0", False),
    ]:
        channel, transport, _ = connect(Echo())
        channel.dataReceived(post(extra=extra, version=version))
        [(status, headers, _)] = responses(transport)
        assert status == 200 and transport.disconnecting == closes
        assert (headers.get(b"connection") == b"close") == closes


def test_expect_100_continue_is_answered_once_the_caller_is_known():
    rpc = Echo(slow_identify=True)
    channel, transport, _ = connect(rpc)
    raw = post(b"<big/>", extra=b"Expect: 100-continue\r\n")
    head = raw[: raw.index(b"\r\n\r\n") + 4]
    channel.dataReceived(head)
    assert transport.value() == b""  # not before the credentials are checked
    rpc.identifying[0].callback(Who())
    assert transport.value() == b"HTTP/1.1 100 Continue\r\n\r\n"
    channel.dataReceived(b"<big/>")
    assert transport.value().count(b"HTTP/1.1 200 OK") == 1


def test_a_failed_answer_is_a_500_and_a_caller_who_left_gets_nothing():
    rpc = Echo(deferred=True)
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post())
    rpc.pending[0].errback(RuntimeError("bug"))
    [(status, _, body)] = responses(transport)
    assert status == 500 and b"logged" in body and transport.disconnecting
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post())
    channel.connectionLost(None)
    rpc.pending[1].callback(b"too late")
    assert transport.value() == b""


# -- credentials before the body -------------------------------------------------------------------


def test_an_unknown_caller_gets_its_fault_with_200_and_connection_close_and_no_body_is_kept():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"x" * 100, auth=b"Basic bm9ib2R5Onh4", length=60 * 1024 * 1024))
    [(status, headers, body)] = responses(transport)
    assert status == 200 and body == b"<fault>wrong credentials</fault>" and headers[b"connection"] == b"close"
    assert not rpc.calls and len(channel._buffer) == 0
    # what the client still sends is thrown away, not kept, until it has all come ...
    for _ in range(60):
        channel.dataReceived(b"y" * 1024 * 1024)
        assert len(channel._buffer) == 0
    assert transport.disconnecting and len(responses(transport)) == 1


def test_a_refused_body_still_arriving_after_the_linger_is_cut_off():
    channel, transport, clock = connect(Echo())
    channel.dataReceived(post(b"", auth=b"", length=10**9))
    assert [s for s, _, _ in responses(transport)] == [200] and not transport.disconnecting
    channel.dataReceived(b"y" * 1000)
    clock.advance(SETTINGS.linger + 0.01)
    assert transport.disconnecting


def test_reading_pauses_while_the_credentials_are_looked_up():
    rpc = Echo(slow_identify=True)
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<call/>"))
    assert transport.producerState == "paused" and not rpc.calls
    rpc.identifying[0].callback(Who())
    assert transport.producerState == "producing" and [b for b, _ in rpc.calls] == [b"<call/>"]


def test_a_lookup_that_has_already_answered_goes_straight_on():
    from twisted.internet.defer import succeed

    rpc = Echo()
    rpc.identify = lambda authorization: succeed(Who())
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<a/>") + post(b"<b/>"))
    assert [b for b, _ in rpc.calls] == [b"<a/>", b"<b/>"] and transport.producerState == "producing"


def test_a_failed_lookup_answers_the_services_fault_and_closes():
    rpc = Echo(slow_identify=True)
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<call/>"))
    rpc.identifying[0].errback(NotAuthenticated("no such client"))
    [(status, _, body)] = responses(transport)
    assert status == 200 and body == b"<fault>no such client</fault>" and transport.disconnecting


def test_a_body_over_the_callers_limit_gets_413_without_being_read():
    channel, transport, _ = connect(Echo(max_body=100))
    channel.dataReceived(post(b"x" * 50, length=1000))
    [(status, _, body)] = responses(transport)
    assert status == 413 and b"100 B" in body and len(channel._buffer) == 0
    channel.dataReceived(b"x" * 950)
    assert transport.disconnecting


# -- room for bodies -------------------------------------------------------------------------------


def test_a_body_waits_for_room_with_reading_paused_then_is_refused_as_busy():
    settings = ConnectionSettings(body_budget=4 * 1024 * 1024, state_body=1024 * 1024, body_wait=3)
    rpc = Echo(deferred=True, max_body=4 * 1024 * 1024)
    factory = RPCFactory(rpc, settings=settings, clock=Clock())
    owners = []
    for n in range(5):  # four owners fill the budget with 900 KiB bodies (a quarter each)
        rpc.identify = lambda a, n=n: Who(4 * 1024 * 1024, owner=n)
        owners.append(connect(rpc, factory=factory))
        owners[-1][0].dataReceived(post(b"", length=900 * 1024))
    channel, transport, clock = owners[-1]
    assert factory.budget.used == 4 * 900 * 1024 and transport.producerState == "paused"
    clock.advance(3.01)
    [(status, _, body)] = responses(transport)
    assert status == 200 and b"retry" in body  # Fault 9, from the service
    clock.advance(settings.linger + 0.01)  # (the body it may still send is thrown away meanwhile)
    assert transport.disconnecting


def test_a_body_that_waited_is_read_when_room_frees_up():
    settings = ConnectionSettings(body_budget=4 * 1024 * 1024, state_body=1024 * 1024, body_wait=30)
    rpc = Echo(max_body=4 * 1024 * 1024)
    factory = RPCFactory(rpc, settings=settings, clock=Clock())
    first, _, _ = connect(rpc, factory=factory)
    first.dataReceived(post(b"", length=3 * 1024 * 1024))
    rpc.identify = lambda a: Who(4 * 1024 * 1024, owner="bob")
    second, transport, _ = connect(rpc, factory=factory)
    second.dataReceived(post(b"z" * 1024 * 1024))
    assert transport.producerState == "paused" and not rpc.calls
    first.dataReceived(b"a" * 3 * 1024 * 1024)  # answered at once: its room is given back
    assert [len(b) for b, _ in rpc.calls] == [3 * 1024 * 1024, 1024 * 1024]
    assert factory.budget.used == 0


def test_a_small_call_never_waits_behind_large_bodies():
    settings = ConnectionSettings(body_budget=4 * 1024 * 1024, state_body=1024 * 1024, body_wait=30)
    rpc = Echo(deferred=True, max_body=4 * 1024 * 1024)
    factory = RPCFactory(rpc, settings=settings, clock=Clock())
    for n in range(6):
        rpc.identify = lambda a, n=n: Who(4 * 1024 * 1024, owner=n)
        connect(rpc, factory=factory)[0].dataReceived(post(b"", length=900 * 1024))
    rpc.identify = lambda a: Who(4 * 1024 * 1024, owner="bystander")
    channel, transport, _ = connect(rpc, factory=factory)
    channel.dataReceived(post(b"<whoami/>"))
    assert rpc.calls[-1][0] == b"<whoami/>"


def test_room_is_given_back_when_the_connection_is_lost():
    rpc = Echo()
    factory = RPCFactory(rpc, settings=SETTINGS, clock=Clock())
    channel, _, _ = connect(rpc, factory=factory)
    channel.dataReceived(post(b"", length=1000))
    assert factory.budget.used == 1000
    channel.connectionLost(None)
    assert factory.budget.used == 0


# -- deadlines -------------------------------------------------------------------------------------


def test_headers_must_be_complete_within_the_header_timeout_of_their_first_byte():
    channel, transport, clock = connect(Echo())
    channel.dataReceived(post())
    clock.advance(100)  # idle between requests: no deadline until the idle timeout
    channel.dataReceived(b"POST /RPC2 HTTP/1.1\r\n")
    for _ in range(9):
        clock.advance(1)
        channel.dataReceived(b"X: y\r\n")  # bytes do not extend it
    assert not transport.disconnecting
    clock.advance(1.01)
    [_, (status, _, body)] = responses(transport)
    assert status == 408 and b"10 s" in body and transport.disconnecting


def test_single_bytes_between_requests_do_not_keep_a_connection_open():
    channel, transport, clock = connect(Echo())
    channel.dataReceived(post())
    for _ in range(5):
        clock.advance(2.5)
        channel.dataReceived(b"\r\n")
        if transport.disconnecting:
            break
    assert transport.disconnecting and clock.seconds() <= 12.5


def test_a_connection_that_says_nothing_is_closed_after_the_header_timeout():
    channel, transport, clock = connect(Echo())
    clock.advance(9.9)
    assert not transport.disconnecting
    clock.advance(0.2)
    assert transport.disconnecting and not transport.value()


def test_an_idle_connection_is_closed_after_the_idle_timeout():
    channel, transport, clock = connect(Echo())
    channel.dataReceived(post())
    clock.advance(599)
    assert not transport.disconnecting
    clock.advance(1.01)
    assert transport.disconnecting and len(responses(transport)) == 1  # closed without a word


def test_a_body_slower_than_the_minimum_rate_is_cut_off_after_the_grace():
    channel, transport, clock = connect(Echo(max_body=1024 * 1024))
    channel.dataReceived(post(b"", length=1024 * 1024))
    for second in range(1, 30):
        channel.dataReceived(b"x" * 1100)  # a little over the 1 KiB/s the settings ask
        clock.advance(1)
        assert not transport.disconnecting, second
    for _ in range(10):
        channel.dataReceived(b"x" * 500)
        clock.advance(1)
    [(status, _, body)] = responses(transport)
    assert status == 408 and b"slower than 1 KiB/s" in body and transport.disconnecting


def test_a_busy_connection_keeps_only_a_head_of_the_next_request():
    rpc = Echo(deferred=True, max_body=1024 * 1024)
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"a" * 50))
    channel.dataReceived(post(b"b" * (512 * 1024)))  # pipelined while the first is answered
    assert transport.producerState == "paused" and len(channel._buffer) <= HOLD + 512 * 1024
    rpc.pending[0].callback(b"done")
    assert transport.producerState == "producing"


# -- connection caps -------------------------------------------------------------------------------


def test_connections_over_the_cap_per_address_get_503_and_others_still_connect():
    factory = RPCFactory(Echo(), settings=ConnectionSettings(max_per_address=2, max_connections=3), clock=Clock())
    first = [connect(None, factory=factory)[1] for _ in range(3)]
    assert [t.disconnecting for t in first] == [False, False, True]
    [(status, _, body)] = responses(first[2])
    assert status == 503 and b"your address" in body
    other = connect(None, factory=factory, host="10.0.0.2")[1]
    assert not other.disconnecting
    [(status, _, body)] = responses(connect(None, factory=factory, host="10.0.0.3")[1])
    assert status == 503 and b"connections open" in body


def test_a_closed_connection_frees_its_place():
    factory = RPCFactory(Echo(), settings=ConnectionSettings(max_per_address=1, max_connections=1), clock=Clock())
    channel, transport, _ = connect(None, factory=factory)
    channel.connectionLost(None)
    assert not connect(None, factory=factory)[1].disconnecting


# -- refusals at the HTTP level --------------------------------------------------------------------


def refused(raw, rpc=None):
    rpc = rpc or Echo()
    channel, transport, _ = connect(rpc)
    channel.dataReceived(raw)
    return responses(transport), transport, rpc


def test_other_methods_and_paths_are_refused_with_a_reason():
    [(status, headers, body)], transport, rpc = refused(b"GET /RPC2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 405 and b"POST /RPC2" in body and transport.disconnecting and not rpc.calls
    [(status, _, body)], _, rpc = refused(post(path=b"/admin"))
    assert status == 404 and b"/admin" in body and b"/RPC2" in body and not rpc.calls


def test_a_chunked_body_gets_411():
    raw = b"POST /RPC2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    [(status, _, body)], transport, rpc = refused(raw)
    assert status == 411 and b"Content-Length" in body and transport.disconnecting and not rpc.calls


def test_malformed_requests_get_400_and_the_connection_closes():
    for raw in [
        b"POST /RPC2\r\n\r\n",
        b"POST /RPC2 HTTP/2.0\r\n\r\n",
        b"POST /RPC2 HTTP/1.1\r\nno colon\r\n\r\n",
        b"POST /RPC2 HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /RPC2 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"POST /RPC2 HTTP/1.1\r\n folded: header\r\n\r\n",
    ]:
        [(status, _, _)], transport, rpc = refused(raw)
        assert status == 400 and transport.disconnecting and not rpc.calls, raw


def test_a_header_block_over_16_kib_gets_431():
    [(status, _, _)], transport, _ = refused(b"POST /RPC2 HTTP/1.1\r\nX-Big: " + b"a" * MAX_HEADER)
    assert status == 431 and transport.disconnecting


@given(
    pieces=st.lists(
        st.sampled_from(
            [
                b"POST /RPC2 HTTP/1.1\r\n",
                b"GET / HTTP/1.0\r\n",
                b"Content-Length: 5\r\n",
                b"Content-Length: x\r\n",
                b"Authorization: " + GOOD + b"\r\n",
                b"Connection: close\r\n",
                b"Expect: 100-continue\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"\r\n",
                b"hello",
                b": :",
                b" ",
                b"\x00\xff",
                b"HTTP/1.1",
                b"\r\n\r\n",
            ]
        )
        | st.binary(max_size=40),
        max_size=30,
    ),
    cuts=st.lists(st.integers(1, 50), max_size=30),
    ticks=st.lists(st.floats(0, 20), max_size=5),
)
@settings(max_examples=300, deadline=None)
def test_any_bytes_get_well_formed_answers_or_patience_never_an_exception(pieces, cuts, ticks):
    rpc = Echo(max_body=64)
    channel, transport, clock = connect(rpc)
    data = b"".join(pieces)
    for i, size in enumerate(cuts + [len(data)]):
        if not data or transport.disconnecting:
            break
        channel.dataReceived(data[:size])
        data = data[size:]
        if i < len(ticks):
            clock.advance(ticks[i])
    for status, headers, _ in responses(transport):
        assert status in (100, 200, 400, 404, 405, 408, 411, 413, 431)
        assert status == 100 or int(headers[b"content-length"]) >= 0
    assert len(channel._buffer) <= HOLD + 64
