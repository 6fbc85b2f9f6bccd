"""How a dispute ends when nobody decides it, and what a party to an open dispute is paid, in the
store, on SQLite and MariaDB (docs/trust.md, "A dispute's end and the pay held during it").

- A dispute nobody decided within ``dispute-timeout`` is given up as ``judge`` gives up one after
  MAX_DECIDERS deciders: nobody loses, nothing is verified, a result is delivered unverified with
  the reason, and a result computed on top of such a slice is not verified either.
- The worker whose slice is disputed, and the verifier that disputes it, are paid nothing while
  the dispute is open: their accepted slices are held (the money stays reserved), then paid when
  it is decided for them or given up, and never paid to a loser.
"""

from __future__ import annotations

import hashlib

from market.core import verification as policy
from market.store import accounts as sql
from market.store import clients as csql
from market.store import jobs as jsql
from market.store import verification as vsql
from tests import marketdata as md
from tests.test_verification_store import GRACE, PRICE, SLICE, T0, status_of, take, trust, world

WRONG = hashlib.sha256(b"what the first verifier says it reached").hexdigest()
DISPUTE = 600.0  # dispute-timeout
WAIT = 60.0  # verify-wait


def disputed(db):
    """``world`` with the worker's slice disputed by verifier b at T0 + 4."""
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    assert db.transact(vsql.record_replay, first["stateid"], w["b"], WRONG, T0 + 4)["verified"] is False
    assert status_of(db, w["check"]) == "disputed"
    return w


def expire(db, at):
    return db.transact(vsql.expire, at, WAIT, policy.NO_VERIFIER, DISPUTE, policy.NO_DECIDER)


def note_of(db, check_id):
    return db.transact(lambda tx: tx.scalar("SELECT note FROM checks WHERE id = ?", (check_id,)))


def another_job(db, w, name="second"):
    return md.job(db, w["member"], PRICE, name, submitted_at=T0)


def slice_on(db, job, client, at):
    """A slice of ``job`` by ``client`` leased at ``at`` and checked in 2 s later -> (lease, answer)."""
    lease = db.transact(jsql.checkout, job, client, SLICE, GRACE, at)
    return lease, db.transact(jsql.checkin, lease["stateid"], client, md.next_state(lease["state"]), at + 2)


def lease_pay(db, lease_id):
    return db.transact(lambda tx: tx.one("SELECT paid, pay_held FROM leases WHERE id = ?", (lease_id,)))


def reserved(db, account_id):
    return db.transact(lambda tx: tx.scalar("SELECT reserved FROM accounts WHERE id = ?", (account_id,)))


# -- a dispute nobody decides ------------------------------------------------------------------


def test_a_dispute_nobody_decides_is_given_up_after_the_dispute_timeout_and_nobody_loses(db):
    w = disputed(db)
    assert expire(db, T0 + 4 + DISPUTE - 1) == []  # past verify-wait, not past the dispute timeout
    assert status_of(db, w["check"]) == "disputed"
    assert expire(db, T0 + 4 + DISPUTE) == [w["check"]]
    assert status_of(db, w["check"]) == "unverifiable"
    assert note_of(db, w["check"]) == policy.NO_DECIDER.format(interpreter=w_interpreter(), seconds=DISPUTE)
    assert not any(db.transact(csql.client_by_id, w[who])["suspect"] for who in ("worker", "b"))
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'reversal'")) == 0
    assert not db.transact(
        lambda tx: tx.scalar("SELECT verified FROM states WHERE job_id = ? AND seq = 1", (w["job"],))
    )
    assert take(db, w, "c", T0 + 4 + DISPUTE + 1) is None  # nobody is handed it any more
    assert db.transact(sql.audit)["balanced"]


def test_the_dispute_timeout_counts_from_the_latest_dispute_not_from_the_check(db):
    w = disputed(db)
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 100)
    # a decider that confirms nobody sends it back to disputed, now
    db.transact(vsql.record_replay, decider["stateid"], w["c"], hashlib.sha256(b"c").hexdigest(), T0 + 101)
    assert expire(db, T0 + 4 + DISPUTE) == []
    assert status_of(db, w["check"]) == "disputed"
    assert expire(db, T0 + 101 + DISPUTE) == [w["check"]]


def w_interpreter():
    from market.tasklet import envelope

    return envelope.INTERPRETER


def finished_job(db, w):
    """The job of ``w`` run to its result by the worker (state #1 is the world's slice) -> the
    result check's id (its target: the sha256 of the result bytes)."""
    lease = db.transact(jsql.checkout, w["job"], w["worker"], SLICE, GRACE, T0 + 10)
    answer = db.transact(jsql.finish, lease["stateid"], w["worker"], b"42", "finished", None, T0 + 12)
    assert answer["status"] == "finished"
    return db.transact(
        vsql.create_check,
        "result",
        "result",
        lease["stateid"],
        hashlib.sha256(b"42").hexdigest(),
        "",
        w_interpreter(),
        1000,
        T0 + 12,
    )


def test_a_disputed_result_nobody_decides_is_delivered_unverified_with_the_reason(db):
    w = world(db)
    result = finished_job(db, w)
    db.transact(vsql.expire, T0 + 13, WAIT, policy.NO_VERIFIER)  # nothing old enough yet
    first = take(db, w, "b", T0 + 13)  # results first
    assert first["replay"] == {"result": True, "steps": 1000}
    db.transact(vsql.record_replay, first["stateid"], w["b"], WRONG, T0 + 14)
    assert status_of(db, result) == "disputed"
    assert result in expire(db, T0 + 14 + DISPUTE)
    seen = db.transact(vsql.verification_of, w["job"])
    assert seen["standing"] == "unverified"
    assert seen["reason"] == policy.NO_DECIDER.format(interpreter=w_interpreter(), seconds=DISPUTE)
    assert db.transact(jsql.job_row, w["job"])["status"] == "finished"  # delivered, not blocked
    assert db.transact(sql.audit)["balanced"]


def test_a_result_on_top_of_a_slice_whose_dispute_was_given_up_is_not_verified(db):
    w = disputed(db)
    result = finished_job(db, w)
    # a worker under watch may not decide the dispute yet (verify-wait): it replays the result
    under_watch = policy.Verifier(w["c"], w["owners"][2], w_interpreter(), trusted=False)
    replay = db.transact(vsql.take_check, under_watch, T0 + 13, GRACE, 1.0, WAIT)
    assert replay["replay"]["result"] is True
    db.transact(vsql.record_replay, replay["stateid"], w["c"], hashlib.sha256(b"42").hexdigest(), T0 + 14)
    assert status_of(db, result) == "agreed"
    assert expire(db, T0 + 4 + DISPUTE) == [w["check"]]
    seen = db.transact(vsql.verification_of, w["job"])
    assert seen["standing"] == "unverified"
    assert seen["reason"].startswith("a slice under it stays unverified: " + policy.UNDECIDED)


# -- the pay of a party to an open dispute ----------------------------------------------------


def test_a_worker_in_an_open_dispute_is_paid_nothing_and_its_slices_money_stays_reserved(db):
    w = disputed(db)
    lease, answer = slice_on(db, another_job(db, w), w["worker"], T0 + 10)
    assert answer["status"] == "accepted" and answer["paid"] == 0 and answer["pay_held"] is True
    assert lease_pay(db, lease["stateid"]) == {"paid": 0, "pay_held": 1}
    assert reserved(db, w["member"]) == lease["reserved"] > 0
    assert db.transact(sql.audit)["balanced"]


def test_a_worker_in_no_dispute_is_paid_at_check_in(db):
    w = world(db)
    lease, answer = slice_on(db, another_job(db, w), w["worker"], T0 + 10)
    assert answer["paid"] == 2 * PRICE and "pay_held" not in answer
    assert reserved(db, w["member"]) == 0


def test_the_first_verifier_of_an_open_dispute_is_held_too(db):
    w = disputed(db)
    _, answer = slice_on(db, another_job(db, w), w["b"], T0 + 10)
    assert answer["paid"] == 0 and answer["pay_held"] is True
    _, answer = slice_on(db, another_job(db, w, "third"), w["c"], T0 + 10)
    assert answer["paid"] == 2 * PRICE  # not a party


def test_held_pay_is_paid_when_the_dispute_is_decided_for_the_worker(db):
    w = disputed(db)
    lease, _ = slice_on(db, another_job(db, w), w["worker"], T0 + 10)
    host = db.transact(sql.balance, w["owners"][0])
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 13)
    assert db.transact(vsql.record_replay, decider["stateid"], w["c"], w["target"], T0 + 14)["verified"] is True
    assert status_of(db, w["check"]) == "decided"
    assert lease_pay(db, lease["stateid"]) == {"paid": 2 * PRICE, "pay_held": 0}
    assert db.transact(sql.balance, w["owners"][0]) == host + 2 * PRICE
    assert reserved(db, w["member"]) == 0
    # the lying first verifier lost: what it had held is never paid
    assert db.transact(csql.client_by_id, w["b"])["suspect"]
    assert db.transact(sql.audit)["balanced"]


def test_a_loser_is_never_paid_what_was_held_and_the_owner_gets_the_reservation_back(db):
    w = disputed(db)
    lease, _ = slice_on(db, another_job(db, w), w["worker"], T0 + 10)
    member = db.transact(sql.balance, w["member"])
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 13)
    db.transact(vsql.record_replay, decider["stateid"], w["c"], WRONG, T0 + 14)  # confirms b: the worker lied
    assert db.transact(csql.client_by_id, w["worker"])["suspect"]
    assert lease_pay(db, lease["stateid"]) == {"paid": 0, "pay_held": 0}
    assert reserved(db, w["member"]) == 0
    # the member got the world's slice back by a reversal; the held slice was never paid at all
    assert db.transact(sql.balance, w["member"]) >= member
    reversed_from_held = db.transact(
        lambda tx: tx.scalar(
            "SELECT COUNT(*) FROM ledger WHERE kind = 'reversal' AND memo LIKE ?", (f"%{lease['stateid']}",)
        )
    )
    assert reversed_from_held == 0
    assert db.transact(sql.audit)["balanced"]


def test_held_pay_is_paid_when_the_dispute_is_given_up(db):
    w = disputed(db)
    lease, _ = slice_on(db, another_job(db, w), w["worker"], T0 + 10)
    _, verifier_slice = slice_on(db, another_job(db, w, "third"), w["b"], T0 + 10)
    assert verifier_slice["pay_held"] is True
    expire(db, T0 + 4 + DISPUTE)
    assert lease_pay(db, lease["stateid"]) == {"paid": 2 * PRICE, "pay_held": 0}
    assert (
        db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM leases WHERE pay_held = 1")) == 0
    )  # both parties released
    assert reserved(db, w["member"]) == 0
    assert db.transact(sql.audit)["balanced"]


def test_a_result_checked_in_during_a_dispute_is_held_and_paid_when_it_ends(db):
    w = disputed(db)
    job = another_job(db, w)
    lease = db.transact(jsql.checkout, job, w["worker"], SLICE, GRACE, T0 + 10)
    answer = db.transact(jsql.finish, lease["stateid"], w["worker"], b"7", "finished", None, T0 + 12)
    assert answer["status"] == "finished" and answer["paid"] == 0 and answer["pay_held"] is True
    assert db.transact(sql.audit)["balanced"]
    expire(db, T0 + 4 + DISPUTE)
    assert lease_pay(db, lease["stateid"]) == {"paid": 2 * PRICE, "pay_held": 0}
    assert db.transact(sql.audit)["balanced"]


def test_a_worker_still_party_to_another_dispute_stays_held(db):
    w = disputed(db)
    # a second slice of the worker, on another job, also disputed (later)
    job = another_job(db, w)
    lease, answer = slice_on(db, job, w["worker"], T0 + 10)
    assert answer["pay_held"] is True
    from market.tasklet import envelope

    state = db.transact(lambda tx: tx.scalar("SELECT data FROM states WHERE job_id = ? AND seq = 1", (job,)))
    second = db.transact(
        vsql.create_check,
        "slice",
        "watch",
        lease["stateid"],
        envelope.payload_sha256(bytes(state)),
        "",
        w_interpreter(),
        1000,
        T0 + 12,
    )
    under_watch = policy.Verifier(w["c"], w["owners"][2], w_interpreter(), trusted=False)
    replay = db.transact(vsql.take_check, under_watch, T0 + 13, GRACE, 1.0, WAIT)  # not the first dispute
    assert replay is not None
    db.transact(vsql.record_replay, replay["stateid"], w["c"], WRONG, T0 + 14)
    assert status_of(db, second) == "disputed"
    assert expire(db, T0 + 4 + DISPUTE) == [w["check"]]  # the first dispute ends, the second not
    assert lease_pay(db, lease["stateid"]) == {"paid": 0, "pay_held": 1}
    assert expire(db, T0 + 14 + DISPUTE) == [second]
    assert lease_pay(db, lease["stateid"]) == {"paid": 2 * PRICE, "pay_held": 0}
    assert db.transact(sql.audit)["balanced"]


def test_a_dispute_is_given_up_counting_from_its_latest_dispute_or_else_its_creation():
    assert not policy.dispute_given_up(100.0, 0.0, 100.0 + DISPUTE - 0.1, DISPUTE)
    assert policy.dispute_given_up(100.0, 0.0, 100.0 + DISPUTE, DISPUTE)
    assert policy.dispute_given_up(None, 0.0, DISPUTE, DISPUTE)  # a row from before disputed_at
