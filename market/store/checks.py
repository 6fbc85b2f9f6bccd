"""The one statement that opens replay checks of slices accepted in a check-in's own transaction.

Kept apart from ``market.store.verification`` (which reads leases through ``market.store.jobs``)
so that ``market.store.jobs`` can open checks in ``checkin_many`` without importing it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from market.core.verification import CheckKind, CheckStatus
from market.store.db import Many

__all__ = ["IN_DISPUTE", "SliceCheckRow", "checked_state", "slice_checks"]

#: SQL list of the statuses of a check in dispute: its worker's and first verifier's pay is held
#: while one is (``jobs.checkin_many``, ``jobs.release_held_pay``, docs/trust.md)
IN_DISPUTE = f"('{CheckStatus.DISPUTED}', '{CheckStatus.DECIDING}')"

_INSERT_CHECK = (
    "INSERT INTO checks (job_id, kind, reason, lease_id, worker_id, parent_state_id, state_id, target_sha256,"
    " mark, interpreter, steps, checked_ms, status, created_at)"
)
_INSERT_SLICE_CHECK = (
    "INSERT INTO checks (kind, status, job_id, reason, lease_id, worker_id, parent_state_id, target_sha256,"
    f" mark, interpreter, steps, checked_ms, created_at) VALUES ('{CheckKind.SLICE}', '{CheckStatus.WAITING}',"
    " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class SliceCheckRow(NamedTuple):
    """A check of a slice accepted in the same transaction (``jobs.checkin_many``). ``new_seq``:
    the seq of its new state, written earlier in the same script (named by the lease, not stored
    on the check: ``checked_state``)."""

    job_id: int
    reason: str
    lease_id: int
    worker_id: int
    parent_state_id: int
    new_seq: int
    target_sha256: str
    mark: str
    interpreter: str
    steps: int
    checked_ms: int
    created_at: float


def slice_checks(rows: Sequence[SliceCheckRow]) -> Many:
    """ONE statement opening the checks of slices accepted in the check-in's own transaction
    (what ``create_check`` writes for a slice, without its read of the lease: the check-in has
    just closed it as accepted).

    Its new state is not looked up here: ``state_id`` stays NULL and the check's lease names it
    (``leases.new_state_id``, set by the same script; :func:`checked_state` reads it). A lookup per
    row by ``(job_id, seq)`` was a third of what a check cost a MariaDB check-in in the worst case
    (every worker under watch, docs/trust.md "Check-in throughput"); the kind and status are
    constants of the SQL text, not parameters escaped per row."""
    return Many(
        _INSERT_SLICE_CHECK,
        [
            (
                r.job_id,
                r.reason,
                r.lease_id,
                r.worker_id,
                r.parent_state_id,
                r.target_sha256,
                (r.mark or "")[:255],
                r.interpreter[:64],
                int(r.steps),
                int(r.checked_ms),
                r.created_at,
            )
            for r in rows
        ],
    )


def checked_state(tx, check: dict) -> int | None:
    """The id of the state a slice check is about (None for a result check)."""
    if check.get("state_id") is not None:
        return int(check["state_id"])
    if check.get("kind") != CheckKind.SLICE:
        return None
    found = tx.scalar("SELECT new_state_id FROM leases WHERE id = ?", (check["lease_id"],))
    return None if found is None else int(found)
