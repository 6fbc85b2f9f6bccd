"""A worker given several front ends of one market: it moves to another at once when one cannot be
reached, waits (bounded exponential backoff with jitter) only when all failed, never moves on a
Fault, and delivers a finished slice to any front end before the lease's deadline.

The rotation is pure (``market.core.failover``); the client and the worker's loop run here on
``twisted.internet.task.Clock`` with fake servers: no socket, no sleep. The same behaviour against
real ``twistd market`` processes, one killed with SIGKILL, is tests/test_failover_e2e.py.
"""

from __future__ import annotations

import random
import xmlrpc.client
from collections import Counter

import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer, error, task
from twisted.python.failure import Failure
from twisted.web.client import ResponseNeverReceived

from market.core.failover import BACKOFF_CAP, Rotation, backoff_delay
from market.rpc.client import FailoverRPC, HTTPRefusal, ServersUnreachable, server_urls, unreachable
from market.worker.service import WorkerService
from market.worker.slices import SliceReport

A, B, C = (f"http://10.0.0.{i}:7080/RPC2" for i in (1, 2, 3))


def draws(*values):
    """A ``draw`` that returns ``values`` in turn, then 0.0."""
    queue = list(values)
    return lambda: queue.pop(0) if queue else 0.0


# -- the rotation (pure) -------------------------------------------------------------------------


def test_a_worker_stays_on_a_front_end_that_answers():
    rotation = Rotation(3, draws())
    for _ in range(5):
        rotation.answered()
    assert rotation.current == 0


def test_an_unreachable_front_end_is_left_at_once_for_one_not_tried_in_this_round():
    rotation = Rotation(3, draws(0.9, 0.0))
    assert rotation.unreachable() == 0.0 and rotation.current == 2  # 0.9 of [1, 2]
    assert rotation.unreachable() == 0.0 and rotation.current == 1  # the only one untried
    assert rotation.failed_round == {0, 2}


def test_only_when_every_front_end_failed_does_the_worker_wait_and_the_wait_grows_to_its_cap():
    rotation = Rotation(2, draws(), first=1.0, cap=8.0)
    waits = []
    for _ in range(6):
        assert rotation.unreachable() == 0.0  # the other one, at once
        waits.append(rotation.unreachable())  # both failed: wait
    # draw 0.0: the lower half of 1, 2, 4, 8, 8, 8 ("equal jitter")
    assert waits == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_an_answer_ends_the_backoff_and_the_round():
    rotation = Rotation(2, draws())
    rotation.unreachable(), rotation.unreachable(), rotation.unreachable(), rotation.unreachable()
    assert rotation.rounds == 2
    rotation.answered()
    assert rotation.rounds == 0 and not rotation.failed_round
    assert rotation.unreachable() == 0.0  # a fresh round: the other front end at once
    assert rotation.unreachable() == backoff_delay(1, 0.0)


def test_after_a_failed_round_the_next_starts_on_another_front_end():
    rotation = Rotation(3, draws(0.0, 0.0, 0.99))
    rotation.unreachable(), rotation.unreachable()  # 0 -> 1 -> 2
    assert rotation.current == 2
    rotation.unreachable()  # round over: not 2 again first
    assert rotation.current == 1


def test_one_server_waits_on_every_failure():
    rotation = Rotation(1, draws())
    assert [rotation.unreachable() for _ in range(3)] == [0.5, 1.0, 2.0]
    assert rotation.current == 0


def test_the_workers_of_a_dead_front_end_spread_over_the_live_ones():
    rng = random.Random(20)
    landed = Counter()
    for _ in range(3000):
        rotation = Rotation(4, rng.random)  # all on front end 0, which dies
        rotation.unreachable()
        landed[rotation.current] += 1
    assert set(landed) == {1, 2, 3}
    assert min(landed.values()) > 900  # ~1000 each, not all on the neighbour


def test_workers_given_the_same_list_start_on_all_of_it():
    rng = random.Random(7)
    starts = Counter(Rotation.starting_anywhere(3, rng.random).current for _ in range(3000))
    assert set(starts) == {0, 1, 2} and min(starts.values()) > 900


@given(st.integers(1, 10_000), st.floats(0.0, 1.0, exclude_max=True))
def test_a_backoff_is_never_zero_never_above_its_cap_and_at_least_half_its_ceiling(rounds, draw):
    wait = backoff_delay(rounds, draw)
    ceiling = min(BACKOFF_CAP, 2.0 ** min(rounds - 1, 62))
    assert ceiling / 2 <= wait <= ceiling <= BACKOFF_CAP


def test_nonsense_is_refused():
    with pytest.raises(ValueError, match="at least one server"):
        Rotation(0, draws())
    with pytest.raises(ValueError, match="rounds"):
        backoff_delay(0, 0.5)
    with pytest.raises(ValueError, match="draw"):
        Rotation(2, draws(1.0)).unreachable()


# -- what moves a worker ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "e",
    [
        error.ConnectionRefusedError(),
        error.TimeoutError(),
        error.DNSLookupError("no such name"),
        defer.CancelledError(),
        ResponseNeverReceived([Failure(error.ConnectionLost())]),  # a kept-alive connection reset
        HTTPRefusal(502, "server answered HTTP 502: Bad Gateway"),
        HTTPRefusal(503, "server answered HTTP 503: over the connection cap"),
        xmlrpc.client.ResponseError("not an XML-RPC answer"),
    ],
)
def test_a_front_end_that_cannot_be_reached_or_is_no_market_moves_the_worker(e):
    assert unreachable(e)


@pytest.mark.parametrize(
    "e",
    [
        xmlrpc.client.Fault(9, "database unavailable"),
        xmlrpc.client.Fault(4, "no lease 7"),
        HTTPRefusal(413, "request body over 48 MiB"),
        ValueError("a bug"),
    ],
)
def test_an_answer_of_a_live_market_does_not_move_the_worker(e):
    assert not unreachable(e)


# -- the client over several front ends ------------------------------------------------------------


class FakeServers:
    """Front ends by URL: each answers from its own list (an exception instance fails the call);
    an exhausted list repeats its last answer. Records (url, method) of every call."""

    def __init__(self, **answers):
        self.answers = {url: list(a) for url, a in answers.items()}
        self.calls: list[tuple[str, str]] = []
        self.timeouts: list[float | None] = []

    def client(self, reactor, url, user, token, timeout):
        servers = self

        class Client:
            def call(self, method, *args, timeout=None):
                servers.calls.append((url, method))
                servers.timeouts.append(timeout)
                queue = servers.answers[url]
                answer = queue.pop(0) if len(queue) > 1 else queue[0]
                return defer.fail(answer) if isinstance(answer, Exception) else defer.succeed(answer)

            def close(self):
                return defer.succeed(None)

        return Client()


REFUSED = error.ConnectionRefusedError()
FAULT9 = xmlrpc.client.Fault(9, "database error: briefly unavailable")
WORK_NONE = {"status": "none", "retry_after": 2.0}


def rpc(servers, *draw_values, urls=(A, B, C)):
    return FailoverRPC(task.Clock(), list(urls), "client/1", "t", draw=draws(*draw_values), client=servers.client)


def test_a_call_to_a_dead_front_end_goes_at_once_to_another_and_stays_there():
    servers = FakeServers(**{A: [REFUSED], B: [WORK_NONE], C: [WORK_NONE]})
    client = rpc(servers, 0.0, 0.0)  # starts on A; then B
    d = client.call("request", 1, 5.0)
    assert d.result == WORK_NONE
    client.call("request", 1, 5.0)
    assert servers.calls == [(A, "request"), (B, "request"), (B, "request")]


def test_a_fault_is_an_answer_it_is_returned_and_never_moves_the_worker():
    servers = FakeServers(**{A: [FAULT9], B: [WORK_NONE]})
    client = rpc(servers, urls=(A, B))
    d = client.call("request", 1, 5.0)
    failure = []
    d.addErrback(failure.append)
    assert failure[0].check(xmlrpc.client.Fault) and servers.calls == [(A, "request")]
    assert client.url == A


def test_a_proxys_502_moves_the_worker_and_a_413_does_not():
    servers = FakeServers(**{A: [HTTPRefusal(502, "bad gateway"), HTTPRefusal(413, "too large")], B: [WORK_NONE]})
    client = rpc(servers, urls=(A, B))
    assert client.call("request", 1, 5.0).result == WORK_NONE and client.url == B
    servers.answers[B] = [HTTPRefusal(413, "too large")]
    failure = []
    client.call("state", 7, b"x").addErrback(failure.append)
    assert failure[0].check(HTTPRefusal) and client.url == B


def test_when_every_front_end_fails_the_call_fails_with_the_wait_and_each_reason():
    servers = FakeServers(**{A: [REFUSED], B: [error.TimeoutError()], C: [REFUSED]})
    client = rpc(servers)
    failure = []
    client.call("request", 1, 5.0).addErrback(failure.append)
    e = failure[0].value
    assert isinstance(e, ServersUnreachable) and 0.5 <= e.wait <= 1.0
    assert [url for url, _ in e.errors] == [A, B, C] and all(u in str(e) for u in (A, B, C))
    assert len(servers.calls) == 3  # each once: no server twice in a round


def test_server_urls_takes_repeated_and_comma_separated_servers_once_each():
    assert server_urls(["a:1", "b:2, c:3", "http://a:1/RPC2"]) == [
        "http://a:1/RPC2",
        "http://b:2/RPC2",
        "http://c:3/RPC2",
    ]
    assert server_urls(["https://m.example/RPC2"]) == ["https://m.example/RPC2"]  # one, as before
    from market.core.errors import MarketError

    with pytest.raises(MarketError, match="no market server given"):
        server_urls([" , "])
    with pytest.raises(MarketError, match="at most 64"):
        server_urls([",".join(f"h{i}:1" for i in range(65))])
    with pytest.raises(MarketError, match="must start with http"):
        server_urls(["a:1,ftp://b/"])


def test_the_worker_options_take_several_servers_and_keep_the_single_one(monkeypatch):
    from twisted.python import usage

    from market.worker.tap import Options, makeService

    options = Options()
    options.parseOptions(["--client", "1", "--token", "t", "--server", "a:1", "--server", "b:2,c:3"])
    assert options["servers"] == ["http://a:1/RPC2", "http://b:2/RPC2", "http://c:3/RPC2"]
    assert makeService(options).servers == options["servers"]
    options = Options()
    options.parseOptions(["--client", "1", "--token", "t", "--server", "m:7080"])
    assert options["server"] == "http://m:7080/RPC2" and options["servers"] == [options["server"]]
    monkeypatch.setenv("MARKET_SERVER", "x:1,y:2")
    options = Options()
    options.parseOptions(["--client", "1", "--token", "t"])
    assert options["servers"] == ["http://x:1/RPC2", "http://y:2/RPC2"]
    with pytest.raises(usage.UsageError, match="--server: server URL 'ftp://z' must start with http"):
        Options().parseOptions(["--client", "1", "--token", "t", "--server", "a:1,ftp://z"])


# -- the worker's loop and check-in, on a fake clock -------------------------------------------------


def worker(servers, *draw_values, urls=(A, B, C)):
    clock = task.Clock()
    service = WorkerService(server=list(urls), client_id=1, token="t", reactor=clock)
    service.rpc = FailoverRPC(clock, list(urls), "client/1", "t", draw=draws(*draw_values), client=servers.client)
    return service, clock


def test_the_loop_waits_only_after_every_front_end_failed_then_finds_the_live_one():
    servers = FakeServers(**{A: [REFUSED], B: [REFUSED]})
    service, clock = worker(servers, 0.0, 0.0, 0.0, 0.0, urls=(A, B))
    service._loop = service.loop()
    assert servers.calls == [(A, "request"), (B, "request")]  # B at once, no wait in between
    clock.advance(0.49)
    assert len(servers.calls) == 2  # backing off: 0.5 s (draw 0.0 of 1 s, equal jitter)
    servers.answers[A] = [WORK_NONE]
    clock.advance(0.01)
    assert servers.calls[2:] == [(A, "request")]  # the new round starts on the other one
    clock.advance(2.0)  # retry_after of "none": the same front end, which answered
    assert servers.calls[3:] == [(A, "request")]
    service.stopping = True
    clock.advance(2.0)


def test_a_finished_slice_is_checked_in_on_another_front_end_at_once():
    servers = FakeServers(**{A: [REFUSED], B: [{"status": "accepted"}], C: [REFUSED]})
    service, clock = worker(servers, 0.0, 0.0)
    d = service.report(7, SliceReport("finished", result=b"r"), local_deadline=10.0)
    assert d.result == {"status": "accepted"}
    assert servers.calls == [(A, "result"), (B, "result")] and clock.seconds() == 0
    assert servers.timeouts == [10.0, 10.0]  # no call outlives the lease's deadline


def test_a_check_in_that_no_front_end_takes_is_retried_on_all_of_them_until_the_deadline():
    servers = FakeServers(**{A: [REFUSED], B: [REFUSED], C: [FAULT9]})
    service, clock = worker(servers)
    d = service.report(7, SliceReport("ok", envelope=b"env", progress=0.5), local_deadline=4.0)
    clock.pump([0.5] * 20)
    assert d.called and d.result is None  # given up: the market rolls the lease back
    tried = {url for url, _ in servers.calls}
    assert tried == {A, B, C}
    assert all(t is not None and t <= 4.0 for t in servers.timeouts)


def test_a_fault_9_check_in_stays_on_its_front_end_which_shares_the_database():
    servers = FakeServers(**{A: [FAULT9, FAULT9, {"status": "accepted"}], B: [{"status": "accepted"}]})
    service, clock = worker(servers, urls=(A, B))
    d = service.report(7, SliceReport("ok", envelope=b"env"), local_deadline=60.0)
    clock.pump([0.5, 1.0])
    assert d.result == {"status": "accepted"} and [u for u, _ in servers.calls] == [A, A, A]


def test_a_broken_kept_alive_connection_is_retried_once_on_a_fresh_one_before_moving():
    lost = ResponseNeverReceived([Failure(error.ConnectionLost())])
    servers = FakeServers(**{A: [lost, WORK_NONE], B: [WORK_NONE]})
    client = rpc(servers, urls=(A, B))
    assert client.call("request", 1, 5.0).result == WORK_NONE and client.url == A
    servers.answers[A] = [lost]  # broken again on the fresh connection: the front end is gone
    assert client.call("request", 1, 5.0).result == WORK_NONE and client.url == B
    assert [u for u, _ in servers.calls] == [A, A, A, A, B]


# -- one name, several addresses: real sockets on 127.0.0.1 and 127.0.0.2 ----------------------------


@pytest_twisted.ensureDeferred
async def test_a_name_that_resolves_to_several_front_ends_fails_over_to_a_live_address():
    from twisted.internet import reactor
    from twisted.internet.address import IPv4Address
    from twisted.internet.interfaces import IHostnameResolver
    from twisted.web import resource, server
    from zope.interface import implementer

    from market.ports import free_port

    class Answer(resource.Resource):
        isLeaf = True

        def __init__(self, name):
            super().__init__()
            self.name = name

        def render_POST(self, request):
            request.setHeader(b"content-type", b"text/xml")
            return xmlrpc.client.dumps(({"status": "none", "by": self.name},), methodresponse=True).encode()

    class Site(server.Site):
        """A front end whose open connections can be dropped, as a process killed with SIGKILL drops them."""

        def __init__(self, name):
            super().__init__(Answer(name))
            self.open = []

        def buildProtocol(self, addr):
            protocol = super().buildProtocol(addr)
            self.open.append(protocol)
            return protocol

    @implementer(IHostnameResolver)
    class TwoAddresses:
        def resolveHostName(self, receiver, name, portNumber=0, addressTypes=None, transportSemantics="TCP"):
            from twisted.internet._resolver import HostResolution

            receiver.resolutionBegan(HostResolution(name))
            if name == "market.test":
                for ip in ("127.0.0.1", "127.0.0.2"):
                    receiver.addressResolved(IPv4Address("TCP", ip, portNumber))
            receiver.resolutionComplete()
            return receiver

    port = free_port()
    first, second = Site("first"), Site("second")
    listening = [
        reactor.listenTCP(port, first, interface="127.0.0.1"),
        reactor.listenTCP(port, second, interface="127.0.0.2"),
    ]
    old = reactor.nameResolver
    reactor.installNameResolver(TwoAddresses())
    client = FailoverRPC(reactor, [f"http://market.test:{port}/RPC2"], "client/1", "t")
    try:
        assert (await client.call("request", 1, 5.0))["by"] == "first"
        await defer.maybeDeferred(listening[0].stopListening)  # the first front end dies: no listener,
        # and its open connections reset
        for protocol in first.open:
            protocol._channel.transport.abortConnection()
        began = reactor.seconds()
        assert (await client.call("request", 1, 5.0))["by"] == "second"
        assert reactor.seconds() - began < 1.0 and client.rotation.rounds == 0  # at once: no backoff
    finally:
        reactor.installNameResolver(old)
        await client.close()
        for p in listening:
            await defer.maybeDeferred(p.stopListening)


def test_a_front_end_that_answers_nothing_before_the_timeout_is_left_at_once_not_tried_again():
    hung = ResponseNeverReceived([Failure(defer.CancelledError())])  # what AsyncRPC's timeout gives
    servers = FakeServers(**{A: [hung], B: [WORK_NONE]})
    client = rpc(servers, urls=(A, B))
    assert client.call("request", 1, 5.0).result == WORK_NONE
    assert [u for u, _ in servers.calls] == [A, B]
    servers.answers[B] = [hung]
    servers.answers[A] = [hung]
    failure = []
    client.call("request", 1, 5.0).addErrback(failure.append)
    assert "no answer before the call's timeout" in str(failure[0].value)
