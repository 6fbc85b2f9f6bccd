"""SQL for jobs, their committed states and their leases.

This module executes what the market's rules decide (``market.core.rules``: the statuses and what
moves between them, window planning, settlement, three strikes, lease expiry): it reads rows, asks
the rules, and writes the outcome. A lease is the paper's "job state checked out" (its "dispatch"):
which state, to which client, when it was checked out, its deadline, and when it was checked back
in. Its id is the ``stateid`` of XML-RPC.

Statuses appear in SQL text through the Enums (``f"... status = '{JobStatus.READY}'"`` renders
``status = 'ready'``), so the statements are the same text as ever and the index on
``(status, ...)`` serves them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from market.core import caps, listing, rules, states, verification
from market.core.errors import Conflict, Forbidden, MarketError, NotFound, StateRefused
from market.core.rules import JobKind, JobStatus, LeaseStatus, Outcome, SliceStatus, StateStatus, Verdict
from market.core.text import unprintable
from market.store import accounts as sql_accounts
from market.store import caps as sql_caps
from market.store import checks as sql_checks
from market.store import clients as sql_clients
from market.store import statechunks
from market.store.db import Many, case, marks
from market.tasklet import envelope
from market.tasklet.envelope import source_hash  # the hash the envelope header carries: one definition

_COMPETING = "(" + ", ".join(f"'{kind}'" for kind in rules.COMPETING_KINDS) + ")"  # ('job', 'task')


def create_job(
    tx,
    account_id: int | None,
    name: str,
    price: int,
    source: str,
    entry: str,
    now: float,
    kind: str = JobKind.JOB,
    spec: str | None = None,
    probe_client_id: int | None = None,
    probe_size: int | None = None,
) -> int:
    """A job without a state yet (the paper's ``job`` call); ``init_job`` makes it ready."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise MarketError("a job needs a name of 1 to 128 characters")
    # a name is shown to terminals, feeds and XML-RPC answers (which XML 1.0 could not carry)
    if (bad := unprintable(name.strip())) is not None:
        raise MarketError(f"a job name may not contain control or bidirectional characters (it has {bad})")
    return tx.insert(
        "INSERT INTO jobs (account_id, kind, name, price, source, source_sha256, entry, spec, status, submitted_at,"
        f" probe_client_id, probe_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, '{JobStatus.NEW}', ?, ?, ?)",
        (
            account_id,
            kind,
            name.strip(),
            price,
            source,
            source_hash(source),
            entry,
            spec,
            now,
            probe_client_id,
            probe_size,
        ),
    )


def job_row(tx, job_id: int, lock: bool = False) -> dict[str, Any]:
    row = tx.one("SELECT * FROM jobs WHERE id = ?" + (tx.for_update if lock else ""), (job_id,))
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


def owned_job(tx, account_id: int, job_id: int, lock: bool = False) -> dict[str, Any]:
    """The job, if this account owns it; otherwise 'no job' (never reveal other members' jobs)."""
    row = tx.one(
        "SELECT * FROM jobs WHERE id = ? AND account_id = ?" + (tx.for_update if lock else ""), (job_id, account_id)
    )
    if row is None:
        raise NotFound(f"no job {job_id} in your account — list yours with: market status")
    return row


def init_job(
    tx, account_id: int | None, job_id: int, state: bytes, now: float, payload_sha256: str | None = None
) -> None:
    """Store state #0 (committed) and put the job on the ready list (the paper's ``init``).

    ``payload_sha256``: the state's payload hash (``state_facts``), computed here if not given
    (state #0 holds only the job's arguments: small)."""
    job = owned_job(tx, account_id, job_id, lock=True) if account_id is not None else job_row(tx, job_id, lock=True)
    if job["status"] != JobStatus.NEW:
        raise Conflict(f"job {job_id} already has its initial state")
    data = bytes(state)
    if payload_sha256 is None:
        try:
            payload_sha256 = envelope.payload_sha256(data)
        except envelope.EnvelopeError:
            payload_sha256 = None  # bytes the server never runs (tests' opaque states): no hash
    tx.insert(
        "INSERT INTO states (job_id, seq, data, status, created_at, digest, payload_sha256)"
        f" VALUES (?, 0, ?, '{StateStatus.COMMITTED}', ?, ?, ?)",
        (job_id, data, now, envelope.digest(data), payload_sha256),
    )
    tx.execute(f"UPDATE jobs SET status = '{JobStatus.READY}', seq = 0 WHERE id = ?", (job_id,))


def committed_state(tx, job_id: int) -> dict[str, Any]:
    row = tx.one(
        "SELECT s.id, s.seq, s.data, s.chunks FROM jobs j JOIN states s ON s.job_id = j.id AND s.seq = j.seq"
        f" WHERE j.id = ? AND s.status = '{StateStatus.COMMITTED}'",
        (job_id,),
    )
    if row is None:
        raise NotFound(f"job {job_id} has no committed state")
    if row["chunks"]:  # stored in chunks (``statechunks``): its row holds no bytes
        row["data"] = statechunks.state_bytes(tx, row["id"])
    return row


def ready_jobs(tx, limit: int) -> list[dict[str, Any]]:
    """The top ``limit`` ready jobs in the matcher's order (price desc, submitted asc, id asc), each
    with ``available``: its owner's balance minus what the owner's open leases reserved (-1 for
    a disabled account: no slice fits, so the window holds its jobs).

    The index ``jobs_ready`` lets the database pick the top rows without sorting the ready list.
    """
    return tx.all(
        "SELECT j.id, j.price, j.submitted_at, j.account_id, j.kind, j.spec,"
        # a disabled account can pay nothing: its jobs are held (rules.plan_window), not leased
        " CASE WHEN a.disabled_at IS NULL THEN a.balance - a.reserved ELSE -1 END AS available,"
        # spending caps (core.caps): each figure summed only where there is a cap
        f" j.cap AS job_cap, CASE WHEN j.cap IS NULL THEN 0 ELSE {sql_caps.JOB_SPENT} END AS job_spent,"
        " j.batch_id, b.cap AS batch_cap,"
        f" CASE WHEN b.cap IS NULL THEN 0 ELSE {sql_caps.BATCH_SPENT} END AS batch_spent,"
        f" a.cap AS account_cap, CASE WHEN a.cap IS NULL THEN 0 ELSE {sql_caps.ACCOUNT_SPENT} END AS account_spent"
        " FROM jobs j JOIN accounts a ON a.id = j.account_id LEFT JOIN batches b ON b.id = j.batch_id"
        f" WHERE j.status = '{JobStatus.READY}' AND j.kind IN {_COMPETING}"
        " ORDER BY j.price DESC, j.submitted_at ASC, j.id ASC LIMIT ?",
        (int(limit),),
    )


def assign_window(
    tx,
    clients: list[Any],
    now: float,
    grace: float,
    granted: dict[int, float],
    match: Callable[[list[Any], list[Any]], list[Any]],
    make_ready_job: Callable[..., Any],
    issued_by: dict[int, str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Close one pooling window in ONE transaction: pick affordable ready jobs, match, check out.

    ``clients`` are matcher clients (with ``.id``); ``granted[client_id]`` is each client's
    negotiated slice; ``match`` is the pure matcher and ``make_ready_job(row)`` turns a row into its
    input. Which jobs are candidates and which are held because their owner cannot pay a slice is
    ``rules.plan_window``'s decision; held jobs are marked held (visible), not dispatched.
    Returns ``{client_id: lease}`` for the clients that got work. ``issued_by[client_id]``: the
    front end whose worker asked (``market.core.frontends``), recorded on its lease.

    A window of any size costs three round trips and the commit: read the top of the ready list;
    mark the held jobs and lock the chosen ones; write the leases.
    """
    if not clients:
        return {}
    rows = ready_jobs(tx, rules.window_reach(len(clients)))
    available: dict[int | None, int] = {}  # owner -> money; keyed like rules.WindowJob.owner
    limits: dict[Any, caps.Cap] = {}  # spending caps over these jobs, keyed like rules.WindowJob.caps
    for row in rows:
        available.setdefault(row["account_id"], int(row["available"]))
        for what, key in _cap_keys(row):
            limits.setdefault(key, caps.Cap(what, int(row[f"{what}_cap"]), int(row[f"{what}_spent"])))
    plan = rules.plan_window(
        (
            rules.WindowJob(
                r["id"], r["account_id"], r["price"], rules.task_seconds(r["spec"]), tuple(k for _, k in _cap_keys(r))
            )
            for r in rows
        ),
        available,
        len(clients),
        max(granted.values()),
        limits,
    )
    rows_by_id = {row["id"]: row for row in rows}
    own_seconds = {job.id: job.seconds for job in plan.candidates}
    wanted = [
        (a.job.id, a.client.id, rules.lease_seconds(own_seconds[a.job.id], granted[a.client.id]))
        for a in match(clients, [make_ready_job(rows_by_id[job.id]) for job in plan.candidates])
    ]
    held = plan.held
    # the owners whose reservations the leases change, locked first in id order (accounts.lock_statements)
    first = sql_accounts.lock_statements(tx, (rows_by_id[job_id]["account_id"] for job_id, _, _ in wanted))
    if held:
        # a job held by a cap keeps the words why (core.caps.reason); one held for money, none
        capped = {j: caps.reason(c)[:255] for j, c in (plan.capped or {}).items()}
        reasons, params = case("id", capped) if capped else ("NULL", [])
        first.append(
            (
                f"UPDATE jobs SET status = '{JobStatus.HELD}', hold_reason = {reasons}"
                f" WHERE status = '{JobStatus.READY}' AND id IN {marks(len(held))}",
                [*params, *held],
            )
        )
    leases = checkout_many(tx, wanted, grace, now, first=first, issued_by=issued_by)
    return {client_id: leases[job_id] for job_id, client_id, _ in wanted if job_id in leases}


def _cap_keys(row: dict[str, Any]) -> list[tuple[str, tuple[str, int]]]:
    """The spending caps over a ready-list row: ``(what, key)`` for its job, batch and account."""
    keys = []
    if row["job_cap"] is not None:
        keys.append((caps.JOB, (caps.JOB, row["id"])))
    if row["batch_cap"] is not None:
        keys.append((caps.BATCH, (caps.BATCH, row["batch_id"])))
    if row["account_cap"] is not None:
        keys.append((caps.ACCOUNT, (caps.ACCOUNT, row["account_id"])))
    return keys


def checkout(tx, job_id: int, client_id: int, seconds: float, grace: float, now: float) -> dict[str, Any]:
    """Lease the job's committed state to a client until ``now + seconds + grace``."""
    leases = checkout_many(tx, [(job_id, client_id, seconds)], grace, now)
    if job_id not in leases:
        job = job_row(tx, job_id)
        if not rules.can_lease(job["status"], job["kind"]):
            raise Conflict(f"job {job_id} is {job['status']}, not ready")
        raise NotFound(f"job {job_id} has no committed state")
    return leases[job_id]


def checkout_many(
    tx,
    wanted: Sequence[tuple[int, int, float]],
    grace: float,
    now: float,
    first: Sequence[Any] = (),
    issued_by: dict[int, str] | None = None,
) -> dict[int, dict[str, Any]]:
    """Lease each ``(job, client, seconds)``'s committed state until ``now + seconds + grace``.

    Returns ``{job_id: lease}``. A job that is no longer ready (cancelled or held since the ready
    list was read) is left out rather than failing the whole window. Test jobs are leased as they
    are. ``first``: statements to run in the same round trip as the locking read. The money a
    lease may cost is reserved on its owner's account until the lease closes. ``issued_by``: client
    id -> the front end that asked for it (the lease's ``frontend``; NULL when not given).
    """
    if not wanted:
        if first:
            tx.script(first)
        return {}
    job_ids = [job_id for job_id, _, _ in wanted]
    found = tx.script(
        [
            *first,
            (
                "SELECT j.id, j.account_id, j.kind, j.name, j.price, j.status, j.source, j.entry, j.spec, j.probe_size,"
                " s.id AS state_id, s.seq, s.data, s.chunks, s.size FROM jobs j JOIN states s ON s.job_id = j.id"
                f" AND s.seq = j.seq WHERE j.id IN {marks(len(job_ids))} AND s.status = '{StateStatus.COMMITTED}'"
                + tx.for_update,
                job_ids,
            ),
        ]
    )[-1]
    rows = {r["id"]: r for r in found}
    leases: dict[int, dict[str, Any]] = {}
    for job_id, client_id, seconds in wanted:
        job = rows.get(job_id)
        if job is None or not rules.can_lease(job["status"], job["kind"]) or job_id in leases:
            continue
        leases[job_id] = {
            "job_id": job_id,
            "client_id": client_id,
            "kind": job["kind"],
            "name": job["name"],
            "state": bytes(job["data"]),
            # a state stored in chunks is fetched by them (``state_get``): its row holds no bytes
            "state_chunks": job["chunks"],
            "state_size": job["size"] if job["chunks"] else len(job["data"]),
            "state_id": job["state_id"],
            "seq": job["seq"],
            "source": job["source"],
            "entry": job["entry"],
            "spec": job["spec"],
            "granted": seconds,
            "deadline": rules.lease_deadline(now, seconds, grace),
            "timeout": seconds + grace,
            "probe_size": job["probe_size"],
            "owner": job["account_id"],
            "reserved": rules.reservation(job["kind"], job["price"], seconds),
            # the price this lease pays, whatever the job's price becomes meanwhile
            "price": job["price"],
        }
    if not leases:
        return {}
    ids = marks(len(leases))
    written = tx.script(
        [
            Many(
                "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
                " status, reserved, price, frontend) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        j,
                        lease["state_id"],
                        lease["client_id"],
                        now,
                        lease["granted"],
                        lease["deadline"],
                        LeaseStatus.OUT,
                        lease["reserved"],
                        lease["price"],
                        (issued_by or {}).get(lease["client_id"]),
                    )
                    for j, lease in leases.items()
                ],
            ),
            # a job has at most one open lease (checkout needs 'ready'), so (job, 'out') names the new row
            (f"SELECT id, job_id FROM leases WHERE job_id IN {ids} AND status = ?", [*leases, LeaseStatus.OUT]),
            (f"UPDATE jobs SET status = '{JobStatus.RUNNING}' WHERE id IN {ids}", list(leases)),
            *_reservations(leases.values(), +1),
        ]
    )
    for r in written[1]:
        leases[r["job_id"]]["stateid"] = r["id"]
    return leases


def _reservations(leases: Iterable[dict[str, Any]], sign: int) -> list[Any]:
    """The statement that adds (sign +1, at checkout) or releases (-1, when the lease closes) the
    money these leases reserved on their owners' accounts; none if they reserved nothing."""
    by_owner: dict[int, int] = defaultdict(int)
    for lease in leases:
        if lease["reserved"] and lease["owner"] is not None:
            by_owner[lease["owner"]] += sign * int(lease["reserved"])
    if not by_owner:
        return []
    change, params = case("id", dict(by_owner), "0")
    # a reservation returned is money the owner can spend again: their held jobs are checked again
    returned = sql_accounts.release_held_statements(by_owner) if sign < 0 else []
    return [
        (
            f"UPDATE accounts SET reserved = reserved + {change} WHERE id IN {marks(len(by_owner))}",
            [*params, *by_owner],
        ),
        *returned,
    ]


def create_probe(
    tx,
    client_id: int,
    build: Callable[[int], tuple[str, str, bytes]],
    steps: int,
    seconds: float,
    grace: float,
    now: float,
    per_interval: int = 3,
    interval: float = 1800.0,
) -> dict[str, Any]:
    """A probe (a job of kind ``test``) for one client, checked out to it at once (probes never
    join the ready list). ``build(job_id)`` gives its (source, entry, state #0): a probe's input is
    derived from its job id, so it is built here, on the database thread (a few ms of compiling,
    once per client and probe interval). Its name is neutral, as its program is.

    A client gets one test job at a time, and at most ``per_interval`` in ``interval`` seconds
    (the probe interval: an honest client needs one); otherwise Conflict, saying when to ask
    again. Counted on the client's row, locked first, so parallel requests cannot both pass.
    """
    client = tx.one(
        "SELECT id, test_job_id, test_jobs, test_jobs_since FROM clients WHERE id = ?" + tx.for_update, (client_id,)
    )
    if client is None:
        raise NotFound(f"no client {client_id}")
    if client["test_job_id"] is not None:
        open_lease = tx.one(
            "SELECT d.deadline FROM jobs j JOIN leases d ON d.job_id = j.id"
            f" WHERE j.id = ? AND j.status = '{JobStatus.RUNNING}' AND d.status = '{LeaseStatus.OUT}'",
            (client["test_job_id"],),
        )
        if open_lease is not None:
            wait = max(1, math.ceil(float(open_lease["deadline"]) - now))
            raise Conflict(
                f"client {client_id} already has test job {client['test_job_id']} to run: send its result"
                f" (or fail it), or ask again in {wait} s when its lease has expired"
            )
    since, count = client["test_jobs_since"], int(client["test_jobs"] or 0)
    if since is None or now - float(since) >= interval:
        since, count = now, 0
    if count >= per_interval:
        wait = max(1, math.ceil(float(since) + interval - now))
        raise Conflict(
            f"client {client_id} has had {count} test jobs in the last {interval:g} s, as many as a client"
            f" may; ask again in {wait} s"
        )
    job_id = create_job(
        tx,
        None,
        "job",
        0,
        "",
        "",
        now,
        kind=JobKind.TEST,
        probe_client_id=client_id,
        probe_size=steps,
    )
    source, entry, envelope = build(job_id)
    tx.execute(
        "UPDATE jobs SET source = ?, source_sha256 = ?, entry = ? WHERE id = ?",
        (source, source_hash(source), entry, job_id),
    )
    init_job(tx, None, job_id, envelope, now)
    lease = checkout(tx, job_id, client_id, seconds, grace, now)
    tx.execute(
        "UPDATE clients SET test_job_id = ?, test_jobs = ?, test_jobs_since = ? WHERE id = ?",
        (job_id, count + 1, since, client_id),
    )
    return lease


def clean_test_jobs(tx, before: float, limit: int = 1000) -> int:
    """Delete test jobs that ended before ``before``, with their states and leases; how many went.

    A test job's lasting outcome is the client's speed record (``speeds``) or its suspicion, both
    on the client; the job, its state and its lease only serve repeat answers to a check-in, for
    a little while after it ended. Test jobs are the only jobs without an owner, so the owner index
    finds them. At most ``limit`` a call, so a backlog is cleared in short transactions.
    """
    ids = [
        r["id"]
        for r in tx.all(
            f"SELECT id FROM jobs WHERE account_id IS NULL AND kind = '{JobKind.TEST}'"
            # a test job that checked a state in rather than a result ended without finished_at
            f" AND status = '{JobStatus.FINISHED}' AND COALESCE(finished_at, submitted_at) < ? ORDER BY id LIMIT ?",
            (before, int(limit)),
        )
    ]
    if not ids:
        return 0
    where = marks(len(ids))
    tx.script(
        [
            (f"DELETE FROM state_chunks WHERE lease_id IN (SELECT id FROM leases WHERE job_id IN {where})", ids),
            (f"DELETE FROM leases WHERE job_id IN {where}", ids),
            (f"DELETE FROM states WHERE job_id IN {where}", ids),
            (f"DELETE FROM jobs WHERE id IN {where}", ids),
            (f"UPDATE clients SET test_job_id = NULL WHERE test_job_id IN {where}", ids),
        ]
    )
    return len(ids)


def lease_row(tx, lease_id: int, lock: bool = False) -> dict[str, Any]:
    row = tx.one("SELECT * FROM leases WHERE id = ?" + (tx.for_update if lock else ""), (lease_id,))
    if row is None:
        raise NotFound(f"no checked-out state {lease_id}")
    return row


# A lease with what closing it needs (job, the lease's price, owner, payee, seq, what a state must
# follow from: the job's source and entry, the leased state's digest and payload hash), locking
# with it the accounts its payment moves, so a check-in reads and locks everything in one statement.
_LEASE = (
    "SELECT d.id, d.job_id, d.state_id, d.client_id, d.checked_out_at, d.granted_seconds, d.deadline,"
    " d.status, d.paid, d.accepted_ms, d.reserved, d.price, d.check_id, j.status AS job_status, j.kind, j.carry,"
    " j.source_sha256, j.entry, s.digest AS parent_digest, s.payload_sha256 AS parent_payload,"
    " j.account_id AS owner, c.account_id AS payee, c.verified_slices, s.seq,"
    # its worker is a party to an open dispute (found through the index of open checks: disputes are few)
    f" EXISTS (SELECT 1 FROM checks k WHERE k.status IN {sql_checks.IN_DISPUTE}"
    " AND (k.worker_id = d.client_id OR k.first_client_id = d.client_id)) AS in_dispute"
    " FROM leases d JOIN jobs j ON j.id = d.job_id JOIN clients c ON c.id = d.client_id"
    " JOIN states s ON s.id = d.state_id WHERE d.id"
)


def _leases_for_checkin(tx, lease_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The leases with what a check-in needs, locked, and their accounts' balances.

    The accounts the payments move are locked first, all at once and in id order
    (``accounts.lock_statements``), in the same round trip as the locking read of the leases,
    which does not join them: locked through the join, lease by lease, owner then payee, two
    batches with the owner of one the payee of the other deadlocked. Who they are cannot change
    (a job's owner, a client's account), so a plain read finds them first."""
    ids = sorted(set(lease_ids))
    parties = tx.all(
        "SELECT j.account_id AS owner, c.account_id AS payee FROM leases d JOIN jobs j ON j.id = d.job_id"
        f" JOIN clients c ON c.id = d.client_id WHERE d.id IN {marks(len(ids))}",
        ids,
    )
    accounts = [a for r in parties for a in (r["owner"], r["payee"])]
    *locked, leases = tx.script(
        [
            *sql_accounts.lock_statements(tx, accounts, "balance"),
            (f"{_LEASE} IN {marks(len(ids))}" + tx.for_update, ids),
        ]
    )
    balances = {r["id"]: int(r["balance"]) for rows in locked for r in rows or []}
    out = {}
    for d in leases or []:
        d["owner_balance"] = None if d["owner"] is None else balances[d["owner"]]
        d["payee_balance"] = balances[d["payee"]]
        out[d["id"]] = d
    return out


def _lease_for_checkin(tx, lease_id: int, client_id: int) -> dict[str, Any]:
    d = _leases_for_checkin(tx, [lease_id]).get(lease_id)
    return _own_lease(d, lease_id, client_id)


def _own_lease(d: dict[str, Any] | None, lease_id: int, client_id: int) -> dict[str, Any]:
    if d is None:
        raise NotFound(f"no checked-out state {lease_id}")
    if d["client_id"] != client_id:
        raise Forbidden(f"state {lease_id} was not checked out to client {client_id}")
    return d


def _accepted_ms(lease: dict[str, Any], at: float) -> int:
    return rules.accepted_ms(lease["checked_out_at"], lease["granted_seconds"], at)


def _verdict(lease: dict[str, Any], at: float) -> Verdict:
    return rules.judge_checkin(lease["status"], lease["deadline"], lease["job_status"], at)


def _settle(accepted: Sequence[tuple[dict[str, Any], int]], now: float) -> tuple[dict[int, int], list[Any]]:
    """Pay for accepted slices ``(lease, accepted ms)``: ``({lease id: cents paid}, statements)``.

    The balances and the jobs' carries come locked with the leases (``_LEASE``); ``rules.settle``
    decides the payments against them, and they are written with one statement per table (and
    one per job whose carry changed). A replay lease (``check_id``) pays its own cost rounded
    down and leaves its job's carry alone, as the simulator's replays do.
    """
    balances: dict[int, int] = {}
    carries: dict[int, int] = {}
    slices = []
    for lease, ms in accepted:
        if lease["owner"] is not None:
            balances.setdefault(lease["owner"], int(lease["owner_balance"]))
        balances.setdefault(lease["payee"], int(lease["payee_balance"]))
        if lease.get("check_id") is None:
            carries.setdefault(lease["job_id"], int(lease["carry"]))
        slices.append(
            rules.Slice(
                lease["id"],
                lease["job_id"],
                lease["kind"],
                lease["price"],
                lease["owner"],
                lease["payee"],
                ms,
                int(lease["reserved"]) if lease["owner"] is not None else None,
            )
        )
    before = dict(carries)
    settlement = rules.settle(slices, balances, carries)
    statements = sql_accounts.record_statements(settlement.postings, now)
    statements.extend(
        ("UPDATE jobs SET carry = ? WHERE id = ?", (carry, job_id))
        for job_id, carry in sorted(carries.items())
        if carry != before[job_id]
    )
    return settlement.paid, statements


def _repeat(d: dict[str, Any]) -> dict[str, Any]:
    return rules.repeat_answer(d["id"], d["status"], d["paid"], d["accepted_ms"])


def _reject(tx, lease: dict[str, Any], now: float, slice_status: str) -> dict[str, Any]:
    tx.script(
        [
            (
                f"UPDATE leases SET status = '{LeaseStatus.REJECTED}', checked_in_at = ?, slice_status = ?"
                " WHERE id = ?",
                (now, slice_status, lease["id"]),
            ),
            *_reservations([lease], -1),
        ]
    )
    job = job_row(tx, lease["job_id"], lock=True)
    _change_job(tx, job["id"], rules.released(job["status"], job["kind"], _open_leases(tx, job)), now)
    return rules.answer(lease["id"], LeaseStatus.REJECTED)


def _open_leases(tx, job: dict[str, Any]) -> int:
    """How many leases of this job are still out; read only where the rules can ask (a running job
    that is not a test job), so closing a lease costs no extra round trip otherwise."""
    if job["status"] != JobStatus.RUNNING or job["kind"] == JobKind.TEST:
        return 0
    return int(
        tx.scalar(
            f"SELECT COUNT(*) FROM leases WHERE job_id = ? AND status = '{LeaseStatus.OUT}' AND check_id IS NULL",
            (job["id"],),
        )
    )


def _change_job(tx, job_id: int, change: rules.JobChange | None, now: float, error: str | None = None) -> None:
    """Write what the rules decided for a job: back on the ready list, or ended with an outcome."""
    if change is None:
        return
    if change.outcome is None:
        tx.execute("UPDATE jobs SET status = ? WHERE id = ?", (change.status, job_id))
    elif error is None:
        tx.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ? WHERE id = ?",
            (change.status, change.outcome, now, job_id),
        )
    else:
        tx.execute(
            "UPDATE jobs SET status = ?, outcome = ?, finished_at = ?, error = ? WHERE id = ?",
            (change.status, change.outcome, now, error[:2000], job_id),
        )


@dataclass(frozen=True)
class CheckIn:
    """One ``state`` call: a client checks a new state in for the lease it holds, at
    server time ``at`` (when it arrived: a batch's wait is the market's delay, not the worker's)."""

    lease_id: int
    client_id: int
    state: bytes
    at: float
    slice_status: str = SliceStatus.OK
    progress: float | None = None
    #: what the state's envelope says of itself (``state_facts``), computed before the state is
    #: queued (off the reactor thread for a large one); None: computed in the transaction
    facts: rules.StateFacts | None = None
    #: what opening a replay check of this slice needs, if the market verifies slices (None: it
    #: does not); whether one is opened is decided in the check-in's transaction
    check: SliceCheck | None = None
    #: a state sent in chunks (``store.statechunks``; ``state`` is then empty): its chunks, its
    #: size and its envelope's digest, read from the chunks before it was queued
    chunked: tuple[int, int, str] | None = None


@dataclass(frozen=True)
class SliceCheck:
    """What a check-in brings for verification by replay (``market.core.verification``): the
    random draw that samples it, the interpreter and mark its state's header names, and the
    worker's probe speed when the dispatcher knows it (None: read in the transaction).

    The rest comes with the locked lease row: the worker's verified slices (whether it is under
    watch), the parent and new state, the accepted time. So deciding and opening the check costs
    the check-in no round trip of its own: one multi-row INSERT in the group commit's script, and
    a slice is never accepted without the check it was due (one transaction)."""

    draw: float
    interpreter: str
    mark: str
    speed: float | None = None


def state_facts(data: bytes) -> rules.StateFacts:
    """Read a checked-in state's header and hash its payload (two sha256 passes over the bytes:
    never inside a transaction for a large state). An envelope of the older format is refused
    (StateRefused: its header cannot bind it to a lease), a malformed one is invalid."""
    return state_facts_and_origin(data)[0]


def state_facts_and_origin(data: bytes) -> tuple[rules.StateFacts, str, str]:
    """:func:`state_facts`, and the interpreter and replay mark the header names (the mark is ""
    in a state of an older runtime), from ONE reading of the envelope."""
    try:
        header, payload_sha256 = envelope.inspect(data)
    except envelope.OlderFormat as e:
        raise StateRefused(f"state refused: {e}; nothing was stored or paid") from None
    except envelope.EnvelopeError as e:
        raise MarketError(f"that state is not a valid envelope: {e} — nothing was stored") from None
    return statechunks.facts_of_header(header, payload_sha256)


def _expected(lease: dict[str, Any]) -> rules.StateFacts:
    """What a state checked in on this lease must say of itself (``rules.state_refusal``)."""
    return rules.StateFacts(
        lease["job_id"],
        lease["source_sha256"],
        lease["entry"],
        lease["parent_digest"] or "",
        lease["seq"] + 1,
        lease["parent_payload"],
    )


def checkin(
    tx,
    lease_id: int,
    client_id: int,
    state: bytes,
    now: float,
    slice_status: str = SliceStatus.OK,
    progress: float | None = None,
) -> dict[str, Any]:
    """The paper's ``state``: commit a new state if it arrives before the deadline, else reject it.

    Repeating an accepted check-in answers the same again and pays nothing twice.
    """
    facts = state_facts(state)
    answer = checkin_many(tx, [CheckIn(lease_id, client_id, state, now, slice_status, progress, facts)])[0]
    if isinstance(answer, MarketError):
        raise answer
    return answer


def checkin_many(
    tx, checkins: Sequence[CheckIn], verify: verification.Settings | None = None
) -> list[dict[str, Any] | MarketError]:
    """Many ``state`` calls in ONE transaction (group commit), answered in order.

    Each answer is what :func:`checkin` would have answered alone, or the MarketError it would have
    raised (no such lease, another client's lease, a state that does not follow from its lease:
    StateRefused, ``rules.state_refusal``, with nothing stored or paid and the lease still open):
    one bad check-in does not fail the others.
    However many check-ins are accepted, they cost two round trips and the commit: one locking
    read of the leases and their accounts, then one script that commits the states, pays, closes
    the leases, puts the jobs back on the ready list and, with ``verify`` (the market's
    verification settings), opens the replay checks of the accepted slices that carry a
    :class:`SliceCheck` and that ``verification.why_verify`` picks (one multi-row INSERT).
    """
    leases = _leases_for_checkin(tx, [c.lease_id for c in checkins]) if checkins else {}
    answers: list[Any] = [None] * len(checkins)
    first: dict[int, int] = {}  # lease id -> index of its first check-in in this batch
    accepted: list[tuple[CheckIn, dict[str, Any], int]] = []
    for i, c in enumerate(checkins):
        try:
            lease = _own_lease(leases.get(c.lease_id), c.lease_id, c.client_id)
        except MarketError as e:
            answers[i] = e
            continue
        if lease["check_id"] is not None:  # a replay lease's answer is compared, never committed
            answers[i] = Forbidden(f"state {c.lease_id} is a replay lease: its state is compared, not committed")
            continue
        if c.lease_id in first:
            continue  # a repeat within the batch: answered below, as a duplicate of the first
        verdict = _verdict(lease, c.at)
        if verdict is Verdict.ACCEPT:
            try:
                facts = c.facts if c.facts is not None else state_facts(c.state)
            except MarketError as e:
                answers[i] = e
                continue
            refusal = rules.state_refusal(c.lease_id, _expected(lease), facts)
            if refusal is not None:
                answers[i] = StateRefused(refusal)  # the lease stays open: a right state may follow
                continue
            c = replace(c, facts=facts)
        first[c.lease_id] = i
        if verdict is Verdict.REPEAT:
            answers[i] = _repeat(lease)
        elif verdict is Verdict.REJECT:
            answers[i] = _reject(tx, lease, c.at, c.slice_status)
        else:
            accepted.append((c, lease, _accepted_ms(lease, c.at)))
    if accepted:
        # a worker in an open dispute is paid nothing until it ends: the slice is held, its
        # reservation kept (``release_held_pay`` pays or returns it)
        held = {c.lease_id for c, lease, _ in accepted if _pay_held(lease)}
        to_pay = [(lease, ms) for c, lease, ms in accepted if c.lease_id not in held]
        paid, payments = _settle(to_pay, max(c.at for c, _, _ in accepted)) if to_pay else ({}, [])
        paid.update(dict.fromkeys(held, 0))
        tx.script(
            [
                *_accept_statements(accepted, paid),
                *payments,
                *_reservations((lease for _, lease, _ in accepted if lease["id"] not in held), -1),
                *_hold_pay_statements(held),
                *_slice_checks(tx, accepted, verify),
            ]
        )
        for c, _, ms in accepted:
            answers[first[c.lease_id]] = rules.answer(c.lease_id, LeaseStatus.ACCEPTED, paid[c.lease_id], ms)
            if c.lease_id in held:
                answers[first[c.lease_id]]["pay_held"] = True
    for i, c in enumerate(checkins):
        if answers[i] is None:  # a repeat of an earlier check-in in this batch
            answers[i] = dict(answers[first[c.lease_id]], duplicate=True)
    return answers


def _pay_held(lease: dict[str, Any]) -> bool:
    """Whether closing this lease pays nothing now: its worker is a party to an open dispute
    (a probe pays nothing anyway, and its answer must not look held)."""
    return bool(lease.get("in_dispute")) and lease["kind"] != JobKind.TEST


def _hold_pay_statements(held: Iterable[int]) -> list[Any]:
    ids = sorted(held)
    return [(f"UPDATE leases SET pay_held = 1 WHERE id IN {marks(len(ids))}", ids)] if ids else []


def release_held_pay(tx, client_id: int, now: float) -> int:
    """End the hold on a client's pay once it is party to no open dispute: its held slices are
    paid now at their leases' prices for their accepted time (from the money still reserved), or,
    when it lost (suspect), paid nothing (``verification.lose`` undid what it made). Their
    reservations are returned either way. -> how many leases were released."""
    still = tx.scalar(
        f"SELECT COUNT(*) FROM checks k WHERE k.status IN {sql_checks.IN_DISPUTE}"
        " AND (k.worker_id = ? OR k.first_client_id = ?)",
        (client_id, client_id),
    )
    if still:
        return 0
    ids = [r["id"] for r in tx.all("SELECT id FROM leases WHERE client_id = ? AND pay_held = 1", (client_id,))]
    if not ids:
        return 0
    leases = list(_leases_for_checkin(tx, ids).values())
    lost = bool(tx.scalar("SELECT suspect FROM clients WHERE id = ?", (client_id,)))
    paid: dict[int, int] = dict.fromkeys(ids, 0)
    payments: list[Any] = []
    if not lost:
        paid, payments = _settle([(d, int(d["accepted_ms"] or 0)) for d in leases], now)
    amounts, params = case("id", paid, "paid")
    tx.script(
        [
            *payments,
            (f"UPDATE leases SET pay_held = 0, paid = {amounts} WHERE id IN {marks(len(ids))}", [*params, *ids]),
            *_reservations(leases, -1),
        ]
    )
    return len(ids)


def _slice_checks(tx, accepted: Sequence[tuple[CheckIn, dict[str, Any], int]], verify) -> list[Any]:
    """The statement opening the replay checks of accepted slices (``store.verification.slice_checks``):
    a slice is checked when ``why_verify`` says so from its draw and its worker's verified slices,
    read with the locked lease (a worker under watch: every slice)."""
    if verify is None:
        return []
    due = []
    for c, lease, ms in accepted:
        if c.check is None or c.facts is None or c.facts.payload_sha256 is None:
            continue
        reason = verification.why_verify(
            verification.CheckKind.SLICE, int(lease["verified_slices"] or 0), c.check.draw, verify
        )
        if reason is not None:
            due.append((c, c.check, c.facts, lease, ms, reason))
    if not due:
        return []
    # a speed the dispatcher did not have cached (rare: its client cache was just cleared)
    unknown = {c.client_id for c, check, _, _, _, _ in due if check.speed is None}
    speeds = {}
    for client_id in sorted(unknown):
        row = sql_clients.last_speed(tx, client_id)
        speeds[client_id] = float(row["speed"]) if row else None
    return [
        sql_checks.slice_checks(
            [
                sql_checks.SliceCheckRow(
                    job_id=lease["job_id"],
                    reason=reason,
                    lease_id=c.lease_id,
                    worker_id=c.client_id,
                    parent_state_id=lease["state_id"],
                    new_seq=lease["seq"] + 1,
                    target_sha256=facts.payload_sha256 or "",
                    mark=check.mark,
                    interpreter=check.interpreter,
                    steps=verification.max_steps(
                        ms / 1000.0, check.speed if check.speed is not None else speeds[c.client_id], verify.margin
                    ),
                    checked_ms=ms,
                    created_at=c.at,
                )
                for c, check, facts, lease, ms, reason in due
            ]
        )
    ]


def _accept_statements(accepted: Sequence[tuple[CheckIn, dict[str, Any], int]], paid: dict[int, int]) -> list[Any]:
    """Commit the new states, close the leases as accepted, count the jobs' slices and time and put
    them back on the ready list (``rules.after_accepted_slice``): one statement per table."""
    # the lease's state is its job's committed one (one open lease per job): primary-key access
    state_ids = [lease["state_id"] for _, lease, _ in accepted]
    lease_ids = [c.lease_id for c, _, _ in accepted]
    job_ids = [lease["job_id"] for _, lease, _ in accepted]
    checked_in, p1 = case("id", {c.lease_id: c.at for c, _, _ in accepted})
    statuses, p2 = case("id", {c.lease_id: c.slice_status for c, _, _ in accepted})
    accepted_ms, p3 = case("id", {c.lease_id: ms for c, _, ms in accepted})
    payments, p4 = case("id", {d: paid[d] for d in lease_ids})
    executed, p5 = case("id", {lease["job_id"]: ms for _, lease, ms in accepted}, "0")
    progress = {
        lease["job_id"]: max(0.0, min(1.0, float(c.progress))) for c, lease, _ in accepted if c.progress is not None
    }
    progress_sql, p6 = case("id", progress, "progress") if progress else ("progress", [])
    # the usual next status is written as SQL text; only the exceptions (test jobs) go as CASE arms
    usual = JobStatus.READY
    unusual = {
        lease["job_id"]: after
        for _, lease, _ in accepted
        if (after := rules.after_accepted_slice(lease["kind"])) != usual
    }
    next_status, p7 = case("id", unusual, f"'{usual}'") if unusual else (f"'{usual}'", [])
    new_seq, p8 = case("leases.id", {c.lease_id: lease["seq"] + 1 for c, lease, _ in accepted})
    return [
        (
            f"UPDATE states SET status = '{StateStatus.SUPERSEDED}' WHERE status = '{StateStatus.COMMITTED}'"
            f" AND id IN {marks(len(state_ids))}",
            state_ids,
        ),
        Many(
            "INSERT INTO states (job_id, seq, data, status, client_id, lease_id, created_at, digest, payload_sha256,"
            " chunks, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    lease["job_id"],
                    lease["seq"] + 1,
                    bytes(c.state),
                    StateStatus.COMMITTED,
                    c.client_id,
                    c.lease_id,
                    c.at,
                    c.chunked[2] if c.chunked is not None else envelope.digest(c.state),
                    c.facts.payload_sha256 if c.facts is not None else None,
                    c.chunked[0] if c.chunked is not None else 0,
                    c.chunked[1] if c.chunked is not None else len(c.state),
                )
                for c, lease, _ in accepted
            ],
        ),
        # a chunked state's chunks past its count (a longer earlier attempt on its lease) go
        *(
            statement
            for c, _, _ in accepted
            if c.chunked is not None
            for statement in statechunks.commit_statements(c.lease_id, c.chunked[0])
        ),
        (
            f"UPDATE leases SET status = '{LeaseStatus.ACCEPTED}', checked_in_at = {checked_in},"
            f" slice_status = {statuses},"
            f" new_state_id = (SELECT s.id FROM states s WHERE s.job_id = leases.job_id AND s.seq = {new_seq}),"
            f" accepted_ms = {accepted_ms}, paid = {payments} WHERE id IN {marks(len(lease_ids))}",
            [*p1, *p2, *p8, *p3, *p4, *lease_ids],
        ),
        (
            f"UPDATE jobs SET executed_ms = executed_ms + {executed}, slices = slices + 1, seq = seq + 1,"
            f" progress = {progress_sql},"
            f" status = CASE WHEN status = '{JobStatus.RUNNING}' THEN {next_status} ELSE status END"
            f" WHERE id IN {marks(len(job_ids))}",
            [*p5, *p6, *p7, *job_ids],
        ),
    ]


def finish(
    tx, lease_id: int, client_id: int, result: bytes | None, outcome: str, error: str | None, now: float
) -> dict[str, Any]:
    """The paper's ``result``: the job finished (or failed) during this lease; store it and pay."""
    lease = _lease_for_checkin(tx, lease_id, client_id)
    if lease["check_id"] is not None:
        raise Forbidden(f"state {lease_id} is a replay lease: its result is compared, not stored")
    verdict = _verdict(lease, now)
    if verdict is Verdict.REPEAT:
        return _repeat(lease)
    if verdict is Verdict.REJECT:
        return _reject(tx, lease, now, outcome)
    ms = _accepted_ms(lease, now)
    held = _pay_held(lease)  # a worker in an open dispute: held, as in checkin_many
    paid, payments = ({lease_id: 0}, []) if held else _settle([(lease, ms)], now)
    tx.script(
        [
            (
                f"UPDATE leases SET status = '{LeaseStatus.FINISHED}', checked_in_at = ?, slice_status = ?,"
                " accepted_ms = ?, paid = ?, pay_held = ? WHERE id = ?",
                (now, outcome, ms, paid[lease_id], int(held), lease_id),
            ),
            (
                f"UPDATE jobs SET status = '{JobStatus.FINISHED}', finished_at = ?, outcome = ?, result = ?, error = ?,"
                " progress = 1.0, executed_ms = executed_ms + ?, slices = slices + 1 WHERE id = ?",
                (now, outcome, None if result is None else bytes(result), error, ms, lease["job_id"]),
            ),
            *payments,
            *([] if held else _reservations([lease], -1)),
        ]
    )
    answer = rules.answer(lease_id, LeaseStatus.FINISHED, paid[lease_id], ms)
    if held:
        answer["pay_held"] = True
    return answer


def expire_leases(tx, now: float) -> list[int]:
    """Expire every lease past its deadline (``rules.overdue``, here in SQL); each job goes where
    ``rules.after_expiry`` says: back on the ready list at its committed state, or, a test job,
    ended 'expired'."""
    if tx.for_update:
        # the owners whose reservations return, locked first in id order (accounts.lock_statements)
        owners = tx.all(
            "SELECT DISTINCT j.account_id AS owner FROM leases d JOIN jobs j ON j.id = d.job_id"
            f" WHERE d.status = '{LeaseStatus.OUT}' AND d.deadline < ?",
            (now,),
        )
        tx.script(sql_accounts.lock_statements(tx, [r["owner"] for r in owners]))
    overdue = tx.all(
        "SELECT d.id, d.job_id, d.reserved, d.check_id, j.account_id AS owner FROM leases d"
        f" JOIN jobs j ON j.id = d.job_id WHERE d.status = '{LeaseStatus.OUT}' AND d.deadline < ?" + tx.for_update,
        (now,),
    )
    if overdue:
        tx.script(_reservations(overdue, -1))
    for d in overdue:
        tx.execute(f"UPDATE leases SET status = '{LeaseStatus.EXPIRED}' WHERE id = ?", (d["id"],))
        if d["check_id"] is not None:
            continue  # a replay lease: its job runs on (its check waits again: store.verification.expire)
        job = job_row(tx, d["job_id"], lock=True)
        _change_job(tx, job["id"], rules.after_expiry(job["status"], job["kind"], _open_leases(tx, job)), now)
    return [d["id"] for d in overdue]


def set_price(tx, account_id: int, job_id: int, price: int) -> None:
    job = owned_job(tx, account_id, job_id, lock=True)
    if rules.is_over(job["status"]):
        raise Conflict(f"job {job_id} is {job['status']}; its price can no longer change")
    # a new price gives a held job another chance (``rules.unheld``)
    tx.execute("UPDATE jobs SET price = ?, status = ? WHERE id = ?", (price, rules.unheld(job["status"]), job_id))


def release_held(tx, account_id: int) -> int:
    """The owner's held jobs go back on the ready list to be re-checked (``rules.unheld``); the
    ledger does this on every credit (``accounts.release_held_statements``)."""
    ((statement, params),) = sql_accounts.release_held_statements([account_id])
    return tx.execute(statement, params)


def cancel_job(tx, account_id: int, job_id: int, now: float) -> dict[str, Any]:
    job = owned_job(tx, account_id, job_id, lock=True)
    if rules.is_over(job["status"]):
        raise Conflict(f"job {job_id} is already {job['status']}")
    tx.execute(
        "UPDATE jobs SET status = ?, finished_at = ?, outcome = ? WHERE id = ?",
        (JobStatus.CANCELLED, now, Outcome.ABORT, job_id),
    )
    return job_row(tx, job_id)


def list_jobs(tx, account_id: int) -> list[dict[str, Any]]:
    return tx.all(
        "SELECT id, kind, name, price, status, submitted_at, executed_ms, slices, progress, finished_at, outcome,"
        " error, verification, verification_note, hold_reason, cap,"
        # what a held job's reason quotes (``core.states``): the owner's money less reservations
        " (SELECT balance - reserved FROM accounts WHERE id = jobs.account_id) AS available"
        " FROM jobs WHERE account_id = ? ORDER BY id",
        (account_id,),
    )


# the jobs list (issue 19): each whitelisted sort key of ``core.listing`` and its column; a
# stored status sorts failed jobs with the finished ones (their word is computed, not stored)
_SORT_COLUMNS = {
    "id": "id",
    "name": "name",
    "status": "status",
    "price": "price",
    "progress": "progress",
    "submitted": "submitted_at",
}
_SUCCESS = tuple(str(o) for o in states.SUCCESSFUL)


def _like(text: str) -> str:
    """``text`` as a LIKE pattern matching it anywhere, its wildcards taken literally (ESCAPE '!')."""
    return "%" + text.replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%"


def page_of_jobs(tx, account_id: int, query: listing.JobQuery) -> dict[str, Any]:
    """One page of the account's jobs as ``query`` (already checked by ``core.listing.parse``)
    asks: ``{jobs, total}``. Only bound parameters come from the query; the ORDER BY column is
    taken from a fixed table by its whitelisted key; the id breaks ties so pages never overlap."""
    where = ["account_id = ?"]
    params: list[Any] = [account_id]
    if query.state == states.FAILED:
        where.append(f"status = ? AND outcome IS NOT NULL AND outcome NOT IN {marks(len(_SUCCESS))}")
        params += [JobStatus.FINISHED.value, *_SUCCESS]
    elif query.state == JobStatus.FINISHED:
        where.append(f"status = ? AND (outcome IS NULL OR outcome IN {marks(len(_SUCCESS))})")
        params += [JobStatus.FINISHED.value, *_SUCCESS]
    elif query.state:
        where.append("status = ?")
        params.append(JobStatus(query.state).value)
    if query.batch is not None:
        where.append("batch_id = ?")
        params.append(query.batch)
    if query.name:
        where.append("name LIKE ? ESCAPE '!'")
        params.append(_like(query.name))
    if query.search:
        words = query.search.lstrip("#")
        if words.isascii() and words.isdigit() and len(words) < 19:
            where.append("(id = ? OR name LIKE ? ESCAPE '!')")
            params += [int(words), _like(query.search)]
        else:
            where.append("(name LIKE ? ESCAPE '!' OR error LIKE ? ESCAPE '!')")
            params += [_like(query.search), _like(query.search)]
    condition = " AND ".join(where)
    total = tx.scalar(f"SELECT COUNT(*) FROM jobs WHERE {condition}", params)
    order = "DESC" if query.descending else "ASC"
    column = _SORT_COLUMNS[query.sort]
    rows = tx.all(
        "SELECT id, kind, name, price, status, submitted_at, executed_ms, slices, progress, finished_at, outcome,"
        " error, verification, verification_note, batch_id, hold_reason, cap,"
        " (SELECT balance - reserved FROM accounts WHERE id = jobs.account_id) AS available"
        f" FROM jobs WHERE {condition} ORDER BY {column} {order}, id {order} LIMIT ? OFFSET ?",
        [*params, query.per, query.offset],
    )
    return {"jobs": rows, "total": int(total or 0)}


def job_status(tx, account_id: int, job_id: int) -> dict[str, Any]:
    job = owned_job(tx, account_id, job_id)
    out = {
        k: job[k]
        for k in (
            "id",
            "kind",
            "name",
            "price",
            "status",
            "submitted_at",
            "executed_ms",
            "slices",
            "progress",
            "finished_at",
            "outcome",
            "error",
            "verification",
            "verification_note",
            "hold_reason",
            "cap",
        )
    }
    out["batch_id"], out["batch_index"] = job.get("batch_id"), job.get("batch_index")  # its batch page (issue 19)
    out["available"] = tx.scalar("SELECT balance - reserved FROM accounts WHERE id = ?", (job["account_id"],))
    out["last_slice"] = tx.one(
        "SELECT id, client_id, status, slice_status, checked_out_at, checked_in_at FROM leases"
        " WHERE job_id = ? ORDER BY id DESC LIMIT 1",
        (job_id,),
    )
    return out


def job_result(tx, account_id: int, job_id: int) -> dict[str, Any]:
    job = owned_job(tx, account_id, job_id)
    if not rules.is_over(job["status"]):
        raise Conflict(f"job {job_id} is {job['status']}; it has no result yet")
    return {
        "id": job_id,
        "kind": job["kind"],
        "status": job["status"],
        "outcome": job["outcome"],
        "result": job["result"],
        "error": job["error"],
        "verification": job["verification"],
        "verification_note": job["verification_note"],
    }


def lease_is_open(tx, lease_id: int) -> bool:
    """For a worker's polling: is its lease still wanted (the job not cancelled, lease not expired)?"""
    d = lease_row(tx, lease_id)
    if d["status"] != LeaseStatus.OUT:
        return False  # no need to read the job
    return rules.lease_is_wanted(d["status"], job_row(tx, d["job_id"])["status"])


def fail_lease(
    tx,
    lease_id: int,
    client_id: int,
    slice_status: str,
    message: str,
    now: float,
    nofreeze_strikes: int = rules.NOFREEZE_STRIKES,
) -> dict[str, Any]:
    """A slice that produced no usable state: reject the lease; the job keeps its committed state,
    unless the three-strikes rule (``rules.after_failure``) ends it.

    A slice that reached no freeze point (``rules.billed_failure``) is paid as an accepted slice
    would be, for the time the server measured (if it arrives in time), and ends the job once it
    happened ``nofreeze_strikes`` times."""
    lease = _lease_for_checkin(tx, lease_id, client_id)
    if lease["status"] != LeaseStatus.OUT:
        return _repeat(lease)
    if rules.billed_failure(lease["kind"], slice_status) and _verdict(lease, now) is Verdict.ACCEPT:
        answer = _reject_billed(tx, lease, now, slice_status)
    else:
        answer = _reject(tx, lease, now, slice_status)
    failures = tx.scalar(
        "SELECT COUNT(*) FROM leases WHERE job_id = ? AND slice_status = ?", (lease["job_id"], slice_status)
    )
    change = rules.after_failure(lease["kind"], slice_status, int(failures), nofreeze_strikes)
    _change_job(tx, lease["job_id"], change, now, message)
    return answer


def _reject_billed(tx, lease: dict[str, Any], now: float, slice_status: str) -> dict[str, Any]:
    """Reject a lease that brought no state but whose slice is paid (``rules.billed_failure``): the
    owner pays the lease's price for the measured time, the job's executed time counts it."""
    ms = _accepted_ms(lease, now)
    paid, payments = _settle([(lease, ms)], now)
    tx.script(
        [
            (
                f"UPDATE leases SET status = '{LeaseStatus.REJECTED}', checked_in_at = ?, slice_status = ?,"
                " accepted_ms = ?, paid = ? WHERE id = ?",
                (now, slice_status, ms, paid[lease["id"]], lease["id"]),
            ),
            (
                "UPDATE jobs SET executed_ms = executed_ms + ?, slices = slices + 1 WHERE id = ?",
                (ms, lease["job_id"]),
            ),
            *payments,
            *_reservations([lease], -1),
        ]
    )
    job = job_row(tx, lease["job_id"], lock=True)
    _change_job(tx, job["id"], rules.released(job["status"], job["kind"], _open_leases(tx, job)), now)
    return rules.answer(lease["id"], LeaseStatus.REJECTED, paid[lease["id"]], ms)


def competing_prices(tx) -> dict[int, int]:
    """{price: how many jobs} of the jobs competing now (ready or running): what a new price is
    measured against (``core.prices``)."""
    return {
        int(r["price"]): int(r["n"])
        for r in tx.all(
            f"SELECT price, COUNT(*) AS n FROM jobs WHERE status IN ('{JobStatus.READY}', '{JobStatus.RUNNING}')"
            " GROUP BY price"
        )
    }
