"""A slice that reached no freeze point (``fail`` with status ``nofreeze``), on both backends: the
owner pays the lease's price for the measured time and the worker's owner is paid, the job keeps
its committed state, and at the ``nofreeze-strikes``-th such slice it ends ``nofreeze`` with the
worker's reason."""

from __future__ import annotations

from market.core import money
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md

T0 = 1_800_000_000.0
SLICE, GRACE = 2.0, 10.0
PRICE = 150  # cents per second
WHY = "the job reached no freeze point within its slice of 2 s. It was inside one long call at line 4 in work()."


def world(db):
    owner, _ = md.account(db, "owner", grant=1_000_000)
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box", 10.0)
    job = md.job(db, owner, PRICE, "stuck", submitted_at=T0)
    return owner, host, client, job


def lease(db, job, client, at):
    return db.transact(lambda tx: jsql.checkout(tx, job, client, SLICE, GRACE, at)["stateid"])


def test_a_slice_without_a_freeze_point_is_paid_for_its_measured_time_and_the_job_goes_back(db):
    owner, host, client, job = world(db)
    before = db.transact(sql.balance, owner)
    stateid = lease(db, job, client, T0)
    answer = db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, T0 + 7.0)
    # measured 7 s from checkout, capped at the granted slice: 2 s at 1.50 per second
    assert answer["status"] == "rejected" and answer["accepted_ms"] == 2000
    assert answer["paid"] == money.payment(PRICE, 2000) == 300
    assert db.transact(sql.balance, owner) == before - 300
    assert db.transact(sql.balance, host) == 300
    row = db.transact(lambda tx: jsql.job_row(tx, job))
    assert row["status"] == "ready" and row["seq"] == 0 and row["executed_ms"] == 2000 and row["slices"] == 1
    assert db.transact(sql.audit)["balanced"]


def test_a_repeated_nofreeze_report_pays_nothing_twice(db):
    owner, host, client, job = world(db)
    stateid = lease(db, job, client, T0)
    db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, T0 + 2.5)
    again = db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, T0 + 3.0)
    assert again["duplicate"] and again["paid"] == 300
    assert db.transact(sql.balance, host) == 300


def test_a_late_nofreeze_report_is_not_paid(db):
    owner, host, client, job = world(db)
    stateid = lease(db, job, client, T0)
    answer = db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, T0 + SLICE + GRACE + 1)
    assert answer["status"] == "rejected" and answer["paid"] == 0
    assert db.transact(sql.balance, host) == 0
    assert db.transact(sql.audit)["balanced"]


def test_the_third_slice_without_a_freeze_point_ends_the_job_with_the_reason(db):
    owner, host, client, job = world(db)
    at = T0
    for strike in range(3):
        stateid = lease(db, job, client, at)
        db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, at + 2.0)
        at += 3.0
        row = db.transact(lambda tx: jsql.job_row(tx, job))
        assert row["status"] == ("finished" if strike == 2 else "ready")
    assert row["outcome"] == "nofreeze" and row["error"] == WHY
    assert row["slices"] == 3 and row["executed_ms"] == 6000
    assert db.transact(sql.balance, host) == 900
    assert db.transact(sql.audit)["balanced"]


def test_the_number_of_strikes_is_the_markets_setting(db):
    owner, host, client, job = world(db)
    stateid = lease(db, job, client, T0)
    db.transact(jsql.fail_lease, stateid, client, "nofreeze", WHY, T0 + 2.0, 1)
    assert db.transact(lambda tx: jsql.job_row(tx, job))["outcome"] == "nofreeze"


def test_other_failures_are_still_not_paid(db):
    owner, host, client, job = world(db)
    stateid = lease(db, job, client, T0)
    answer = db.transact(jsql.fail_lease, stateid, client, "timeout", "slow", T0 + 2.0)
    assert answer["paid"] == 0 and db.transact(sql.balance, host) == 0
