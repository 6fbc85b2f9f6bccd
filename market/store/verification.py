"""SQL for verification by replay: checks, replay leases, the verdicts and what they undo.

The policy is ``market.core.verification`` (which slices, which verifier, what a dispute decides,
where a job goes back to, what is reversed); this module reads rows, asks it and writes what it
decides. Hashes are computed by the caller outside the transaction: a transaction here compares
hex strings only.

A replay lease is a row of ``leases`` like any other (its state is the parent state S, it pays at
its price from the job's owner's account and reserves that money while it is out) with
``check_id`` set: it never changes its job's status and a ``state`` sent on it is compared, never
committed.
"""

from __future__ import annotations

from typing import Any

from market.core import ledger, rules
from market.core import verification as policy
from market.core.errors import Conflict, Forbidden, NotFound
from market.core.rules import JobKind, JobStatus, LeaseStatus, Outcome, StateStatus, Verdict
from market.core.verification import CheckKind, CheckStatus
from market.store import accounts as sql_accounts
from market.store import clients as sql_clients
from market.store import jobs as sql_jobs
from market.store import statechunks
from market.store.checks import (  # noqa: F401 (re-exported)
    _INSERT_CHECK,
    IN_DISPUTE,
    SliceCheckRow,
    checked_state,
    slice_checks,
)
from market.store.db import marks

DISCARDED = "discarded"  # a state dropped when its job went back to its last verified state

_OPEN = "(" + ", ".join(f"'{s}'" for s in policy.OPEN_CHECKS) + ")"
_IN_FLIGHT = "(" + ", ".join(f"'{s}'" for s in sorted(policy.IN_FLIGHT)) + ")"


def create_check(
    tx,
    kind: str,
    reason: str,
    lease_id: int,
    target_sha256: str,
    mark: str,
    interpreter: str,
    steps: int,
    now: float,
) -> int | None:
    """Record that the slice (or result) checked in on ``lease_id`` is to be replayed. None when
    the lease did not end as accepted or finished (nothing to verify)."""
    lease = tx.one(
        "SELECT d.id, d.job_id, d.client_id, d.state_id, d.new_state_id, d.status, d.accepted_ms"
        " FROM leases d WHERE d.id = ?",
        (lease_id,),
    )
    if lease is None or lease["status"] not in (LeaseStatus.ACCEPTED, LeaseStatus.FINISHED):
        return None
    check_id = tx.insert(
        _INSERT_CHECK + " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            lease["job_id"],
            kind,
            reason,
            lease_id,
            lease["client_id"],
            lease["state_id"],
            lease["new_state_id"] if kind == CheckKind.SLICE else None,
            target_sha256,
            (mark or "")[:255],
            interpreter[:64],
            int(steps),
            int(lease["accepted_ms"] or 0),
            CheckStatus.WAITING,
            now,
        ),
    )
    if kind == CheckKind.RESULT:
        tx.execute(
            "UPDATE jobs SET result_sha256 = ?, verification = ?, verification_note = ? WHERE id = ?",
            (target_sha256, policy.Standing.UNVERIFIED, "waiting for a verifier", lease["job_id"]),
        )
    return check_id


def _check(tx, check_id: int, lock: bool = False) -> dict[str, Any]:
    row = tx.one("SELECT * FROM checks WHERE id = ?" + (tx.for_update if lock else ""), (check_id,))
    if row is None:
        raise NotFound(f"no check {check_id}")
    return row


def _as_policy(row: dict[str, Any], deciders: list[tuple[int, int]] = ()) -> policy.Check:  # type: ignore[assignment]
    return policy.Check(
        id=row["id"],
        kind=row["kind"],
        job_id=row["job_id"],
        job_owner=row["job_owner"],
        worker=row["worker_id"],
        worker_owner=row["worker_owner"],
        interpreter=row["interpreter"],
        status=row["status"],
        created_at=row["created_at"],
        first_verifier=row["first_client_id"],
        first_verifier_owner=row["first_owner"],
        deciders=tuple(deciders),
        disputed_at=row.get("disputed_at"),
        waiting_since=row.get("waiting_since"),
    )


def _deciders(tx, check_ids: list[int]) -> dict[int, list[tuple[int, int]]]:
    """(client, owner) of every decider so far (the replays after the first) of these checks."""
    out: dict[int, list[tuple[int, int]]] = {}
    if not check_ids:
        return out
    rows = tx.all(
        "SELECT r.check_id, r.client_id, c.account_id FROM check_replays r JOIN clients c ON c.id = r.client_id"
        f" WHERE r.check_id IN {marks(len(check_ids))} ORDER BY r.check_id, r.id",
        check_ids,
    )
    seen: dict[int, int] = {}
    for r in rows:
        n = seen.get(r["check_id"], 0)
        seen[r["check_id"]] = n + 1
        if n > 0:
            out.setdefault(r["check_id"], []).append((r["client_id"], r["account_id"]))
    return out


def take_check(
    tx,
    verifier: policy.Verifier,
    now: float,
    grace: float,
    min_seconds: float,
    wait_seconds: float = policy.DEFAULT_WAIT_SECONDS,
) -> dict[str, Any] | None:
    """Lease a check this verifier may replay (``policy.pick_check``: a dispute only to a
    trusted verifier, or to one under watch after ``wait_seconds`` without one), or None. The
    lease's state is the parent state S; it carries ``replay``: the target payload hash and mark
    of S' and the step cap (a decider's: ``policy.decider_steps``) (or ``result: true``), never
    S' itself.

    A worker's waiting slice checks are held while ``policy.MAX_OPEN_PER_WORKER`` of its checks
    are in flight (replaying, disputed, deciding), and its disputes but one (``policy.held``), as
    sim holds them: the checks in flight are read with the ones that may be taken."""
    rows = tx.all(
        "SELECT c.*, j.account_id AS job_owner, w.account_id AS worker_owner, f.account_id AS first_owner"
        " FROM checks c JOIN jobs j ON j.id = c.job_id JOIN clients w ON w.id = c.worker_id"
        " LEFT JOIN clients f ON f.id = c.first_client_id"
        f" WHERE c.status IN ('{CheckStatus.WAITING}', '{CheckStatus.DISPUTED}')"
        " ORDER BY c.created_at, c.id LIMIT 200",
    )
    # in flight beside the disputes above: one per replay lease out (bounded by the workers online)
    flying = [
        policy.Check(r["id"], r["kind"], r["job_id"], None, r["worker_id"], 0, "", r["status"], r["created_at"])
        for r in tx.all(
            "SELECT id, kind, job_id, worker_id, status, created_at FROM checks"
            f" WHERE status IN ('{CheckStatus.REPLAYING}', '{CheckStatus.DECIDING}')"
        )
    ]
    deciders = _deciders(tx, [r["id"] for r in rows if r["status"] == CheckStatus.DISPUTED])
    candidates = [_as_policy(r, deciders.get(r["id"], [])) for r in rows]
    chosen = policy.pick_check(verifier, candidates + flying, now, wait_seconds, policy.MAX_OPEN_PER_WORKER)
    if chosen is None:
        return None
    check = _check(tx, chosen.id, lock=True)
    if check["status"] not in (CheckStatus.WAITING, CheckStatus.DISPUTED):
        return None  # taken meanwhile (MariaDB: another request locked it first)
    job = tx.one(
        "SELECT j.id, j.account_id, j.kind, j.name, j.source, j.entry, j.spec, j.status, s.data, s.seq, s.chunks,"
        " s.status AS state_status, o.price FROM jobs j JOIN states s ON s.id = ?"
        " JOIN leases o ON o.id = ? WHERE j.id = ?",
        (check["parent_state_id"], check["lease_id"], check["job_id"]),
    )
    if job is None or job["state_status"] == DISCARDED or job["status"] == JobStatus.CANCELLED:
        _give_up(tx, check, "its job was cancelled or went back past it", now)
        if check["status"] == CheckStatus.DISPUTED:
            _end_dispute(tx, check, now)
        return None
    seconds = policy.replay_seconds(int(check["checked_ms"]), min_seconds)
    reserved = rules.reservation(JobKind.JOB, job["price"], check["checked_ms"] / 1000.0)
    lease_id = tx.insert(
        "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline, status,"
        " reserved, price, check_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            job["id"],
            check["parent_state_id"],
            verifier.client,
            now,
            seconds,
            rules.lease_deadline(now, seconds, grace),
            LeaseStatus.OUT,
            reserved,
            job["price"],
            check["id"],
        ),
    )
    lease = {"reserved": reserved, "owner": job["account_id"]}
    tx.script(sql_jobs._reservations([lease], +1))
    deciding = check["status"] == CheckStatus.DISPUTED
    tx.execute(
        "UPDATE checks SET status = ?, replay_lease_id = ? WHERE id = ?",
        (CheckStatus.DECIDING if deciding else CheckStatus.REPLAYING, lease_id, check["id"]),
    )
    # a decider gets 4x the cap: a cap too small for an honest slice must not decide against it
    steps = policy.decider_steps(int(check["steps"])) if deciding else policy.first_steps(int(check["steps"]))
    if check["kind"] == CheckKind.RESULT:
        replay: dict[str, Any] = {"result": True, "steps": steps}
    else:
        replay = {"target": check["target_sha256"], "mark": check["mark"], "steps": steps}
    return {
        "stateid": lease_id,
        "job_id": job["id"],
        "kind": job["kind"],
        # a state stored in chunks is read whole here (issue 20: a replay of one is sent whole)
        "state": statechunks.state_bytes(tx, check["parent_state_id"]) if job["chunks"] else bytes(job["data"]),
        "source": job["source"],
        "entry": job["entry"],
        "spec": job["spec"],
        "seq": job["seq"],
        "granted": seconds,
        "timeout": seconds + grace,
        "deadline": rules.lease_deadline(now, seconds, grace),
        "replay": replay,
    }


def open_replay_leases(tx) -> list[int]:
    """The replay leases still out (the dispatcher routes check-ins on them to ``record_replay``)."""
    return [
        r["id"] for r in tx.all(f"SELECT id FROM leases WHERE status = '{LeaseStatus.OUT}' AND check_id IS NOT NULL")
    ]


def is_replay_lease(tx, lease_id: int) -> bool:
    return tx.scalar("SELECT check_id FROM leases WHERE id = ?", (lease_id,)) is not None


def record_replay(
    tx,
    lease_id: int,
    client_id: int,
    reached_sha256: str,
    now: float,
    capped: bool = False,
    watch_slices: int = policy.DEFAULT_WATCH_SLICES,
) -> dict[str, Any]:
    """A verifier's answer on a replay lease: pay it like a slice (at the lease's price, for the
    measured time, never more than the slice it checks: ``policy.replay_ms``), record the replay
    (what it reached; ``capped``: it said it hit its step cap; whether its verifier is trusted,
    i.e. has ``watch_slices`` verified slices) and judge the check from all its replays
    (``policy.judge``). The answer is a check-in's, with ``verified``."""
    lease = sql_jobs._lease_for_checkin(tx, lease_id, client_id)
    check_id = tx.scalar("SELECT check_id FROM leases WHERE id = ?", (lease_id,))
    if check_id is None:
        raise Conflict(f"state {lease_id} is not a replay lease")
    check = _check(tx, int(check_id), lock=True)
    verdict = sql_jobs._verdict(dict(lease, job_status=JobStatus.RUNNING), now)
    if verdict is Verdict.REPEAT:
        answer = sql_jobs._repeat(lease)
        answer["verified"] = check["status"] in (CheckStatus.AGREED, CheckStatus.DECIDED) and bool(
            tx.scalar("SELECT reversed FROM leases WHERE id = ?", (lease_id,)) == 0
        )
        return answer
    if verdict is Verdict.REJECT or check["replay_lease_id"] != lease_id:
        _close_replay(tx, lease, LeaseStatus.REJECTED, 0, 0, now)
        _back_to_waiting(tx, check, lease_id)
        answer = rules.answer(lease_id, LeaseStatus.REJECTED)
        answer["verified"] = False
        return answer
    ms = policy.replay_ms(sql_jobs._accepted_ms(lease, now), int(check["checked_ms"]))
    paid, payments = sql_jobs._settle([(lease, ms)], now)
    tx.script(payments)
    _close_replay(tx, lease, LeaseStatus.ACCEPTED, ms, paid[lease_id], now)
    verified_slices = int(tx.scalar("SELECT verified_slices FROM clients WHERE id = ?", (client_id,)) or 0)
    trusted = not policy.under_watch(verified_slices, watch_slices)
    tx.insert(
        "INSERT INTO check_replays (check_id, lease_id, client_id, reached_sha256, capped, trusted, at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (check["id"], lease_id, client_id, (reached_sha256 or "")[:64], int(bool(capped)), int(trusted), now),
    )
    replays = [
        policy.Replay(r["client_id"], r["reached_sha256"], bool(r["capped"]), bool(r["trusted"]))
        for r in tx.all(
            "SELECT client_id, reached_sha256, capped, trusted FROM check_replays WHERE check_id = ? ORDER BY id",
            (check["id"],),
        )
    ]
    judgement = policy.judge(check["target_sha256"], check["worker_id"], replays)
    if judgement.status == CheckStatus.AGREED:
        _confirm(tx, check, now)
        tx.execute("UPDATE checks SET status = ?, decided_at = ? WHERE id = ?", (CheckStatus.AGREED, now, check["id"]))
    elif judgement.status == CheckStatus.DISPUTED:
        first = len(replays) == 1
        tx.execute(
            "UPDATE checks SET status = ?, first_client_id = ?, first_sha256 = ?, replay_lease_id = NULL,"
            " disputed_at = ?, note = ? WHERE id = ?",
            (
                CheckStatus.DISPUTED,
                client_id if first else check["first_client_id"],
                (reached_sha256 or "") if first else check["first_sha256"],
                now,
                judgement.note[:255],
                check["id"],
            ),
        )
    elif judgement.status == CheckStatus.UNVERIFIABLE:
        _give_up(tx, check, judgement.note, now)
        if check["kind"] == CheckKind.RESULT:
            tx.execute(
                "UPDATE jobs SET verification_note = ? WHERE id = ? AND verification = ?",
                (judgement.note[:255], check["job_id"], policy.Standing.UNVERIFIED),
            )
        _end_dispute(tx, check, now, (client_id,))
    else:  # decided
        tx.execute(
            "UPDATE checks SET status = ?, decided_at = ?, note = ? WHERE id = ?",
            (CheckStatus.DECIDED, now, f"decided by client {client_id}: {judgement.note}"[:255], check["id"]),
        )
        if judgement.losers:
            tx.execute(
                f"UPDATE check_replays SET lost = 1 WHERE check_id = ? AND client_id IN {marks(len(judgement.losers))}",
                [check["id"], *judgement.losers],
            )
        if judgement.worker_right:
            _confirm(tx, check, now)
        for loser in judgement.losers:
            lose(tx, check, loser, now)
        _end_dispute(tx, check, now, (client_id, *judgement.losers))
    _release_result(tx, check["job_id"])
    answer = rules.answer(lease_id, LeaseStatus.ACCEPTED, paid[lease_id], ms)
    answer["verified"] = not capped and policy.compare(check["target_sha256"], reached_sha256)
    return answer


def _close_replay(tx, lease: dict[str, Any], status: str, ms: int, paid: int, now: float) -> None:
    tx.script(
        [
            (
                "UPDATE leases SET status = ?, checked_in_at = ?, accepted_ms = ?, paid = ? WHERE id = ?",
                (status, now, ms, paid, lease["id"]),
            ),
            *sql_jobs._reservations([lease], -1),
        ]
    )


def _back_to_waiting(tx, check: dict[str, Any], lease_id: int) -> None:
    if check["replay_lease_id"] != lease_id:
        return
    back = CheckStatus.DISPUTED if check["status"] == CheckStatus.DECIDING else CheckStatus.WAITING
    tx.execute("UPDATE checks SET status = ?, replay_lease_id = NULL WHERE id = ?", (back, check["id"]))


def _give_up(tx, check: dict[str, Any], note: str, now: float) -> None:
    tx.execute(
        "UPDATE checks SET status = ?, decided_at = ?, note = ? WHERE id = ?",
        (CheckStatus.UNVERIFIABLE, now, note[:255], check["id"]),
    )


def _end_dispute(tx, check: dict[str, Any], now: float, others: tuple[int, ...] = ()) -> None:
    """A check stopped being disputed (decided or given up): its parties (the worker, the first
    verifier, ``others``) are paid what was held while they were in dispute, unless they lost
    or are still party to another dispute (``jobs.release_held_pay``)."""
    parties = {check["worker_id"], check.get("first_client_id"), *others} - {None}
    for client in sorted(parties):
        sql_jobs.release_held_pay(tx, int(client), now)


def _confirm(tx, check: dict[str, Any], now: float) -> None:
    """The worker's slice or result stands: mark it verified, count it for the worker."""
    if check["kind"] == CheckKind.SLICE:
        tx.execute("UPDATE states SET verified = 1 WHERE id = ?", (checked_state(tx, check),))
        tx.execute("UPDATE clients SET verified_slices = verified_slices + 1 WHERE id = ?", (check["worker_id"],))
    # a result: verified by _release_result once no check of its job is open


def _release_result(tx, job_id: int) -> None:
    """A job's result reads verified only once its own replay agreed (or a third worker decided
    for it) AND no check of the job's slices is still open: a result computed on top of a slice
    whose replay is pending is not verified yet (found by sim's trust runs and by real workers)."""
    marks_ = ", ".join("?" for _ in policy.OPEN_CHECKS)
    still_open = tx.scalar(
        f"SELECT COUNT(*) FROM checks WHERE job_id = ? AND status IN ({marks_})", (job_id, *policy.OPEN_CHECKS)
    )
    if still_open:
        return
    # a slice whose dispute was given up undecided is contested, not vouched for: a result computed
    # on top of it (its states still the job's) is delivered unverified with that reason
    contested = tx.one(
        "SELECT c.note FROM checks c JOIN states p ON p.id = c.parent_state_id"
        " JOIN leases l ON l.id = c.lease_id JOIN states s ON s.id = l.new_state_id"
        " WHERE c.job_id = ? AND c.kind = ? AND c.status = ? AND c.note LIKE ? AND p.status <> ? AND s.status <> ?"
        " ORDER BY c.id LIMIT 1",
        (job_id, CheckKind.SLICE, CheckStatus.UNVERIFIABLE, policy.UNDECIDED + "%", DISCARDED, DISCARDED),
    )
    if contested is not None:
        tx.execute(
            "UPDATE jobs SET verification_note = ? WHERE id = ? AND verification = ?",
            (f"a slice under it stays unverified: {contested['note']}"[:255], job_id, policy.Standing.UNVERIFIED),
        )
        return
    result = tx.one(
        "SELECT target_sha256, status, note FROM checks WHERE job_id = ? AND kind = ? ORDER BY id DESC LIMIT 1",
        (job_id, CheckKind.RESULT),
    )
    if result is None:
        return
    decided_for = result["status"] == CheckStatus.DECIDED and "the worker was right" in (result["note"] or "")
    if result["status"] == CheckStatus.AGREED or decided_for:
        tx.execute(
            "UPDATE jobs SET verification = ?, verification_note = NULL WHERE id = ? AND result_sha256 = ?",
            (policy.Standing.VERIFIED, job_id, result["target_sha256"]),
        )


def _payments(tx, job_id: int) -> list[policy.Payment]:
    """Every paid lease of the job, with whether what it paid for was verified."""
    rows = tx.all(
        "SELECT d.id, d.client_id, d.paid, d.reversed, d.check_id, d.status, c.account_id AS payee,"
        " j.account_id AS payer, j.verification, s.verified AS state_verified, k.status AS check_status,"
        " r.lost AS replay_lost FROM leases d JOIN jobs j ON j.id = d.job_id"
        " JOIN clients c ON c.id = d.client_id LEFT JOIN states s ON s.id = d.new_state_id"
        " LEFT JOIN checks k ON k.id = d.check_id LEFT JOIN check_replays r ON r.lease_id = d.id"
        " WHERE d.job_id = ? AND d.paid > 0 ORDER BY d.id",
        (job_id,),
    )
    out = []
    for r in rows:
        if r["check_id"] is not None:  # a replay: verified once its check agreed or went its way
            # (a decided check's replays that reached what was confirmed, or said they hit a cap)
            verified = r["check_status"] in (CheckStatus.AGREED, CheckStatus.DECIDED) and not r["replay_lost"]
        elif r["status"] == LeaseStatus.FINISHED:
            verified = r["verification"] == policy.Standing.VERIFIED
        else:
            verified = bool(r["state_verified"])
        out.append(
            policy.Payment(
                r["id"], job_id, r["client_id"], r["payer"], r["payee"], int(r["paid"]), verified, bool(r["reversed"])
            )
        )
    return out


def lose(tx, check: dict[str, Any], loser: int, now: float) -> None:
    """``loser`` lost a dispute on ``check``: it becomes suspect, and on the check's job and on
    every job it made an unverified state in (its work nobody vouched for, wherever it is), its
    unverified payments are reversed by new ledger entries and the job goes back to the state
    before the first unverified state it made (``rollback``). A job whose result is already
    verified is left as it is (a replay from its last state agreed with it; docs/trust.md)."""
    sql_clients.mark_suspect(tx, loser)
    # its other checks nobody is replaying are moot (policy.moot): what they could show is undone
    tx.execute(
        "UPDATE checks SET status = ?, decided_at = ?, note = ? WHERE worker_id = ? AND id <> ? AND status IN (?, ?)",
        (
            CheckStatus.UNVERIFIABLE,
            now,
            policy.MOOT[:255],
            loser,
            check["id"],
            CheckStatus.WAITING,
            CheckStatus.DISPUTED,
        ),
    )
    jobs = {check["job_id"]} | {
        r["job_id"]
        for r in tx.all(
            "SELECT DISTINCT job_id FROM states WHERE client_id = ? AND verified = 0 AND status <> ? AND seq > 0",
            (loser, DISCARDED),
        )
    }
    for job_id in sorted(jobs):
        _take_back(tx, job_id, loser, now)
        made = tx.scalar(
            "SELECT COUNT(*) FROM states WHERE job_id = ? AND client_id = ? AND verified = 0 AND status <> ?"
            " AND seq > 0",
            (job_id, loser, DISCARDED),
        )
        if job_id == check["job_id"] and loser == check["worker_id"]:
            rollback(tx, job_id, loser, now)
        elif made:
            verification = tx.scalar("SELECT verification FROM jobs WHERE id = ?", (job_id,))
            if verification != policy.Standing.VERIFIED:
                rollback(tx, job_id, loser, now)


def _take_back(tx, job_id: int, loser: int, now: float) -> None:
    """New ledger entries that take back ``loser``'s unverified payments for the job."""
    payments = [p for p in _payments(tx, job_id) if p.client == loser]
    if not payments:
        return
    accounts = {p.payee for p in payments} | {p.payer for p in payments}
    balances = {
        r["id"]: int(r["balance"])
        for r in tx.all(
            f"SELECT id, balance FROM accounts WHERE id IN {marks(len(accounts))}" + tx.for_update, list(accounts)
        )
    }
    entries = policy.reversals(payments, loser, balances)
    for e in entries:
        ledger.apply(balances, e)
    tx.script(sql_accounts.record_statements([(e, None) for e in entries], now))
    reversed_ids = [p.lease_id for p in payments if not p.verified and not p.reversed]
    if reversed_ids:
        tx.execute(f"UPDATE leases SET reversed = 1 WHERE id IN {marks(len(reversed_ids))}", reversed_ids)


def rollback(tx, job_id: int, loser: int, now: float) -> int:
    """Put the job back to the state before the first unverified state ``loser`` made
    (``policy.rollback_seq``); the states after it are kept as evidence, marked discarded, a
    result it had is dropped and an open lease on a dropped state is rejected. -> the seq."""
    job = sql_jobs.job_row(tx, job_id, lock=True)
    states = tx.all(
        "SELECT id, seq, client_id, verified FROM states WHERE job_id = ? AND status <> ? ORDER BY seq",
        (job_id, DISCARDED),
    )
    seq = policy.rollback_seq(
        [policy.StateRecord(s["seq"], s["client_id"], bool(s["verified"])) for s in states], loser
    )
    dropped = [s["id"] for s in states if s["seq"] > seq]
    open_leases = tx.all(
        "SELECT d.id, d.reserved, j.account_id AS owner FROM leases d JOIN jobs j ON j.id = d.job_id"
        f" WHERE d.job_id = ? AND d.status = '{LeaseStatus.OUT}' AND d.check_id IS NULL",
        (job_id,),
    )
    # the slices dropped (their new state is dropped) and a result's last slice: the job's
    # executed time and slice count follow the rollback; its progress is unknown until the next slice
    finished = None
    if job["outcome"] is not None:  # the result being dropped: the slice that made it
        finished = tx.scalar(
            f"SELECT MAX(id) FROM leases WHERE job_id = ? AND check_id IS NULL AND status = '{LeaseStatus.FINISHED}'",
            (job_id,),
        )
    undone = tx.all(
        "SELECT id, accepted_ms FROM leases WHERE job_id = ? AND check_id IS NULL AND ("
        + (f"new_state_id IN {marks(len(dropped))} OR " if dropped else "")
        + "id = ?)",
        [job_id, *dropped, finished if finished is not None else -1],
    )
    undone_ms = sum(int(d["accepted_ms"] or 0) for d in undone)
    statements: list[Any] = []
    ended: list[dict[str, Any]] = []  # disputes given up with their states: their parties' pay is released
    if dropped:
        ended = tx.all(
            f"SELECT worker_id, first_client_id FROM checks WHERE status IN {IN_DISPUTE} AND job_id = ?"
            f" AND (parent_state_id IN {marks(len(dropped))}"
            " OR COALESCE(state_id, (SELECT l.new_state_id FROM leases l WHERE l.id = checks.lease_id))"
            f" IN {marks(len(dropped))})",
            [job_id, *dropped, *dropped],
        )
        # seq = -id keeps (job_id, seq) unique and frees the numbers for the slices to come
        statements.append(
            (f"UPDATE states SET status = ?, seq = -id WHERE id IN {marks(len(dropped))}", [DISCARDED, *dropped])
        )
        statements.append(
            (
                f"UPDATE checks SET status = ?, decided_at = ?, note = ? WHERE status IN {_OPEN}"
                f" AND job_id = ? AND (parent_state_id IN {marks(len(dropped))}"
                # a check opened with its check-in names its state through its lease (checks.slice_checks)
                f" OR COALESCE(state_id, (SELECT l.new_state_id FROM leases l WHERE l.id = checks.lease_id))"
                f" IN {marks(len(dropped))})",
                [CheckStatus.UNVERIFIABLE, now, "its state was discarded", job_id, *dropped, *dropped],
            )
        )
    statements.append(
        (
            f"UPDATE states SET status = '{StateStatus.COMMITTED}' WHERE job_id = ? AND seq = ?",
            (job_id, seq),
        )
    )
    if open_leases:
        ids = [d["id"] for d in open_leases]
        statements.append(
            (
                f"UPDATE leases SET status = '{LeaseStatus.REJECTED}', checked_in_at = ? WHERE id IN {marks(len(ids))}",
                [now, *ids],
            )
        )
        statements.extend(sql_jobs._reservations(open_leases, -1))
    status = job["status"] if job["status"] == JobStatus.CANCELLED else JobStatus.READY
    statements.append(
        (
            "UPDATE jobs SET seq = ?, status = ?, result = NULL, result_sha256 = NULL, outcome = NULL,"
            " finished_at = NULL, verification = NULL, verification_note = ?,"
            " executed_ms = CASE WHEN executed_ms > ? THEN executed_ms - ? ELSE 0 END,"
            " slices = CASE WHEN slices > ? THEN slices - ? ELSE 0 END, progress = NULL WHERE id = ?",
            (
                seq,
                status,
                f"went back to state {seq}: client {loser} lost a replay check",
                undone_ms,
                undone_ms,
                len(undone),
                len(undone),
                job_id,
            ),
        )
    )
    tx.script(statements)
    for check in ended:
        _end_dispute(tx, check, now)
    return seq


def expire(
    tx,
    now: float,
    wait_seconds: float,
    no_verifier: str,
    dispute_seconds: float | None = None,
    no_decider: str = policy.NO_DECIDER,
) -> list[int]:
    """Give up the checks nobody took within ``wait_seconds`` (``policy.waited_too_long``): their
    slice or result stays unverified, a result with ``no_verifier`` as its reason; give up the
    disputes nobody decided within ``dispute_seconds`` of their dispute
    (``policy.dispute_given_up``) as ``judge`` gives up one after MAX_DECIDERS: nobody loses,
    nothing is verified, a result is delivered unverified with ``no_decider`` as its reason;
    and send the checks whose replay lease expired back to waiting. -> the checks given up.

    A held check (``policy.held``: its worker has ``policy.MAX_OPEN_PER_WORKER`` checks in flight)
    waits for its worker, not for a verifier: it never expires, and its ``waiting_since`` is set to
    ``now`` here, so its wait counts from the last reap that saw it held (to within
    ``reap-interval`` of its release, as sim counts from the last ask that saw it held)."""
    busy = [
        r["worker_id"]
        for r in tx.all(
            f"SELECT worker_id FROM checks WHERE status IN {_IN_FLIGHT} GROUP BY worker_id HAVING COUNT(*) >= ?",
            (policy.MAX_OPEN_PER_WORKER,),
        )
    ]
    if busy:
        tx.execute(
            f"UPDATE checks SET waiting_since = ? WHERE status = '{CheckStatus.WAITING}'"
            f" AND kind <> '{CheckKind.RESULT}' AND worker_id IN {marks(len(busy))}",
            [now, *busy],
        )
    oldest = min(wait_seconds, dispute_seconds) if dispute_seconds is not None else wait_seconds
    rows = tx.all(
        "SELECT c.id, c.kind, c.job_id, c.worker_id, c.first_client_id, c.interpreter, c.status, c.created_at,"
        " c.disputed_at, c.waiting_since, c.replay_lease_id, d.status AS lease_status"
        " FROM checks c LEFT JOIN leases d ON d.id = c.replay_lease_id"
        # only what may change: checks old enough to give up, and the few with a replay lease
        f" WHERE c.status IN {_OPEN}"
        " AND (COALESCE(c.waiting_since, c.created_at) <= ? OR c.replay_lease_id IS NOT NULL)" + tx.for_update,
        (now - oldest,),
    )
    given_up = []
    for c in rows:
        if c["replay_lease_id"] is not None and c["lease_status"] == LeaseStatus.EXPIRED:
            _back_to_waiting(tx, c, c["replay_lease_id"])
            c["status"] = CheckStatus.DISPUTED if c["status"] == CheckStatus.DECIDING else CheckStatus.WAITING
        since = c["created_at"] if c["waiting_since"] is None else c["waiting_since"]
        if c["status"] == CheckStatus.WAITING and policy.waited_too_long(since, now, wait_seconds):
            note = no_verifier.format(interpreter=c["interpreter"], seconds=wait_seconds)
        elif (
            c["status"] == CheckStatus.DISPUTED
            and dispute_seconds is not None
            and policy.dispute_given_up(c["disputed_at"], c["created_at"], now, dispute_seconds)
        ):
            note = no_decider.format(interpreter=c["interpreter"], seconds=dispute_seconds)
        else:
            continue
        _give_up(tx, c, note, now)
        if c["kind"] == CheckKind.RESULT:
            tx.execute(
                "UPDATE jobs SET verification_note = ? WHERE id = ? AND verification = ?",
                (note[:255], c["job_id"], policy.Standing.UNVERIFIED),
            )
        if c["status"] == CheckStatus.DISPUTED:
            _release_result(tx, c["job_id"])  # as after an undecided judgement
            _end_dispute(tx, c, now)
        given_up.append(c["id"])
    return given_up


def verification_of(tx, job_id: int) -> dict[str, Any]:
    """A job's verification as members see it: ``standing`` of its result ('verified',
    'unverified', or '' before it has one), ``reason`` (why unverified), and its slices: how many
    were replayed and how many verified."""
    job = tx.one("SELECT verification, verification_note, outcome FROM jobs WHERE id = ?", (job_id,))
    if job is None:
        raise NotFound(f"no job {job_id}")
    verified = int(tx.scalar("SELECT COUNT(*) FROM states WHERE job_id = ? AND verified = 1", (job_id,)) or 0)
    replayed = int(tx.scalar("SELECT COUNT(*) FROM checks WHERE job_id = ? AND kind = 'slice'", (job_id,)) or 0)
    standing = job["verification"] or ""
    if not standing and job["outcome"] == Outcome.FINISHED:
        standing = policy.Standing.UNVERIFIED
    return {
        "standing": str(standing),
        "reason": job["verification_note"] or "",
        "slices_replayed": replayed,
        "slices_verified": verified,
    }


def guard_not_replay(lease: dict[str, Any]) -> None:
    if lease.get("check_id") is not None:
        raise Forbidden(f"state {lease['id']} is a replay lease: its answer is compared, not committed")


def fail_replay(tx, lease_id: int, client_id: int, now: float) -> dict[str, Any]:
    """A verifier could not replay (crash, refused...): the lease closes unpaid and its check
    waits for another verifier."""
    lease = sql_jobs._lease_for_checkin(tx, lease_id, client_id)
    if lease["status"] != LeaseStatus.OUT:
        return sql_jobs._repeat(lease)
    check = _check(tx, int(lease["check_id"]), lock=True)
    _close_replay(tx, lease, LeaseStatus.REJECTED, 0, 0, now)
    _back_to_waiting(tx, check, lease_id)
    return rules.answer(lease_id, LeaseStatus.REJECTED)
