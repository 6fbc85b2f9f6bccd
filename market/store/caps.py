"""Spending caps in SQL (``market.core.caps`` has the rule): setting a job's, a batch's or an
account's cap, and what each has spent under it. Window planning reads the same figures in
``jobs.ready_jobs``; a change of cap puts the held jobs under it back on the ready list
(``rules.unheld``) to be checked again at the next window."""

from __future__ import annotations

from typing import Any

from market.core import caps
from market.core.errors import NotFound
from market.core.rules import JobStatus, LeaseStatus
from market.store import accounts as sql_accounts
from market.store import batches as sql_batches

# what a lease has cost its job so far: what it paid, or what it reserved while it is open
LEASE_SPENT = f"l.paid + CASE WHEN l.status = '{LeaseStatus.OUT}' THEN l.reserved ELSE 0 END"
JOB_SPENT = f"(SELECT COALESCE(SUM({LEASE_SPENT}), 0) FROM leases l WHERE l.job_id = j.id)"
BATCH_SPENT = (
    f"(SELECT COALESCE(SUM({LEASE_SPENT}), 0) FROM leases l JOIN jobs bj ON bj.id = l.job_id"
    " WHERE bj.batch_id = j.batch_id)"
)
# an account's payments since its cap was first set (``cap_spent``, kept by every payment while
# the account has a cap: ``accounts.record_statements``), plus what its open leases reserve
ACCOUNT_SPENT = "(a.reserved + a.cap_spent)"


def _owned_job(tx, account_id: int, job_id: int, lock: bool = False) -> None:
    """As ``jobs.owned_job`` (which reads this module's figures, so it is not imported here)."""
    found = tx.scalar(
        "SELECT id FROM jobs WHERE id = ? AND account_id = ?" + (tx.for_update if lock else ""), (job_id, account_id)
    )
    if found is None:
        raise NotFound(f"no job {job_id} in your account — list yours with: market status")


def _release(tx, where: str, params: tuple[Any, ...]) -> int:
    return tx.execute(
        f"UPDATE jobs SET status = '{JobStatus.READY}', hold_reason = NULL"
        f" WHERE status = '{JobStatus.HELD}' AND {where}",
        params,
    )


def set_job_cap(tx, account_id: int, job_id: int, cap: int | None) -> None:
    """Set (or clear, None) a job's spending cap; a held job is checked again."""
    _owned_job(tx, account_id, job_id, lock=True)
    tx.execute("UPDATE jobs SET cap = ? WHERE id = ?", (cap, job_id))
    _release(tx, "id = ?", (job_id,))


def set_batch_cap(tx, account_id: int, batch_id: int, cap: int | None) -> None:
    """Set (or clear) a batch's spending cap (all its jobs together); its held jobs are checked again."""
    sql_batches.owned_batch(tx, account_id, batch_id, lock=True)
    tx.execute("UPDATE batches SET cap = ? WHERE id = ?", (cap, batch_id))
    _release(tx, "batch_id = ?", (batch_id,))


def set_account_cap(tx, account_id: int, cap: int | None, now: float) -> None:
    """Set (or clear) the account's spending cap. It counts from when a cap was first set: a
    change keeps that start, clearing forgets it. The account's held jobs are checked again."""
    sql_accounts.account_by_id(tx, account_id)
    tx.execute(
        "UPDATE accounts SET cap_spent = CASE WHEN cap IS NULL THEN 0 ELSE cap_spent END,"
        " cap_since = CASE WHEN ? IS NULL THEN NULL WHEN cap_since IS NULL THEN ? ELSE cap_since END,"
        " cap = ? WHERE id = ?",
        (cap, now, cap, account_id),
    )
    _release(tx, "account_id = ?", (account_id,))


def account_cap(tx, account_id: int) -> caps.Cap | None:
    """The account's cap and what it spent under it, or None without a cap."""
    row = tx.one(
        f"SELECT a.cap, {ACCOUNT_SPENT} AS spent FROM accounts a WHERE a.id = ? AND a.cap IS NOT NULL", (account_id,)
    )
    return None if row is None else caps.Cap(caps.ACCOUNT, int(row["cap"]), int(row["spent"]))


def job_cap(tx, account_id: int, job_id: int) -> caps.Cap | None:
    """The job's cap and what it spent under it, or None without a cap."""
    _owned_job(tx, account_id, job_id)
    row = tx.one(f"SELECT j.cap, {JOB_SPENT} AS spent FROM jobs j WHERE j.id = ? AND j.cap IS NOT NULL", (job_id,))
    return None if row is None else caps.Cap(caps.JOB, int(row["cap"]), int(row["spent"]))


def batch_cap(tx, account_id: int, batch_id: int) -> caps.Cap | None:
    """The batch's cap and what its jobs spent under it, or None without a cap."""
    sql_batches.owned_batch(tx, account_id, batch_id)
    row = tx.one(
        f"SELECT b.cap, (SELECT COALESCE(SUM({LEASE_SPENT}), 0) FROM leases l JOIN jobs bj ON bj.id = l.job_id"
        " WHERE bj.batch_id = b.id) AS spent FROM batches b WHERE b.id = ? AND b.cap IS NOT NULL",
        (batch_id,),
    )
    return None if row is None else caps.Cap(caps.BATCH, int(row["cap"]), int(row["spent"]))
