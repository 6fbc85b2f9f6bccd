"""market.edge: what any connection may cost, for the XML-RPC port and the web port alike.

The gate (connections per address and in total), the deadlines of each phase of a connection, the
body budget, and twisted.web's Site behind the same gate and deadlines.
"""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import resource, server

from market.edge.budget import SMALL, BodyBudget, Busy
from market.edge.deadlines import Deadlines
from market.edge.gate import Crowded, Gate, address_key, descriptors_for
from market.edge.web import guard
from market.settings import ConnectionSettings, SettingsError, from_mapping, show_size, size

MiB = 1024 * 1024

# -- the gate -------------------------------------------------------------------------------------


def test_an_address_counts_by_itself_and_an_ipv6_one_by_its_64():
    assert address_key(IPv4Address("TCP", "10.1.2.3", 5)) == "10.1.2.3"
    assert address_key(IPv6Address("TCP", "2001:db8:1:2:aaaa::1", 5)) == "2001:db8:1:2::/64"
    assert address_key(IPv6Address("TCP", "2001:db8:1:2:bbbb::9", 5)) == "2001:db8:1:2::/64"
    assert address_key(IPv6Address("TCP", "::ffff:10.1.2.3", 5)) == "10.1.2.3"
    assert address_key(UNIXAddress(b"/tmp/s")) == "local"


def test_the_gate_refuses_past_its_caps_and_frees_a_place_on_leave():
    gate = Gate(max_connections=3, max_per_address=2)
    a = IPv4Address("TCP", "10.0.0.1", 1)
    keys = [gate.enter(a), gate.enter(a)]
    with pytest.raises(Crowded, match="from your address"):
        gate.enter(a)
    gate.enter(IPv4Address("TCP", "10.0.0.2", 1))
    with pytest.raises(Crowded, match="3 connections open"):
        gate.enter(IPv4Address("TCP", "10.0.0.3", 1))
    gate.leave(keys[0])
    assert gate.from_address(a) == 1 and gate.open == 2
    gate.enter(a)


def test_the_open_files_limit_is_raised_or_the_connections_lowered_to_fit():
    assert 0 < descriptors_for(100) <= 100


# -- deadlines ------------------------------------------------------------------------------------


class Watch:
    def __init__(self, **settings):
        self.clock = Clock()
        self.expired: list[tuple[str, str]] = []
        self.deadlines = Deadlines(
            self.clock, ConnectionSettings(**settings), lambda phase, why: self.expired.append((phase, why))
        )


def test_an_idle_connection_expires_after_the_idle_timeout():
    w = Watch(idle_timeout=30)
    w.deadlines.idle()
    w.clock.advance(29.9)
    assert not w.expired
    w.clock.advance(0.2)
    assert w.expired == [("idle", "no request for 30 s")]


def test_a_new_connection_must_begin_a_request_within_the_header_timeout():
    w = Watch(header_timeout=10, idle_timeout=100)
    w.deadlines.opened()
    w.clock.advance(10.01)
    assert [p for p, _ in w.expired] == ["idle"]


def test_a_head_expires_from_its_first_byte_whatever_arrives_after():
    w = Watch(header_timeout=10, idle_timeout=100)
    w.deadlines.idle()
    w.clock.advance(50)
    w.deadlines.head()
    for _ in range(9):
        w.clock.advance(1)
        w.deadlines.head()  # more bytes of the same head: no new deadline
    assert not w.expired
    w.clock.advance(1.01)
    assert [p for p, _ in w.expired] == ["head"]


def test_a_body_keeping_up_with_the_rate_lives_and_one_falling_behind_expires():
    w = Watch(body_grace=5, min_body_rate=1000)
    w.deadlines.body(100_000)
    for _ in range(20):
        w.deadlines.received(1100)
        w.clock.advance(1)
    assert not w.expired
    w.clock.advance(5)  # stalls: it advances less than 5 s x 1000 B/s in the next window
    assert [p for p, _ in w.expired] == ["body"] and "22000 of 100000 bytes" in w.expired[0][1]


def test_a_body_sent_fast_and_then_stalled_is_cut_off_after_one_window():
    w = Watch(body_grace=5, min_body_rate=1000)
    w.deadlines.body(100_000, received=90_000)
    w.clock.advance(10.01)
    assert [p for p, _ in w.expired] == ["body"]


def test_a_small_body_must_be_complete_by_the_end_of_the_grace():
    w = Watch(body_grace=5, min_body_rate=1000)
    w.deadlines.body(2000, received=1000)
    w.clock.advance(5.01)
    assert [p for p, _ in w.expired] == ["body"]


def test_serving_has_no_deadline_and_stop_ends_the_timer():
    w = Watch(idle_timeout=3)
    w.deadlines.serving()
    w.clock.advance(1000)
    assert not w.expired
    w.deadlines.idle()
    w.deadlines.stop()
    w.clock.advance(1000)
    assert not w.expired and not w.clock.getDelayedCalls()


def test_a_phase_change_creates_no_timer():
    w = Watch()
    w.deadlines.idle()
    calls = list(w.clock.getDelayedCalls())
    for _ in range(100):
        w.deadlines.head()
        w.deadlines.body(10)
        w.deadlines.serving()
        w.deadlines.idle()
    assert w.clock.getDelayedCalls() == calls


# -- the body budget -------------------------------------------------------------------------------


def budget(total=16 * MiB, wait=10.0):
    clock = Clock()
    return BodyBudget(ConnectionSettings(body_budget=total, state_body=MiB, body_wait=wait), clock), clock


def test_room_is_given_at_once_while_there_is_some_and_waited_for_after():
    b, _ = budget()
    assert b.take("a", 3 * MiB) is True
    assert b.take("b", 3 * MiB) is True
    assert b.take("c", 3 * MiB) is True
    assert b.take("d", 3 * MiB) is True
    assert b.take("e", 3 * MiB) is True  # 15 MiB: the largest the budget takes
    waiting = b.take("f", 1 * MiB)
    assert not isinstance(waiting, bool) and not waiting.called
    b.give("a", 3 * MiB)
    assert waiting.called and b.used == 13 * MiB


def test_a_small_body_never_waits_behind_large_ones():
    b, _ = budget()
    for owner in "abcde":
        b.take(owner, 3 * MiB)
    assert not isinstance(b.take("f", MiB), bool)  # a large one waits
    assert b.take("g", SMALL) is True  # a small one does not (the reserve is its)


def test_one_owner_holds_at_most_a_quarter_but_always_one_body():
    b, _ = budget()
    assert b.take("a", 6 * MiB) is True  # over a quarter, but the first
    waiting = b.take("a", MiB)
    assert not isinstance(waiting, bool) and not waiting.called
    assert b.take("b", 3 * MiB) is True  # others are not held back by a's wait
    b.give("a", 6 * MiB)
    assert waiting.called


def test_a_body_waiting_too_long_is_refused_as_busy_and_a_cancelled_wait_leaves_the_queue():
    b, clock = budget(wait=4)
    b.take("a", 15 * MiB)
    waiting = b.take("b", MiB)
    failures = []
    waiting.addErrback(failures.append)
    clock.advance(4.01)
    assert failures[0].check(Busy) and "retry" in str(failures[0].value)
    cancelled = b.take("c", MiB)
    cancelled.addErrback(lambda f: f.trap(CancelledError))
    cancelled.cancel()
    b.give("a", 15 * MiB)
    assert b.used == 0


# -- settings --------------------------------------------------------------------------------------


def test_sizes_are_written_in_bytes_or_binary_units():
    assert size(4096) == 4096 and size("16 MiB") == 16 * MiB and size("256KiB") == 256 * 1024
    assert show_size(16 * MiB) == "16 MiB" and show_size(1000) == "1000 B"
    for wrong in ("16 MB", "-1", 0, 1.5, True, "lots"):
        with pytest.raises(ValueError):
            size(wrong)


def test_connection_settings_come_from_their_section_and_are_checked_together():
    got = from_mapping({"connections": {"header-timeout": 3, "state-body": "1 MiB", "body-budget": "8 MiB"}})
    assert got.connections.header_timeout == 3.0 and got.connections.largest_body == 8 * MiB - MiB // 2
    with pytest.raises(SettingsError, match="state-body .* must fit in body-budget"):
        from_mapping({"connections": {"state-body": "16 MiB", "body-budget": "16 MiB"}})
    with pytest.raises(SettingsError, match="max-per-address"):
        from_mapping({"connections": {"max-per-address": 10, "max-connections": 5}})


# -- the web site behind the same gate and deadlines -------------------------------------------------


class Hello(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.content.read()
        return b"hello"


def web(settings=None, host="10.0.0.1"):
    clock = Clock()
    site = guard(server.Site(Hello()), settings or ConnectionSettings(header_timeout=10, idle_timeout=60), clock)
    channel = site.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    channel.makeConnection(transport)
    return site, channel, transport, clock


def test_the_web_site_answers_as_before():
    _, channel, transport, _ = web()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200") and transport.value().endswith(b"hello")


def test_web_headers_must_be_complete_within_the_header_timeout_of_their_first_byte():
    _, channel, transport, clock = web()
    channel.dataReceived(b"GET / HTTP/1.1\r\n")
    for _ in range(9):
        clock.advance(1)
        channel.dataReceived(b"X: y\r\n")
    assert not transport.disconnecting
    clock.advance(1.01)
    assert transport.value().startswith(b"HTTP/1.1 408") and transport.disconnecting


def test_web_bytes_do_not_extend_the_idle_timeout():
    _, channel, transport, clock = web()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(20):
        clock.advance(2)
        channel.dataReceived(b"\r")
        if transport.disconnecting:
            break
    assert transport.disconnecting and clock.seconds() <= 12.5


def test_a_slow_web_body_is_cut_off():
    _, channel, transport, clock = web(ConnectionSettings(body_grace=2, min_body_rate=1024))
    channel.dataReceived(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
    for _ in range(10):
        channel.dataReceived(b"x" * 100)
        clock.advance(1)
    assert transport.value().startswith(b"HTTP/1.1 408") and transport.disconnecting


def test_a_web_connection_that_says_nothing_is_closed_after_the_header_timeout():
    _, _, transport, clock = web()
    clock.advance(10.1)
    assert transport.disconnecting and not transport.value()


def test_an_idle_web_connection_is_closed():
    _, channel, transport, clock = web()
    channel.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    clock.advance(59)
    assert not transport.disconnecting
    clock.advance(1.1)
    assert transport.disconnecting


def test_web_connections_over_the_caps_get_503():
    site, _, _, clock = web(ConnectionSettings(max_per_address=1, max_connections=2))
    second = site.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 40001))
    second.makeConnection(transport)
    assert transport.value().startswith(b"HTTP/1.1 503") and b"your address" in transport.value()
    assert transport.disconnecting and site.gate.open == 1


def test_twistd_market_lowers_max_connections_to_what_the_open_files_limit_allows():
    from market.tap import _within_descriptors

    class Log:
        def __init__(self):
            self.lines = []

        def warn(self, text, **kw):
            self.lines.append(text.format(**kw))

    log = Log()
    asked = ConnectionSettings(max_connections=10**9, max_per_address=10**9)
    got = _within_descriptors(asked, 2, log)
    assert got.max_connections < 10**9 and got.max_per_address == got.max_connections
    assert "ulimit -n" in log.lines[0]
    import resource

    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] >= 2 * 2000 + 256:  # the defaults fit
        assert _within_descriptors(ConnectionSettings(), 2, Log()) == ConnectionSettings()
