"""SQL for the system report: id-ordered batches of clients, jobs and leases (the report's dispatch elements).

Each function reads one batch (``WHERE id > after ORDER BY id LIMIT n``) so the report writer can
run every batch in its own short transaction: a million-job market is never fetched at once and
no transaction holds the SQLite write lock (taken by ``BEGIN IMMEDIATE``) for long.
Rows are plain dicts; privacy (who may see an owner) is decided by ``market.report``, which gets
``account_id`` here only to compare it with the requester's.
"""

from __future__ import annotations

from typing import Any

BATCH = 5000

#: job kinds listed in the report; speed-probe jobs ('test') are the market's own business
REPORTED_KINDS = ("job", "task")


def client_batch(tx, after: int = 0, limit: int = BATCH) -> list[dict[str, Any]]:
    """Clients with id > ``after``, by id, each with its latest measured speed (or None)."""
    # Correlated subqueries walk the (client_id, measured_at) index once per client, so a client
    # with years of probe history costs the same as a fresh one.
    latest = "(SELECT s.{col} FROM speeds s WHERE s.client_id = c.id ORDER BY s.measured_at DESC, s.id DESC LIMIT 1)"
    return tx.all(
        "SELECT c.id, c.account_id, c.name, c.status, c.suspect, c.sandbox_level, "
        + latest.format(col="speed")
        + " AS speed, "
        + latest.format(col="measured_at")
        + " AS measured_at"
        " FROM clients c WHERE c.id > ? ORDER BY c.id LIMIT ?",
        (int(after), int(limit)),
    )


def job_batch(tx, after: int = 0, limit: int = BATCH) -> list[dict[str, Any]]:
    """Reported jobs (not speed probes) with id > ``after``, by id."""
    return tx.all(
        "SELECT id, account_id, kind, name, price, status, submitted_at, executed_ms, slices, outcome, verification,"
        " batch_id FROM jobs WHERE id > ? AND kind IN (?, ?) ORDER BY id LIMIT ?",
        (int(after), *REPORTED_KINDS, int(limit)),
    )


def lease_batch(tx, after: int = 0, limit: int = BATCH) -> list[dict[str, Any]]:
    """Dispatches of reported jobs with id > ``after``, by id."""
    return tx.all(
        "SELECT d.id, d.job_id, d.client_id, d.status, d.checked_out_at, d.deadline, d.checked_in_at, d.check_id"
        " FROM leases d JOIN jobs j ON j.id = d.job_id"
        " WHERE d.id > ? AND j.kind IN (?, ?) ORDER BY d.id LIMIT ?",
        (int(after), *REPORTED_KINDS, int(limit)),
    )


def requester_id(tx, name: str | None) -> int | None:
    """The id of account ``name`` (None for an anonymous report); NotFound if there is none."""
    if name is None:
        return None
    from market.store.accounts import account_by_name

    return int(account_by_name(tx, name)["id"])
