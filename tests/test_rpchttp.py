"""market.rpc.http: the HTTP/1.1 the XML-RPC endpoint speaks, on an in-memory transport.

What a client may rely on: answers in order on a kept-alive connection, and every refusal a
status with a one-line reason, after which nothing half-read is left to confuse the next request.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from market.rpc.http import MAX_HEADER, RPCFactory


class Echo:
    """A stand-in for MarketRPC: records calls; answers at once or when the test says."""

    def __init__(self, deferred=False):
        self.calls, self.pending, self.deferred = [], [], deferred

    def answer(self, body, authorization):
        self.calls.append((body, authorization))
        if not self.deferred:
            return b"<answer>" + body + b"</answer>"
        d = Deferred()
        self.pending.append(d)
        return d


def connect(rpc, max_body=1024, idle=600.0):
    clock = Clock()
    channel = RPCFactory(rpc, max_body=max_body, idle=idle, clock=clock).buildProtocol(None)
    channel.callLater = clock.callLater  # TimeoutMixin's timer on the test clock
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport, clock


def post(body=b"<call/>", path=b"/RPC2", extra=b"", version=b"HTTP/1.1"):
    return (
        b"POST " + path + b" " + version + b"\r\nHost: market\r\nContent-Type: text/xml\r\n"
        b"Authorization: Basic Y2xpZW50LzE6dG9rZW4=\r\nContent-Length: %d\r\n" % len(body) + extra + b"\r\n" + body
    )


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


def test_a_call_is_answered_with_its_body_and_the_connection_stays_open():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    channel.dataReceived(post(b"<call>1</call>"))
    [(status, headers, body)] = responses(transport)
    assert status == 200 and body == b"<answer><call>1</call></answer>"
    assert headers[b"content-type"].startswith(b"text/xml") and b"date" in headers
    assert rpc.calls == [(b"<call>1</call>", b"Basic Y2xpZW50LzE6dG9rZW4=")]
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


def test_a_request_arriving_a_byte_at_a_time_is_read_whole():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    for byte in b"\r\n" + post(b"<slow/>"):
        channel.dataReceived(bytes([byte]))
    assert [b for _, _, b in responses(transport)] == [b"<answer><slow/></answer>"]


def refused(raw, rpc=None, max_body=1024):
    rpc = rpc or Echo()
    channel, transport, _ = connect(rpc, max_body=max_body)
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


def test_a_body_over_the_cap_is_read_and_dropped_then_refused_with_413():
    rpc = Echo()
    channel, transport, _ = connect(rpc, max_body=100)
    raw = post(b"x" * 1000)
    channel.dataReceived(raw[:200])
    assert transport.value() == b""  # still reading the body, so the client can read the answer
    channel.dataReceived(raw[200:])
    [(status, _, body)] = responses(transport)
    assert status == 413 and b"MiB" in body and transport.disconnecting and not rpc.calls


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


def test_connection_close_and_http_1_0_are_honoured():
    [(status, headers, _)], transport, _ = refused(post(extra=b"Connection: close\r\n"))
    assert status == 200 and headers[b"connection"] == b"close" and transport.disconnecting
    [(status, _, _)], transport, _ = refused(post(version=b"HTTP/1.0"))
    assert status == 200 and transport.disconnecting
    [(status, _, _)], transport, _ = refused(post(version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n"))
    assert status == 200 and not transport.disconnecting


def test_expect_100_continue_gets_its_interim_answer():
    rpc = Echo()
    channel, transport, _ = connect(rpc)
    raw = post(b"<big/>", extra=b"Expect: 100-continue\r\n")
    head = raw[: raw.index(b"\r\n\r\n") + 4]
    channel.dataReceived(head)
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


def test_an_idle_connection_is_closed_and_a_busy_one_pauses_reading():
    rpc = Echo(deferred=True)
    channel, transport, clock = connect(rpc, max_body=100, idle=600)
    clock.advance(599)
    assert not transport.disconnecting
    channel.dataReceived(post(b"a" * 50))
    for _ in range(MAX_HEADER // 100 + 2):  # a client pipelining while its call is answered
        channel.dataReceived(post(b"b" * 50))
    assert transport.producerState == "paused"
    rpc.pending[0].callback(b"done")
    assert transport.producerState == "producing"
    clock.advance(601)
    assert transport.disconnecting


@given(
    pieces=st.lists(
        st.sampled_from(
            [
                b"POST /RPC2 HTTP/1.1\r\n",
                b"GET / HTTP/1.0\r\n",
                b"Content-Length: 5\r\n",
                b"Content-Length: x\r\n",
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
)
@settings(max_examples=300, deadline=None)
def test_any_bytes_get_well_formed_answers_or_patience_never_an_exception(pieces, cuts):
    rpc = Echo()
    channel, transport, _ = connect(rpc, max_body=64)
    data = b"".join(pieces)
    for size in cuts + [len(data)]:
        if not data or transport.disconnecting:
            break
        channel.dataReceived(data[:size])
        data = data[size:]
    for status, headers, _ in responses(transport):
        assert status in (100, 200, 400, 404, 405, 411, 413, 431)
        assert status == 100 or int(headers[b"content-length"]) >= 0
