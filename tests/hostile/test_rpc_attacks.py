"""No stranger can take down the market: each attack of ``attacks_rpc`` against a real ``twistd
market`` for a few seconds, with a bystander calling all the while.

Every test asserts the issue's figures: the bystander got every answer within 1 s and 99 % within
250 ms, the market process stayed under 300 MB, and afterwards it still serves, without a restart,
with its ledger balanced; and each asserts what the attack got (refused early, closed in time,
capped). ``HOSTILE_SECONDS`` makes them run longer (the benchmark: 30 s each).
"""

from __future__ import annotations

import time

import pytest

from tests.hostile import attacks_rpc as attacks
from tests.hostile.support import MARKET_RSS_MB, Bystander, HostileMarket, MemoryWatch, attack_seconds, start_market
from tests.servers import free_port, wait_for_port

SECONDS = attack_seconds(4.0)
MiB = attacks.MiB


def under_attack(hostile: HostileMarket, attack, *args, **kw) -> dict:
    """Run ``attack`` beside a bystander and a memory watch; assert the issue's figures; return the
    attack's figures with the bystander's and the market's peak memory."""
    with MemoryWatch(hostile.pid) as memory, Bystander(hostile) as bystander:
        settle = time.monotonic() + 5
        while not bystander.latencies and time.monotonic() < settle:  # its connection comes first
            time.sleep(0.02)
        figures = attack(hostile, SECONDS, *args, **kw)
    figures["bystander"] = bystander.summary()
    figures["market_peak_mb"] = round(memory.peak)
    print(f"\n{attack.__name__}: {figures}")
    bystander.assert_served()
    assert memory.peak < MARKET_RSS_MB, figures
    hostile.assert_serves_and_audits_clean()
    return figures


@pytest.fixture
def market(tmp_path):
    """``market(*options, web=False)`` starts a market with those options (and a web port)."""
    started: list[HostileMarket] = []

    def start(*options: str, web: bool = False) -> HostileMarket:
        web_port = free_port() if web else None
        if web_port:
            options += ("--web", f"tcp:{web_port}:interface=127.0.0.1")
        hostile = start_market(tmp_path, *options)
        started.append(hostile)
        if web_port:
            wait_for_port(web_port, hostile.market.proc)
        hostile.web_port = web_port  # type: ignore[attr-defined]
        return hostile

    yield start
    for hostile in started:
        hostile.market.stop()


# -- bodies ---------------------------------------------------------------------------------------


def test_a_60_mib_anonymous_body_is_refused_before_a_byte_of_it_is_kept(market):
    hostile = market()
    figures = under_attack(hostile, attacks.huge_anonymous_body)
    assert figures["attempts"] >= 2
    assert set(figures["answers"]) <= {"fault 2", "cut off"} and figures["answers"].get("fault 2", 0) >= 1


def test_a_60_mib_body_with_wrong_credentials_is_refused_the_same_way(market):
    hostile = market()
    figures = under_attack(hostile, attacks.huge_anonymous_body, wrong_credentials=True)
    assert set(figures["answers"]) <= {"fault 2", "cut off"} and figures["answers"].get("fault 2", 0) >= 1


def test_a_flood_of_wrong_credentials_does_not_hold_up_known_callers(market):
    hostile = market()
    figures = under_attack(hostile, attacks.huge_anonymous_body, size=1024, parallel=32, wrong_credentials=True)
    assert set(figures["answers"]) <= {"fault 2", "cut off"} and figures["answers"].get("fault 2", 0) >= 1000


def test_deeply_nested_arrays_from_a_stranger_are_never_parsed(market):
    hostile = market()
    figures = under_attack(hostile, attacks.deeply_nested)
    assert set(figures["answers"]) <= {"fault 2", "cut off"} and figures["answers"].get("fault 2", 0) >= 1


def test_deeply_nested_arrays_from_a_worker_are_refused_at_the_depth_bound(market):
    hostile = market()
    figures = under_attack(hostile, attacks.deeply_nested, size=15 * MiB, authenticated=True)
    assert set(figures["answers"]) == {"fault 8"} and figures["attempts"] >= 4


def test_anonymous_bodies_that_never_finish_hold_nothing(market):
    hostile = market("--linger", "1")
    figures = under_attack(hostile, attacks.unfinished_bodies, connections=12, declared=64 * MiB)
    assert figures["opened"] > 12  # each was answered and closed, and the attacker came back
    # (the last ones, opened just before the end, may not have had their answer yet)
    assert set(figures["answers"]) <= {"fault 2", "fault 2 (still open)", "nothing (still open)"}
    assert figures["longest_open_s"] < 1 + 1.5


def test_a_workers_bodies_that_never_finish_wait_for_room_then_are_cut_off(market):
    hostile = market("--body-wait", "2", "--body-grace", "1", "--min-body-rate", "512 KiB")
    figures = under_attack(
        hostile, attacks.unfinished_bodies, connections=12, declared=16 * MiB, authorization=hostile.client_auth()
    )
    # two fit in the owner's quarter of the budget and are cut off for their rate; the rest wait for
    # room, then are told to retry (Fault 9)
    # (a connection told Fault 9 near the attack's end is still lingering then: "fault 9 (still open)")
    told = {answer.removesuffix(" (still open)") for answer in figures["answers"]}
    assert {"http 408", "fault 9"} <= told, figures
    assert figures["longest_open_s"] < 2 + 2 + 1  # body-wait, then the linger (2 s)


# -- slow connections --------------------------------------------------------------------------------


def test_a_byte_every_second_does_not_keep_a_connection(market):
    hostile = market("--header-timeout", "2")
    figures = under_attack(hostile, attacks.slow_bytes, connections=20, every=1.0)
    assert figures["closed_by_market"] >= 20 and set(figures["told"]) == {"http 408"}
    # header-timeout after its first byte, which comes up to a second after it opened; seen by the
    # attacker within a second
    assert figures["longest_open_s"] < 2 + 1 + 1 + 1


def test_keep_alive_bytes_between_requests_do_not_keep_a_connection(market):
    hostile = market("--header-timeout", "2")
    call = attacks.head(len(attacks.whoami_body()), hostile.member_auth()) + attacks.whoami_body()
    figures = under_attack(hostile, attacks.slow_bytes, connections=20, every=1.0, first=call)
    assert figures["closed_by_market"] >= 20 and figures["longest_open_s"] < 2 + 1 + 1 + 1


def test_many_connections_from_one_address_are_capped(market):
    hostile = market("--max-per-address", "50")
    figures = under_attack(hostile, attacks.many_connections, addresses=1, per_address=200)
    assert figures["held"] == 50 and figures["refused"] == {"503 from your address": 150}


def test_many_connections_from_many_addresses_are_capped_in_total(market):
    hostile = market("--max-per-address", "50", "--max-connections", "120")
    figures = under_attack(hostile, attacks.many_connections, addresses=4, per_address=50)
    assert figures["held"] == 119  # the bystander holds the 120th
    assert figures["refused"] == {"503 in total": 81}


# -- the web port ------------------------------------------------------------------------------------


def test_a_byte_every_second_does_not_keep_a_web_connection(market):
    hostile = market("--header-timeout", "2", web=True)
    figures = under_attack(hostile, attacks.slow_bytes, connections=20, every=1.0, port=hostile.web_port)
    assert figures["closed_by_market"] >= 20 and set(figures["told"]) == {"http 408"}
    # header-timeout after its first byte, which comes up to a second after it opened; seen by the
    # attacker within a second
    assert figures["longest_open_s"] < 2 + 1 + 1 + 1


def test_web_bodies_that_never_finish_are_cut_off(market):
    hostile = market("--body-grace", "1", "--min-body-rate", "512 KiB", web=True)
    figures = under_attack(
        hostile, attacks.unfinished_bodies, connections=12, declared=64 * MiB, port=hostile.web_port, path="/login"
    )
    assert figures["opened"] > 12 and "http 408" in figures["answers"]
    assert figures["longest_open_s"] < 1 + 1 + 1.5


def test_many_web_connections_are_capped_per_address_and_in_total(market):
    hostile = market("--max-per-address", "50", "--max-connections", "120", web=True)
    figures = under_attack(hostile, attacks.many_connections, addresses=4, per_address=50, port=hostile.web_port)
    assert figures["held"] == 120 and figures["held_most_from_one_address"] == 50
    assert figures["refused"] == {"503 in total": 80}
