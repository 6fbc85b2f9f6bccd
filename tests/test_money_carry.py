"""Exact accounting: a job's slices pay its exact cost rounded down once, not once per slice.

A slice of ``ms`` milliseconds at ``price`` cents per second costs exactly ``price * ms``
thousandths of a cent; what a slice owes below a whole cent is the job's ``carry``, added to its
next slice (``money.carried_payment``). Checked on the pure rules (hypothesis) and on the real
store (SQLite and MariaDB), where many slices of 0.7 cents used to pay 0.00 each."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from market.cli import audit_words
from market.core import matcher, money, rules
from market.core.matcher import PooledClient, ReadyJob
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md

OWNER, PAYEE = 1, 2

# (price in cents per second, granted slice in ms, accepted ms as a share of it)
slices_of_a_job = st.lists(
    st.tuples(st.integers(1, 10**6), st.integers(1, 120_000), st.floats(0.0, 1.0)), min_size=1, max_size=60
)


@given(slices_of_a_job)
def test_n_slices_pay_exactly_the_rounded_total_of_their_exact_costs(slices):
    balances = {OWNER: money.MAX_CENTS, PAYEE: 0}
    carries = {7: 0}
    paid = []
    exact = 0
    for i, (price, granted_ms, share) in enumerate(slices):
        granted = granted_ms / 1000
        ms = rules.accepted_ms(0.0, granted, granted * share)  # as the server measures a check-in
        reserved = rules.reservation(rules.JobKind.JOB, price, granted)
        s = rules.Slice(i, 7, rules.JobKind.JOB, price, OWNER, PAYEE, ms, reserved)
        settlement = rules.settle([s], balances, carries)
        assert settlement.paid[i] <= reserved  # never above what the lease reserved
        assert 0 <= carries[7] < money.MILLI
        paid.append(settlement.paid[i])
        exact += price * ms
    assert sum(paid) == exact // money.MILLI  # less than one cent lost over the whole job
    assert carries[7] == exact % money.MILLI
    assert balances[PAYEE] == sum(paid) and balances[OWNER] == money.MAX_CENTS - sum(paid)


@given(st.lists(st.tuples(st.sampled_from([7, 8, 9]), st.integers(1, 500), st.integers(0, 30_000)), max_size=80))
def test_each_job_carries_its_own_remainder_within_one_settlement(slices):
    balances = {OWNER: money.MAX_CENTS, PAYEE: 0}
    carries = {7: 0, 8: 0, 9: 0}
    batch = [
        rules.Slice(i, job, rules.JobKind.JOB, price, OWNER, PAYEE, ms, money.payment_ceiling(price, ms))
        for i, (job, price, ms) in enumerate(slices)
    ]
    settlement = rules.settle(batch, balances, carries)
    for job in carries:
        mine = [s for s in batch if s.job_id == job]
        exact = sum(s.price * s.accepted_ms for s in mine)
        assert sum(settlement.paid[s.lease_id] for s in mine) == exact // money.MILLI
        assert carries[job] == exact % money.MILLI


def test_without_a_carry_a_slice_still_rounds_down_on_its_own():
    # a replay lease (verification) pays its own cost rounded down and carries nothing
    balances = {OWNER: 1000, PAYEE: 0}
    s = rules.Slice(1, 7, rules.JobKind.JOB, 1, OWNER, PAYEE, 700, 1)
    assert rules.settle([s], balances).paid == {1: 0}
    carries = {7: 400}
    assert rules.settle([s], balances, carries).paid == {1: 1} and carries == {7: 100}


def test_a_lease_reserves_the_exact_cost_rounded_up():
    assert rules.reservation(rules.JobKind.JOB, 1, 0.7) == 1  # 0.7 cents: the carry may make it 1
    assert rules.reservation(rules.JobKind.JOB, 137, 30.0) == 4110  # whole cents: as before
    assert money.carried_payment(1, 700, 999) == (1, 699)


def run_slices(db, client, job, t, n, seconds=0.7):
    """``n`` slices of ``seconds`` of ``job`` on ``client``, checked in through the real store from
    ``t`` on, ten seconds apart: what each paid."""
    paid = []
    for i in range(n):
        at = t + 10 + i * 10

        def window(tx, at=at):
            return jsql.assign_window(
                tx,
                [PooledClient(client, 10.0, at)],
                at,
                5.0,
                {client: seconds},
                matcher.match,
                lambda r: ReadyJob(r["id"], r["price"], r["submitted_at"]),
            )

        lease = db.transact(window)[client]
        assert lease["job_id"] == job
        state = md.next_state_of(db, job)
        answer = db.transact(jsql.checkin, lease["stateid"], client, state, at + seconds)
        assert answer["status"] == "accepted"
        paid.append(answer["paid"])
    return paid


def test_many_small_slices_on_the_real_store_pay_what_they_cost_in_all(db):
    t = 1_800_000_000.0
    owner, _ = md.account(db, "alice", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box")
    job = md.job(db, owner, 1, "cheap", submitted_at=t)  # 1 cent per second
    paid = run_slices(db, client, job, t, 30)
    # 30 slices of 0.7 s at 1 c/s: 21 cents (rounding each slice down paid 0.00 thirty times)
    assert sum(paid) == 21 and paid.count(0) == 9
    row = db.transact(jsql.job_row, job)
    assert int(row["carry"]) == 0  # 21.000 cents exactly: nothing left below a cent
    assert int(db.transact(sql.account_by_id, host)["balance"]) == 21
    assert db.transact(sql.audit)["balanced"]


def test_the_audit_refuses_a_carry_of_a_whole_cent(db):
    owner, _ = md.account(db, "alice", grant=100)
    job = md.job(db, owner, 1, "cheap")
    assert db.transact(sql.audit)["carries"] == []
    db.transact(lambda tx: tx.execute("UPDATE jobs SET carry = 1000 WHERE id = ?", (job,)))
    result = db.transact(sql.audit)
    assert result["carries"] == [(job, 1000)] and not result["balanced"]
    assert f"job {job}: carries 1000 thousandths of a cent" in audit_words(result)
