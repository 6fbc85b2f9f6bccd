"""Issue 17, items 1 and 3, against a real ``twistd market``: a dishonest worker (a real client
speaking XML-RPC, tests/trust/cheater.py) checks in what a cheat would. Each cheat is refused with
Fault 10 (STATE_REFUSED), nothing is stored or paid, the lease stays open, and the honest state
sent afterwards is accepted and paid; the job's result is exact and the ledger audits clean. A
slice is paid at its lease's price, whatever the owner sets meanwhile, never above what the lease
reserved."""

from __future__ import annotations

import os
import time
import xmlrpc.client

import pytest

from market.core import money
from market.rpc import faults
from market.store import accounts as sql
from market.store import clients as csql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.hostile.support import HostileMarket, start_market
from tests.servers import Worker
from tests.support import need_program
from tests.trust.cheater import SUM_OF_SQUARES, Cheater, Lease

# a job whose result is known: sum of i*i below n, enough loop iterations for a few slices
SOURCE = SUM_OF_SQUARES
N = 400
EXPECTED = sum(i * i for i in range(N))
# another member's module: the same loop, another source
OTHER_SOURCE = SOURCE.replace("total += i * i", "total += i")
SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []


@pytest.fixture
def market(tmp_path):
    m = start_market(tmp_path, "--window", "0.2", "--threshold", "1", "--grace", "10", "--test-job-size", "30")
    # the cheater has a speed, as if it had passed its probe: it joins the pool at once
    m.db.transact(csql.record_speed, m.client_id, 1000, 1.0, time.time())
    yield m
    m.market.stop()


@pytest.fixture
def cheater(market: HostileMarket) -> Cheater:
    return Cheater(market.url, market.client_id, market.client_token)


def submit(market: HostileMarket, account_id: int, price: int, name: str = "job", source: str = SOURCE) -> int:
    return md.job(market.db, account_id, price, name, source=source, args=(N,))


def money_of(market: HostileMarket) -> tuple[int, int, int]:
    """The member's and the cheater's owner's balances, and how many ledger entries exist."""
    return (
        market.db.transact(sql.balance, market.account_id),
        market.db.transact(sql.balance, market.owner_id),
        market.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger")),
    )


def committed_seq(market: HostileMarket, job_id: int) -> int:
    return market.db.transact(jsql.committed_state, job_id)["seq"]


def assert_refused(market: HostileMarket, cheater: Cheater, lease: Lease, state: bytes, words: str) -> None:
    """The check-in is refused with STATE_REFUSED naming the problem; nothing is stored or paid; the
    lease is still open."""
    before, seq = money_of(market), committed_seq(market, lease.job)
    with pytest.raises(xmlrpc.client.Fault) as refused:
        cheater.check_in(lease, state)
    assert refused.value.faultCode == faults.STATE_REFUSED == 10
    assert words in refused.value.faultString, refused.value.faultString
    assert "nothing was stored or paid" in refused.value.faultString
    assert money_of(market) == before
    assert committed_seq(market, lease.job) == seq
    row = market.db.transact(jsql.lease_row, lease.stateid)
    assert (row["status"], row["paid"]) == ("out", 0)
    assert cheater.alive(lease)
    assert market.db.transact(sql.audit)["balanced"]


def accept_honest_and_finish(market: HostileMarket, cheater: Cheater, lease: Lease) -> None:
    """After the refusals the honest state is accepted and paid, and the job ends exact."""
    state = cheater.honest_state(lease)
    time.sleep(0.2)  # a slice that took some time: it costs more than a cent
    answer = cheater.check_in(lease, state)
    row = market.db.transact(jsql.lease_row, lease.stateid)
    assert answer["status"] == "accepted" and answer["paid"] == row["paid"] > 0
    # its exact cost plus what the job's earlier slices carried below a cent, rounded down
    carry = int(market.db.transact(jsql.job_row, lease.job)["carry"])
    carried_before = answer["paid"] * money.MILLI + carry - money.exact_cost(row["price"], row["accepted_ms"])
    assert 0 <= carried_before < money.MILLI
    assert cheater.finish(lease.job) == EXPECTED
    row = market.db.transact(jsql.job_row, lease.job)
    assert row["outcome"] == "finished"
    from market import tasklet

    assert tasklet.decode_result(bytes(row["result"])) == EXPECTED
    market.assert_serves_and_audits_clean()


def test_checking_in_the_leased_state_itself_is_refused_and_unpaid(market, cheater):
    submit(market, market.account_id, 100)
    lease = cheater.lease()
    assert_refused(market, cheater, lease, lease.state, "not made from the state")
    accept_honest_and_finish(market, cheater, lease)


def test_a_state_of_another_job_of_the_same_owner_is_refused(market, cheater):
    other = submit(market, market.account_id, 300, "B")
    target = submit(market, market.account_id, 100, "A")
    b_lease = cheater.lease()
    assert b_lease.job == other
    b_state = cheater.honest_state(b_lease)  # a real state of B with seq 1: A's next seq too
    assert cheater.check_in(b_lease, b_state)["status"] == "accepted"
    market.member().cancel(other)
    lease = cheater.lease()
    assert lease.job == target and lease.seq + 1 == 1
    assert_refused(
        market, cheater, lease, b_state, f"lease {lease.stateid} is for job {target} but this state names job {other}"
    )
    accept_honest_and_finish(market, cheater, lease)


def test_a_state_of_another_members_job_is_refused(market, cheater):
    bob, bob_token = md.account(market.db, "bob")
    theirs = submit(market, bob, 300, "D", source=OTHER_SOURCE)
    target = submit(market, market.account_id, 100, "A")
    d_lease = cheater.lease()
    assert d_lease.job == theirs
    d_state = cheater.honest_state(d_lease)
    assert cheater.check_in(d_lease, d_state)["status"] == "accepted"
    from market.rpc.client import blocking

    blocking(market.url, "account/bob", bob_token).cancel(theirs)
    lease = cheater.lease()
    assert lease.job == target
    assert_refused(market, cheater, lease, d_state, f"this state names job {theirs}")
    # nor does rewriting D's header to A's job and parent pass: it names another module. (A state
    # of a job with the SAME module, so rewritten, would pass: docs/trust.md, open until replay.)
    assert_refused(market, cheater, lease, cheater.rewritten(lease, d_state), "another module")
    accept_honest_and_finish(market, cheater, lease)


def test_an_old_state_from_one_slice_back_is_refused(market, cheater):
    submit(market, market.account_id, 100)
    first = cheater.lease()
    one = cheater.honest_state(first)
    assert cheater.check_in(first, one)["status"] == "accepted"
    second = cheater.lease()
    assert cheater.check_in(second, cheater.honest_state(second))["status"] == "accepted"
    lease = cheater.lease()
    assert lease.seq == 2
    assert_refused(market, cheater, lease, one, "not made from the state")
    accept_honest_and_finish(market, cheater, lease)


def test_a_header_rewritten_over_the_unchanged_leased_payload_is_refused_by_its_payload_hash(market, cheater):
    submit(market, market.account_id, 100)
    first = cheater.lease()
    assert cheater.check_in(first, cheater.honest_state(first))["status"] == "accepted"
    lease = cheater.lease()  # from a state whose payload hash the market stored at check-in
    forged = cheater.rewritten(lease, lease.state)
    assert_refused(market, cheater, lease, forged, "payload is the leased state's, unchanged")
    # the same from state #0, whose payload hash the market stored at submission
    accept_honest_and_finish(market, cheater, lease)


def test_a_header_rewritten_over_state_0s_payload_is_refused(market, cheater):
    submit(market, market.account_id, 100)
    lease = cheater.lease()
    assert_refused(market, cheater, lease, cheater.rewritten(lease, lease.state), "unchanged")
    accept_honest_and_finish(market, cheater, lease)


def test_an_envelope_of_the_older_format_is_refused_saying_upgrade_the_worker(market, cheater):
    submit(market, market.account_id, 100)
    lease = cheater.lease()
    assert_refused(market, cheater, lease, cheater.as_v1(cheater.honest_state(lease)), "upgrade the worker")
    accept_honest_and_finish(market, cheater, lease)


def test_a_real_worker_finishes_exact_beside_a_cheater_whose_cheats_were_refused(market, cheater, tmp_path):
    need_program("bwrap")
    job_id = submit(market, market.account_id, 100)
    lease = cheater.lease()
    for cheat in (lease.state, cheater.rewritten(lease, lease.state), cheater.as_v1(cheater.honest_state(lease))):
        with pytest.raises(xmlrpc.client.Fault) as refused:
            cheater.check_in(lease, cheat)
        assert refused.value.faultCode == faults.STATE_REFUSED
    assert cheater.check_in(lease, cheater.honest_state(lease))["status"] == "accepted"
    # an honest host's real worker (sandbox, job runtime, its own probe first) takes the job from there
    host, _ = md.account(market.db, "honest-host", grant=0)
    client_id, token = md.client(market.db, host, "honest-box")
    worker = Worker(market.url, client_id, token, str(tmp_path), "--slice", "0.5", *SANDBOX_USER).start()
    try:
        deadline = time.monotonic() + 60
        while market.db.transact(jsql.job_row, job_id)["status"] != "finished":
            assert time.monotonic() < deadline, worker.logtext()[-3000:]
            time.sleep(0.2)
    finally:
        worker.stop()
    from market import tasklet

    row = market.db.transact(jsql.job_row, job_id)
    assert row["outcome"] == "finished" and tasklet.decode_result(bytes(row["result"])) == EXPECTED
    # every state the worker checked in was bound to its lease: accepted, none refused
    statuses = market.db.transact(
        lambda tx: [r["status"] for r in tx.all("SELECT status FROM leases WHERE client_id = ?", (client_id,))]
    )
    assert statuses and set(statuses) <= {"accepted", "finished"}, statuses
    market.assert_serves_and_audits_clean()


# -- payment at the lease price ------------------------------------------------------------------


@pytest.mark.parametrize("before, after", [("2.00", "1.00"), ("2.50", "5.00")])
def test_a_price_changed_mid_slice_pays_the_lease_price_never_above_its_reservation(market, cheater, before, after):
    member = market.member()
    cents = {"2.00": 200, "1.00": 100, "2.50": 250, "5.00": 500}
    job_id = submit(market, market.account_id, cents[before])
    lease = cheater.lease(slice_seconds=1.0)
    leased = market.db.transact(jsql.lease_row, lease.stateid)
    assert leased["price"] == cents[before]
    member.price(job_id, after)
    time.sleep(0.9)
    owner_before, payee_before, _ = money_of(market)
    answer = cheater.check_in(lease, cheater.honest_state(lease))
    row = market.db.transact(jsql.lease_row, lease.stateid)
    assert answer["status"] == "accepted"
    assert answer["paid"] == row["paid"] == money.payment(cents[before], row["accepted_ms"])
    assert 0 < answer["paid"] <= row["reserved"]
    owner_after, payee_after, _ = money_of(market)
    assert (owner_before - owner_after, payee_after - payee_before) == (answer["paid"], answer["paid"])
    assert market.db.transact(sql.account_by_id, market.account_id)["reserved"] == 0  # all returned
    # the new price is the next lease's
    assert market.db.transact(jsql.lease_row, cheater.lease().stateid)["price"] == cents[after]
    market.assert_serves_and_audits_clean()
