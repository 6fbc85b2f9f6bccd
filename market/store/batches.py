"""SQL for batches (parameter sweeps): one module, function and price, one job per argument set.

A batch is created empty (:func:`create_batch`, after its module was checked once) and filled in
bounded chunks (:func:`add_jobs`, one transaction each): no transaction ever holds a whole batch
of 10,000 jobs. Each job of a batch is an ordinary job (``jobs.batch_id``, its place in the batch
``jobs.batch_index``): dispatch, check-in, payment and results need nothing new. Cancel and price
act on every job of the batch that is not over, in one statement.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from market.core import rules, states
from market.core.errors import Conflict, MarketError, NotFound
from market.core.rules import JobKind, JobStatus, Outcome, StateStatus
from market.core.text import unprintable
from market.store.db import Many
from market.tasklet import envelope

_OVER = "(" + ", ".join(f"'{s}'" for s in sorted(rules.OVER)) + ")"


def create_batch(tx, account_id: int, name: str, source: str, entry: str, price: int, size: int, now: float) -> int:
    """An empty batch of ``size`` jobs to come (:func:`add_jobs`); returns its id."""
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise MarketError("a batch needs a name of 1 to 100 characters")
    if (bad := unprintable(name.strip())) is not None:
        raise MarketError(f"a batch name may not contain control or bidirectional characters (it has {bad})")
    return tx.insert(
        "INSERT INTO batches (account_id, name, source, entry, source_sha256, price, size, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (account_id, name.strip(), source, entry, envelope.source_hash(source), price, size, now),
    )


def owned_batch(tx, account_id: int, batch_id: int, lock: bool = False) -> dict[str, Any]:
    """The batch, if this account owns it; otherwise 'no batch' (never reveal other members' batches)."""
    row = tx.one(
        "SELECT * FROM batches WHERE id = ? AND account_id = ?" + (tx.for_update if lock else ""),
        (batch_id, account_id),
    )
    if row is None:
        raise NotFound(f"no batch {batch_id} in your account — list yours with: market batch status")
    return row


def add_jobs(
    tx, account_id: int, batch_id: int, source_sha256: str, states: Sequence[tuple[Any, bytes, str]], now: float
) -> list[int]:
    """Append jobs to a batch, one per initial state, each ready at once; returns their ids in order.

    ``states``: (header, payload, payload sha256) of each state #0, read and checked against the
    batch's module (``source_sha256``) outside the transaction (:func:`market.jobs.batches.read_states`);
    here each gets its job id stamped into its header. The caller bounds how many come at once."""
    batch = owned_batch(tx, account_id, batch_id, lock=True)
    have = tx.scalar("SELECT COUNT(*) FROM jobs WHERE batch_id = ?", (batch_id,)) or 0
    if have + len(states) > batch["size"]:
        raise Conflict(
            f"batch {batch_id} was created for {batch['size']:,} jobs and has {have:,}; {len(states):,} more do not fit"
        )
    if source_sha256 != batch["source_sha256"]:
        raise MarketError(f"these states were not made from batch {batch_id}'s module")
    name = batch["name"]
    ids: list[int] = []
    for i in range(len(states)):
        index = have + i
        ids.append(
            tx.insert(
                "INSERT INTO jobs (account_id, kind, name, price, source, source_sha256, entry, status, submitted_at,"
                f" batch_id, batch_index) VALUES (?, '{JobKind.JOB}', ?, ?, ?, ?, ?, '{JobStatus.NEW}', ?, ?, ?)",
                (
                    account_id,
                    f"{name} #{index + 1}",
                    batch["price"],
                    batch["source"],
                    batch["source_sha256"],
                    batch["entry"],
                    now,
                    batch_id,
                    index,
                ),
            )
        )
    rows = []
    for job_id, (header, payload, payload_sha256) in zip(ids, states):
        if header.entry != batch["entry"]:
            raise MarketError(f"these states call {header.entry}, batch {batch_id} calls {batch['entry']}")
        stamped = envelope.make_envelope(header._replace(job_id=job_id), payload)
        rows.append((job_id, stamped, now, envelope.digest(stamped), payload_sha256))
    tx.script(
        [
            Many(
                "INSERT INTO states (job_id, seq, data, status, created_at, digest, payload_sha256)"
                f" VALUES (?, 0, ?, '{StateStatus.COMMITTED}', ?, ?, ?)",
                rows,
            )
        ]
    )
    tx.execute(
        f"UPDATE jobs SET status = '{JobStatus.READY}', seq = 0 WHERE batch_id = ? AND status = '{JobStatus.NEW}'",
        (batch_id,),
    )
    return ids


def list_batches(tx, account_id: int) -> list[dict[str, Any]]:
    return tx.all(
        "SELECT id, name, entry, price, size, created_at FROM batches WHERE account_id = ? ORDER BY id",
        (account_id,),
    )


def summary(tx, account_id: int, batch_id: int) -> dict[str, Any]:
    """The batch with its aggregate progress: jobs per stored status (``counts``), per the status
    word members read (``states``: failed apart from finished) and per outcome, executed
    milliseconds, slices, the credits paid so far, and the mean progress of its jobs (a finished
    job counts 1)."""
    batch = owned_batch(tx, account_id, batch_id)
    batch.pop("source")
    counts = {
        r["status"]: int(r["n"])
        for r in tx.all("SELECT status, COUNT(*) AS n FROM jobs WHERE batch_id = ? GROUP BY status", (batch_id,))
    }
    groups = tx.all(
        "SELECT status, outcome, COUNT(*) AS n FROM jobs WHERE batch_id = ? GROUP BY status, outcome", (batch_id,)
    )
    outcomes: dict[str, int] = {}
    # the words members read (core.states): a job that ended without its result is 'failed'
    words: dict[str, int] = {}
    for g in groups:
        if g["outcome"] is not None:
            outcomes[g["outcome"]] = outcomes.get(g["outcome"], 0) + int(g["n"])
        word = states.job_state(g["status"], g["outcome"]).status
        words[word] = words.get(word, 0) + int(g["n"])
    totals = tx.one(
        "SELECT COUNT(*) AS jobs, COALESCE(SUM(executed_ms), 0) AS executed_ms, COALESCE(SUM(slices), 0) AS slices,"
        f" COALESCE(SUM(CASE WHEN status = '{JobStatus.FINISHED}' THEN 1.0 ELSE COALESCE(progress, 0) END), 0)"
        " AS done FROM jobs WHERE batch_id = ?",
        (batch_id,),
    )
    paid = tx.scalar(
        "SELECT COALESCE(SUM(l.paid), 0) FROM leases l JOIN jobs j ON j.id = l.job_id WHERE j.batch_id = ?",
        (batch_id,),
    )
    jobs = int(totals["jobs"] or 0)
    return {
        **batch,
        "jobs": jobs,
        "counts": counts,
        "states": words,
        "outcomes": outcomes,
        "executed_ms": int(totals["executed_ms"] or 0),
        "slices": int(totals["slices"] or 0),
        "progress": (float(totals["done"] or 0) / jobs) if jobs else 0.0,
        "paid": int(paid or 0),
    }


def batch_jobs(tx, account_id: int, batch_id: int, offset: int, limit: int) -> list[dict[str, Any]]:
    """One page of the batch's jobs, in argument-set order."""
    owned_batch(tx, account_id, batch_id)
    return tx.all(
        "SELECT id, batch_index, name, price, status, executed_ms, slices, progress, outcome, error,"
        " verification, verification_note FROM jobs WHERE batch_id = ? ORDER BY batch_index LIMIT ? OFFSET ?",
        (batch_id, limit, offset),
    )


def batch_results(tx, account_id: int, batch_id: int, after: int, limit: int) -> list[dict[str, Any]]:
    """The next ``limit`` jobs after argument set ``after`` (-1 for the first), with their results."""
    owned_batch(tx, account_id, batch_id)
    return tx.all(
        "SELECT id, batch_index, status, outcome, error, result, verification, verification_note FROM jobs"
        " WHERE batch_id = ? AND batch_index > ? ORDER BY batch_index LIMIT ?",
        (batch_id, after, limit),
    )


def cancel_batch(tx, account_id: int, batch_id: int, now: float) -> int:
    """Cancel every job of the batch that is not over; returns how many. (Their running slices
    learn it from ``alive`` as for one cancelled job.)"""
    owned_batch(tx, account_id, batch_id, lock=True)
    return tx.execute(
        f"UPDATE jobs SET status = ?, finished_at = ?, outcome = ? WHERE batch_id = ? AND status NOT IN {_OVER}",
        (JobStatus.CANCELLED, now, Outcome.ABORT, batch_id),
    )


def price_batch(tx, account_id: int, batch_id: int, price: int) -> int:
    """A new price for every job of the batch that is not over (a held one goes back on the ready
    list, ``rules.unheld``) and for the batch; returns how many jobs."""
    owned_batch(tx, account_id, batch_id, lock=True)
    tx.execute("UPDATE batches SET price = ? WHERE id = ?", (price, batch_id))
    changed = tx.execute(f"UPDATE jobs SET price = ? WHERE batch_id = ? AND status NOT IN {_OVER}", (price, batch_id))
    tx.execute(
        f"UPDATE jobs SET status = '{JobStatus.READY}' WHERE batch_id = ? AND status = '{JobStatus.HELD}'",
        (batch_id,),
    )
    return changed
