"""Lease methods against a real ``twistd market``: another client's lease answers exactly as one
that does not exist, and what a worker reports about a slice is bounded."""

from __future__ import annotations

import re
import time
import xmlrpc.client

import pytest

from market.rpc.client import blocking
from market.store import Database, upgrade
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market


@pytest.fixture
def leased(tmp_path):
    """A market where client ``mine`` holds a lease and client ``stranger`` (another owner) holds none."""
    url = f"sqlite:{tmp_path}/leases.sqlite"
    db = Database(url)
    upgrade(db)
    owner, _ = md.account(db, "owner", grant=100_000)
    host, _ = md.account(db, "host", grant=0)
    other, _ = md.account(db, "other", grant=0)
    job_id = md.job(db, owner, 100)
    mine_id, mine_token = md.client(db, host, "mine", 50.0)
    stranger_id, stranger_token = md.client(db, other, "stranger", 50.0)
    server = Market(url, str(tmp_path), "--window", "0.1", "--threshold", "1", "--grace", "30").start()
    mine = blocking(server.url, f"client/{mine_id}", mine_token)
    lease = mine.request(mine_id, 20)
    assert lease["status"] == "work" and lease["job"] == job_id
    stranger = blocking(server.url, f"client/{stranger_id}", stranger_token)
    yield db, server, mine, stranger, lease["stateid"], job_id
    server.stop()
    db.close()


def refusal(call) -> tuple[int, str]:
    with pytest.raises(xmlrpc.client.Fault) as e:
        call()
    return e.value.faultCode, e.value.faultString


CALLS = {
    "state": lambda rpc, lease: rpc.state(lease, xmlrpc.client.Binary(md.fake_state(seq=1))),
    "result": lambda rpc, lease: rpc.result(lease, xmlrpc.client.Binary(b"r"), {"outcome": "finished"}),
    "fail": lambda rpc, lease: rpc.fail(lease, "crash", "it broke"),
    "alive": lambda rpc, lease: rpc.alive(lease),
}


@pytest.mark.parametrize("method", list(CALLS))
def test_another_clients_lease_answers_exactly_as_a_missing_one(leased, method):
    _, _, _, stranger, lease, _ = leased
    missing = lease + 1000
    foreign_code, foreign_words = refusal(lambda: CALLS[method](stranger, lease))
    missing_code, missing_words = refusal(lambda: CALLS[method](stranger, missing))
    assert foreign_code == missing_code == 4
    assert re.sub(r"\d+", "N", foreign_words) == re.sub(r"\d+", "N", missing_words)


def test_the_holder_is_still_served_after_a_stranger_tried_its_lease(leased):
    db, _, mine, stranger, lease, job_id = leased
    for call in CALLS.values():
        refusal(lambda call=call: call(stranger, lease))
    assert mine.alive(lease) is True
    time.sleep(0.2)
    state = xmlrpc.client.Binary(md.next_state_of(db, job_id))
    assert mine.state(lease, state, {"progress": 0.5})["status"] == "accepted"
    assert db.transact(jsql.committed_state, job_id)["seq"] == 1


def test_a_reported_error_is_kept_to_a_bounded_length(leased):
    db, _, mine, _, lease, job_id = leased
    mine.result(lease, None, {"outcome": "error", "error": "x" * 200_000})
    row = db.transact(jsql.job_row, job_id)
    assert row["outcome"] == "error" and 100 < len(row["error"]) <= 2002


def test_progress_must_be_a_finite_number(leased):
    _, _, mine, _, lease, _ = leased
    for wrong in (float("nan"), float("inf"), "half"):
        code, words = refusal(
            lambda wrong=wrong: mine.state(lease, xmlrpc.client.Binary(md.fake_state(seq=1)), {"progress": wrong})
        )
        assert code == 1 and "progress" in words


def test_a_long_method_name_or_price_is_not_echoed_whole(leased):
    _, server, _, _, _, _ = leased
    db = leased[0]
    _, token = md.account(db, "echo")
    member = blocking(server.url, "account/echo", token)
    code, words = refusal(lambda: getattr(member, "x" * 100_000)())
    assert code == 8001 and len(words) < 200
    code, words = refusal(lambda: member.price(1, "9" * 100_000))
    assert code == 1 and len(words) < 200
