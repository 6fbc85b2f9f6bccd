"""A dispute's end and the pay held during it, against a real ``twistd market`` (docs/trust.md,
"A dispute's end and the pay held during it").

An honest worker (owner alice) checks in a slice; a lying verifier (owner bob, under watch)
disputes it. While the dispute is open the worker keeps getting leases, but its slices are paid
nothing (``pay_held: true``, the money stays reserved on the job owner's account); once a trusted
decider of a third owner sides with it, or nobody decides within ``dispute-timeout``, what was
held is paid, and ``market db audit`` stays clean throughout.
"""

from __future__ import annotations

import time

import pytest

from market.core import verification
from market.store import accounts as sql
from market.store import clients as csql
from tests import marketdata as md
from tests.hostile.support import HostileMarket, start_market
from tests.trust.cheater import SUM_OF_SQUARES, Cheater
from tests.trust.verifier import Verifier

N = 300
PRICE = 1000  # cents per second


def _client(m: HostileMarket, owner: str, trusted: bool = False) -> tuple[int, str]:
    account_id, _ = md.account(m.db, owner, grant=0)
    client = md.client(m.db, account_id, owner + "-box", speed=1000)
    if trusted:
        m.db.transact(
            lambda tx: tx.execute(
                "UPDATE clients SET verified_slices = ? WHERE id = ?", (verification.DEFAULT_WATCH_SLICES, client[0])
            )
        )
    return client


def market(tmp_path, dispute_timeout: float) -> HostileMarket:
    return start_market(
        tmp_path,
        "--window",
        "0.2",
        "--threshold",
        "1",
        "--grace",
        "10",
        "--verify-wait",
        "600",
        "--dispute-timeout",
        str(dispute_timeout),
        "--reap-interval",
        "0.3",
    )


def check_of(m: HostileMarket, lease_id: int) -> dict:
    return m.db.transact(lambda tx: tx.one("SELECT * FROM checks WHERE lease_id = ? AND kind = 'slice'", (lease_id,)))


def lease_pay(m: HostileMarket, lease_id: int) -> dict:
    return m.db.transact(lambda tx: tx.one("SELECT paid, pay_held FROM leases WHERE id = ?", (lease_id,)))


def reserved(m: HostileMarket) -> int:
    return int(m.db.transact(lambda tx: tx.scalar("SELECT reserved FROM accounts WHERE id = ?", (m.account_id,))))


def disputed_slice(m: HostileMarket, worker: Cheater, liar: Verifier) -> int:
    """The worker's honest slice of a job, disputed by ``liar``'s made-up replay -> its lease id."""
    md.job(m.db, m.account_id, PRICE, "first", source=SUM_OF_SQUARES, args=(N,))
    lease = worker.lease()
    time.sleep(0.2)
    answer = worker.check_in(lease, Cheater.honest_state(lease))
    assert answer["status"] == "accepted" and answer["paid"] > 0 and "pay_held" not in answer
    replay = liar.replay_lease()
    assert liar.lie(replay)["verified"] is False
    assert check_of(m, lease.stateid)["status"] == "disputed"
    return lease.stateid


def held_slice(m: HostileMarket, worker: Cheater) -> int:
    """A slice of another job, checked in by the worker while its dispute is open -> its lease id."""
    md.job(m.db, m.account_id, PRICE, "second", source=SUM_OF_SQUARES, args=(N,))
    lease = worker.lease()
    time.sleep(0.2)
    answer = worker.check_in(lease, Cheater.honest_state(lease))
    assert answer["status"] == "accepted" and answer["accepted_ms"] > 0
    assert answer["paid"] == 0 and answer["pay_held"] is True, answer
    assert lease_pay(m, lease.stateid) == {"paid": 0, "pay_held": 1}
    assert reserved(m) > 0  # the slice's money waits on the owner's account
    m.assert_serves_and_audits_clean()
    return lease.stateid


@pytest.fixture
def parties(tmp_path):
    m = market(tmp_path, dispute_timeout=600)
    yield m
    m.market.stop()


def test_a_worker_in_an_open_dispute_is_paid_once_a_trusted_decider_sides_with_it(parties):
    m = parties
    worker = Cheater(m.url, *_client(m, "alice"))
    liar = Verifier(m.url, *_client(m, "bob"))
    decider = Verifier(m.url, *_client(m, "carol", trusted=True))
    disputed = disputed_slice(m, worker, liar)
    held = held_slice(m, worker)
    owner_of_worker = m.db.transact(csql.client_by_id, worker.client_id)["account_id"]
    before = m.db.transact(sql.balance, owner_of_worker)
    replay = decider.replay_lease()  # disputes are handed out first
    assert decider.honest(replay)["verified"] is True
    assert check_of(m, disputed)["status"] == "decided"
    assert m.db.transact(csql.client_by_id, liar.client_id)["suspect"]
    assert not m.db.transact(csql.client_by_id, worker.client_id)["suspect"]
    pay = lease_pay(m, held)
    assert pay["pay_held"] == 0 and pay["paid"] > 0
    assert m.db.transact(sql.balance, owner_of_worker) == before + pay["paid"]
    assert reserved(m) == 0
    m.assert_serves_and_audits_clean()


def test_a_dispute_nobody_decides_is_given_up_after_the_timeout_and_the_held_pay_is_paid(tmp_path):
    m = market(tmp_path, dispute_timeout=2)
    try:
        worker = Cheater(m.url, *_client(m, "alice"))
        liar = Verifier(m.url, *_client(m, "bob"))
        disputed = disputed_slice(m, worker, liar)
        held = held_slice(m, worker)
        deadline = time.monotonic() + 15
        while check_of(m, disputed)["status"] == "disputed":
            assert time.monotonic() < deadline, "the dispute was never given up"
            time.sleep(0.2)
        check = check_of(m, disputed)
        assert check["status"] == "unverifiable"
        assert check["note"].startswith(verification.UNDECIDED + ": no decider")
        assert not any(m.db.transact(csql.client_by_id, c)["suspect"] for c in (worker.client_id, liar.client_id))
        assert m.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'reversal'")) == 0
        pay = lease_pay(m, held)
        assert pay["pay_held"] == 0 and pay["paid"] > 0
        assert reserved(m) == 0
        # the worker is paid at check-in again
        md.job(m.db, m.account_id, PRICE, "third", source=SUM_OF_SQUARES, args=(N,))
        lease = worker.lease()
        time.sleep(0.2)
        answer = worker.check_in(lease, Cheater.honest_state(lease))
        assert answer["paid"] > 0 and "pay_held" not in answer
        m.assert_serves_and_audits_clean()
    finally:
        m.market.stop()
