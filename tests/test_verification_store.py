"""Verification by replay in the store, on SQLite and MariaDB (``market.store.verification``):
checks, replay leases, verdicts, reversals by new ledger entries and the job's way back."""

from __future__ import annotations

import hashlib

from market.core import verification as policy
from market.store import accounts as sql
from market.store import clients as csql
from market.store import jobs as jsql
from market.store import verification as vsql
from market.tasklet import envelope
from tests import marketdata as md

T0 = 1_800_000_000.0
SLICE, GRACE = 30.0, 5.0
PRICE = 100  # cents per second


def world(db):
    """A member's job, its slice run by a worker of owner W and checked in 2 s later; two
    opted-in verifiers of owners B and C. -> dict of ids and the slice's payload hash."""
    member = md.account(db, "member", grant=1_000_000)[0]
    owners = [md.account(db, name + "-host", grant=0)[0] for name in ("w", "b", "c")]
    worker, b, c = (md.client(db, owner, f"{name}-box", 10.0)[0] for owner, name in zip(owners, "wbc", strict=True))
    job = md.job(db, member, PRICE, "job", submitted_at=T0)
    lease = db.transact(jsql.checkout, job, worker, SLICE, GRACE, T0)
    state = md.next_state(lease["state"])
    answer = db.transact(jsql.checkin, lease["stateid"], worker, state, T0 + 2)
    assert answer["status"] == "accepted" and answer["paid"] == 2 * PRICE
    target = envelope.payload_sha256(state)
    check = db.transact(
        vsql.create_check, "slice", "watch", lease["stateid"], target, "", envelope.INTERPRETER, 1000, T0 + 2
    )
    return dict(member=member, owners=owners, worker=worker, b=b, c=c, job=job, lease=lease, target=target, check=check)


def verifier(w, who: str) -> policy.Verifier:
    owner = w["owners"]["wbc".index(who)]
    return policy.Verifier(w[who] if who != "w" else w["worker"], owner, envelope.INTERPRETER)


def take(db, w, who: str, at: float):
    return db.transact(vsql.take_check, verifier(w, who), at, GRACE, 1.0)


def status_of(db, check_id: int) -> str:
    return db.transact(lambda tx: tx.scalar("SELECT status FROM checks WHERE id = ?", (check_id,)))


def test_a_replay_that_reaches_the_target_verifies_the_slice_and_pays_the_verifier(db):
    w = world(db)
    replay = take(db, w, "b", T0 + 3)
    assert replay["replay"] == {"target": w["target"], "mark": "", "steps": 1000}
    assert replay["state"] == w["lease"]["state"]  # the parent S, never S'
    answer = db.transact(vsql.record_replay, replay["stateid"], w["b"], w["target"], T0 + 4)
    assert answer["verified"] is True and answer["status"] == "accepted"
    assert answer["paid"] == PRICE  # 1 s measured, at the lease's price
    assert status_of(db, w["check"]) == "agreed"
    assert db.transact(lambda tx: tx.scalar("SELECT verified FROM states WHERE job_id = ? AND seq = 1", (w["job"],)))
    assert db.transact(csql.client_by_id, w["worker"])["verified_slices"] == 1
    assert db.transact(sql.audit)["balanced"]


def test_a_replay_is_never_paid_more_than_the_slice_it_checks(db):
    w = world(db)
    replay = take(db, w, "b", T0 + 3)
    answer = db.transact(vsql.record_replay, replay["stateid"], w["b"], w["target"], T0 + 3 + 5.0)
    assert answer["paid"] == 2 * PRICE  # the checked slice was accepted for 2 s
    assert db.transact(sql.audit)["balanced"]


def test_the_worker_and_its_owner_never_verify_their_own_slice(db):
    w = world(db)
    assert take(db, w, "w", T0 + 3) is None
    same_owner = md.client(db, w["owners"][0], "w-box2", 10.0)[0]
    assert (
        db.transact(vsql.take_check, policy.Verifier(same_owner, w["owners"][0], envelope.INTERPRETER), T0, 5, 1)
        is None
    )
    other_interpreter = policy.Verifier(w["b"], w["owners"][1], "pypy-3.9")
    assert db.transact(vsql.take_check, other_interpreter, T0 + 3, GRACE, 1.0) is None
    assert status_of(db, w["check"]) == "waiting"


def test_a_dispute_lost_by_the_worker_reverses_its_slice_marks_it_suspect_and_rolls_the_job_back(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    wrong = hashlib.sha256(b"what an honest replay reached").hexdigest()
    assert db.transact(vsql.record_replay, first["stateid"], w["b"], wrong, T0 + 4)["verified"] is False
    assert status_of(db, w["check"]) == "disputed"
    assert take(db, w, "b", T0 + 5) is None  # the first verifier does not decide its own dispute
    third = take(db, w, "c", T0 + 5)
    assert third["state"] == w["lease"]["state"]
    host_before = db.transact(sql.balance, w["owners"][0])
    assert db.transact(vsql.record_replay, third["stateid"], w["c"], wrong, T0 + 6)["verified"] is False
    assert status_of(db, w["check"]) == "decided"
    assert db.transact(csql.client_by_id, w["worker"])["suspect"]
    assert not db.transact(csql.client_by_id, w["b"])["suspect"]
    entries = db.transact(lambda tx: tx.all("SELECT * FROM ledger WHERE kind = 'reversal'"))
    assert [(e["debit_account"], e["credit_account"], e["amount"]) for e in entries] == [
        (w["owners"][0], w["member"], 2 * PRICE)
    ]
    assert db.transact(sql.balance, w["owners"][0]) == host_before - 2 * PRICE
    job = db.transact(jsql.job_row, w["job"])
    assert job["status"] == "ready" and job["seq"] == 0
    assert db.transact(jsql.committed_state, w["job"])["seq"] == 0
    # the cheated state is kept as evidence, out of the job's sequence
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM states WHERE status = 'discarded'")) == 1
    # the job leases again from state 0 and its next slice is seq 1 again
    lease = db.transact(jsql.checkout, w["job"], w["c"], SLICE, GRACE, T0 + 7)
    assert lease["seq"] == 0
    assert db.transact(jsql.checkin, lease["stateid"], w["c"], md.next_state(lease["state"]), T0 + 8)["status"] == (
        "accepted"
    )
    assert db.transact(sql.audit)["balanced"]


def test_a_lying_first_verifier_loses_its_replay_payment_and_the_slice_stands(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    lie = hashlib.sha256(b"a lie").hexdigest()
    paid = db.transact(vsql.record_replay, first["stateid"], w["b"], lie, T0 + 4)["paid"]
    third = take(db, w, "c", T0 + 5)
    assert db.transact(vsql.record_replay, third["stateid"], w["c"], w["target"], T0 + 6)["verified"] is True
    assert db.transact(csql.client_by_id, w["b"])["suspect"]
    assert not db.transact(csql.client_by_id, w["worker"])["suspect"]
    entries = db.transact(lambda tx: tx.all("SELECT * FROM ledger WHERE kind = 'reversal'"))
    assert [(e["debit_account"], e["amount"]) for e in entries] == [(w["owners"][1], paid)]
    assert db.transact(jsql.job_row, w["job"])["seq"] == 1
    assert db.transact(sql.audit)["balanced"]


def test_a_check_nobody_takes_is_given_up_after_the_wait_and_a_late_replay_is_unpaid(db):
    w = world(db)
    replay = take(db, w, "b", T0 + 3)
    # the replay lease expires; the check waits again, then is given up
    db.transact(jsql.expire_leases, replay["deadline"] + 1)
    assert db.transact(vsql.expire, replay["deadline"] + 1, 1e9, policy.NO_VERIFIER) == []
    assert status_of(db, w["check"]) == "waiting"
    late = db.transact(vsql.record_replay, replay["stateid"], w["b"], w["target"], replay["deadline"] + 2)
    assert late["paid"] == 0 and late["verified"] is False
    assert db.transact(vsql.expire, T0 + 100, 60.0, policy.NO_VERIFIER) == [w["check"]]
    assert status_of(db, w["check"]) == "unverifiable"
    assert db.transact(sql.audit)["balanced"]


def trust(db, client_id: int) -> None:
    """Give a client the verified slices that take it out of watch."""
    db.transact(
        lambda tx: tx.execute(
            "UPDATE clients SET verified_slices = ? WHERE id = ?", (policy.DEFAULT_WATCH_SLICES, client_id)
        )
    )


def fourth(db, w) -> tuple[int, policy.Verifier]:
    owner = md.account(db, "d-host", grant=0)[0]
    client = md.client(db, owner, "d-box", 10.0)[0]
    return client, policy.Verifier(client, owner, envelope.INTERPRETER)


def test_a_dispute_waits_for_a_trusted_decider_and_goes_to_one_under_watch_only_after_verify_wait(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    db.transact(vsql.record_replay, first["stateid"], w["b"], hashlib.sha256(b"x").hexdigest(), T0 + 4)
    watched = verifier(w, "c")._replace(trusted=False)
    assert db.transact(vsql.take_check, watched, T0 + 5, GRACE, 1.0, 60.0) is None
    assert status_of(db, w["check"]) == "disputed"
    late = db.transact(vsql.take_check, watched, T0 + 4 + 60.0, GRACE, 1.0, 60.0)
    assert late is not None and late["replay"]["steps"] == 4000  # a decider: 4x the cap


def test_a_cap_hit_is_no_disagreement_and_the_capped_verifier_keeps_its_pay(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    cap_state = hashlib.sha256(b"where the cap stopped").hexdigest()
    answer = db.transact(vsql.record_replay, first["stateid"], w["b"], cap_state, T0 + 4, True)
    assert answer["verified"] is False and status_of(db, w["check"]) == "disputed"
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 5)
    assert decider["replay"]["steps"] == 4000  # 4x the first replay's cap
    assert db.transact(vsql.record_replay, decider["stateid"], w["c"], w["target"], T0 + 6)["verified"] is True
    assert status_of(db, w["check"]) == "decided"
    for who in ("worker", "b", "c"):
        assert not db.transact(csql.client_by_id, w[who])["suspect"]
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'reversal'")) == 0
    assert db.transact(lambda tx: tx.scalar("SELECT verified FROM states WHERE job_id = ? AND seq = 1", (w["job"],)))
    assert db.transact(sql.audit)["balanced"]


def test_a_trusted_decider_that_also_hits_its_larger_cap_makes_only_the_worker_lose(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    db.transact(vsql.record_replay, first["stateid"], w["b"], hashlib.sha256(b"cap1").hexdigest(), T0 + 4, True)
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 5)
    db.transact(vsql.record_replay, decider["stateid"], w["c"], hashlib.sha256(b"cap4").hexdigest(), T0 + 6, True)
    assert status_of(db, w["check"]) == "decided"
    assert db.transact(csql.client_by_id, w["worker"])["suspect"]
    assert not db.transact(csql.client_by_id, w["b"])["suspect"]
    assert not db.transact(csql.client_by_id, w["c"])["suspect"]
    assert db.transact(jsql.job_row, w["job"])["seq"] == 0
    assert db.transact(sql.audit)["balanced"]


def test_a_decider_that_confirms_nobody_sends_the_dispute_to_another_and_both_liars_lose(db):
    w = world(db)
    first = take(db, w, "b", T0 + 3)
    db.transact(vsql.record_replay, first["stateid"], w["b"], hashlib.sha256(b"lie b").hexdigest(), T0 + 4)
    trust(db, w["c"])
    second = take(db, w, "c", T0 + 5)
    db.transact(vsql.record_replay, second["stateid"], w["c"], hashlib.sha256(b"lie c").hexdigest(), T0 + 6)
    assert status_of(db, w["check"]) == "disputed"  # nobody lost on one decider's word
    assert not any(db.transact(csql.client_by_id, w[who])["suspect"] for who in ("worker", "b", "c"))
    assert take(db, w, "c", T0 + 7) is None  # an earlier decider never decides it again
    d, dv = fourth(db, w)
    trust(db, d)
    third = db.transact(vsql.take_check, dv, T0 + 7, GRACE, 1.0)
    assert db.transact(vsql.record_replay, third["stateid"], d, w["target"], T0 + 8)["verified"] is True
    assert status_of(db, w["check"]) == "decided"
    assert not db.transact(csql.client_by_id, w["worker"])["suspect"]
    assert db.transact(csql.client_by_id, w["b"])["suspect"] and db.transact(csql.client_by_id, w["c"])["suspect"]
    # the two liars' replay payments are taken back; the honest decider's stays
    entries = db.transact(lambda tx: tx.all("SELECT debit_account FROM ledger WHERE kind = 'reversal'"))
    assert sorted(e["debit_account"] for e in entries) == sorted([w["owners"][1], w["owners"][2]])
    assert db.transact(sql.audit)["balanced"]


def slice_of(db, job, client, at, finish=False):
    """One slice of ``job`` by ``client`` checked in 2 s after ``at`` (or its result)."""
    lease = db.transact(jsql.checkout, job, client, SLICE, GRACE, at)
    if finish:
        return db.transact(jsql.finish, lease["stateid"], client, b"forged", "finished", None, at + 2)
    return db.transact(jsql.checkin, lease["stateid"], client, md.next_state(lease["state"]), at + 2)


def test_a_caught_worker_is_undone_on_every_job_it_made_unverified_states_in(db):
    w = world(db)
    other = md.job(db, w["member"], PRICE, "other", submitted_at=T0)  # one unverified slice by the cheater
    assert slice_of(db, other, w["worker"], T0 + 10)["status"] == "accepted"
    assert db.transact(jsql.job_row, other)["slices"] == 1
    reopened = md.job(db, w["member"], PRICE, "reopened", submitted_at=T0)  # a result on its slice
    slice_of(db, reopened, w["worker"], T0 + 20)
    slice_of(db, reopened, w["c"], T0 + 30, finish=True)
    assert db.transact(jsql.job_row, reopened)["outcome"] == "finished"
    kept = md.job(db, w["member"], PRICE, "kept", submitted_at=T0)  # its result is verified: it stands
    slice_of(db, kept, w["worker"], T0 + 40)
    slice_of(db, kept, w["c"], T0 + 50, finish=True)
    db.transact(lambda tx: tx.execute("UPDATE jobs SET verification = 'verified' WHERE id = ?", (kept,)))
    host_before = db.transact(sql.balance, w["owners"][0])

    first = take(db, w, "b", T0 + 60)
    db.transact(vsql.record_replay, first["stateid"], w["b"], hashlib.sha256(b"honest").hexdigest(), T0 + 61)
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 62)
    db.transact(vsql.record_replay, decider["stateid"], w["c"], hashlib.sha256(b"honest").hexdigest(), T0 + 63)
    assert db.transact(csql.client_by_id, w["worker"])["suspect"]

    for job in (w["job"], other, reopened):
        row = db.transact(jsql.job_row, job)
        assert (row["status"], row["seq"], row["slices"], row["executed_ms"]) == ("ready", 0, 0, 0), job
        assert row["outcome"] is None and row["result"] is None
    assert db.transact(jsql.job_row, kept)["outcome"] == "finished"  # a verified result stands
    # every unverified slice of the cheater is taken back by a new ledger entry, on all four jobs
    # (the kept job's slice too: a replay from its last state does not vouch for earlier states)
    entries = db.transact(lambda tx: tx.all("SELECT memo, amount FROM ledger WHERE kind = 'reversal'"))
    assert len(entries) == 4 and all(e["amount"] == 2 * PRICE for e in entries)
    assert db.transact(sql.balance, w["owners"][0]) == host_before - 4 * 2 * PRICE
    assert db.transact(sql.audit)["balanced"]


def test_a_losers_other_checks_nobody_replays_are_given_up_as_moot(db):
    w = world(db)
    kept = md.job(db, w["member"], PRICE, "kept", submitted_at=T0)  # its result is verified: no rollback
    lease = db.transact(jsql.checkout, kept, w["worker"], SLICE, GRACE, T0 + 10)
    state = md.next_state(lease["state"])
    db.transact(jsql.checkin, lease["stateid"], w["worker"], state, T0 + 12)
    slice_of(db, kept, w["c"], T0 + 20, finish=True)
    db.transact(lambda tx: tx.execute("UPDATE jobs SET verification = 'verified' WHERE id = ?", (kept,)))
    waiting = db.transact(
        vsql.create_check,
        "slice",
        "sampled",
        lease["stateid"],
        envelope.payload_sha256(state),
        "",
        envelope.INTERPRETER,
        1000,
        T0 + 12,
    )
    first = take(db, w, "b", T0 + 30)
    assert first["state"] == w["lease"]["state"]  # the oldest check: the world's
    db.transact(vsql.record_replay, first["stateid"], w["b"], hashlib.sha256(b"honest").hexdigest(), T0 + 31)
    trust(db, w["c"])
    decider = take(db, w, "c", T0 + 32)
    db.transact(vsql.record_replay, decider["stateid"], w["c"], hashlib.sha256(b"honest").hexdigest(), T0 + 33)
    assert db.transact(csql.client_by_id, w["worker"])["suspect"]
    assert status_of(db, waiting) == "unverifiable"
    note = db.transact(lambda tx: tx.scalar("SELECT note FROM checks WHERE id = ?", (waiting,)))
    assert note == policy.MOOT
    assert take(db, w, "b", T0 + 34) is None  # nothing left to replay
    assert db.transact(sql.audit)["balanced"]


def checks_of_worker(db, w, n: int, at: float) -> list[int]:
    """``n`` more slice checks of the world's worker, each on its own job, checked in at ``at + 2``."""
    out = []
    for i in range(n):
        job = md.job(db, w["member"], PRICE, f"more{i}", submitted_at=T0)
        lease = db.transact(jsql.checkout, job, w["worker"], SLICE, GRACE, at)
        state = md.next_state(lease["state"])
        assert db.transact(jsql.checkin, lease["stateid"], w["worker"], state, at + 2)["status"] == "accepted"
        target = envelope.payload_sha256(state)
        out.append(
            db.transact(
                vsql.create_check, "slice", "watch", lease["stateid"], target, "", envelope.INTERPRETER, 1000, at + 2
            )
        )
    return out


def test_a_workers_third_slice_check_is_held_until_one_of_its_two_in_flight_closes(db):
    w = world(db)
    second, third = checks_of_worker(db, w, 2, T0)
    first = take(db, w, "b", T0 + 3)
    take(db, w, "c", T0 + 3)
    assert {status_of(db, c) for c in (w["check"], second)} == {"replaying"}
    assert status_of(db, third) == "waiting"
    assert take(db, w, "b", T0 + 4) is None  # held: two of its worker's checks are out
    db.transact(vsql.record_replay, first["stateid"], w["b"], w["target"], T0 + 5)
    assert status_of(db, w["check"]) == "agreed"
    again = take(db, w, "b", T0 + 6)
    assert again is not None and status_of(db, third) == "replaying"


def test_a_held_check_never_expires_and_its_wait_counts_from_its_release(db):
    w = world(db)
    second, third = checks_of_worker(db, w, 2, T0)
    first = take(db, w, "b", T0 + 3)
    take(db, w, "c", T0 + 3)
    wait = 20.0
    # held past its wait: not given up, and the reap records when it was last seen held
    assert db.transact(vsql.expire, T0 + 30, wait, policy.NO_VERIFIER) == []
    assert status_of(db, third) == "waiting"
    db.transact(vsql.record_replay, first["stateid"], w["b"], w["target"], T0 + 31)  # released
    assert db.transact(vsql.expire, T0 + 30 + wait - 1, wait, policy.NO_VERIFIER) == []
    assert status_of(db, third) == "waiting"
    assert db.transact(vsql.expire, T0 + 30 + wait + 1, wait, policy.NO_VERIFIER) == [third]
    assert status_of(db, third) == "unverifiable"


def test_a_result_check_is_never_held_behind_its_workers_slice_checks(db):
    w = world(db)
    (second,) = checks_of_worker(db, w, 1, T0)
    take(db, w, "b", T0 + 3)
    take(db, w, "c", T0 + 3)
    job = md.job(db, w["member"], PRICE, "ends", submitted_at=T0)
    lease = db.transact(jsql.checkout, job, w["worker"], SLICE, GRACE, T0 + 4)
    db.transact(jsql.finish, lease["stateid"], w["worker"], b"forged", "finished", None, T0 + 6)
    target = hashlib.sha256(b"forged").hexdigest()
    result = db.transact(
        vsql.create_check, "result", "result", lease["stateid"], target, "", envelope.INTERPRETER, 1000, T0 + 6
    )
    replay = take(db, w, "b", T0 + 7)
    assert replay is not None and replay["replay"]["result"] is True
    assert status_of(db, result) == "replaying"
