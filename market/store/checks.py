"""The one statement that opens replay checks of slices accepted in a check-in's own transaction.

Kept apart from ``market.store.verification`` (which reads leases through ``market.store.jobs``)
so that ``market.store.jobs`` can open checks in ``checkin_many`` without importing it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from market.core.verification import CheckKind, CheckStatus
from market.store.db import Many

__all__ = ["SliceCheckRow", "slice_checks"]

_INSERT_CHECK = (
    "INSERT INTO checks (job_id, kind, reason, lease_id, worker_id, parent_state_id, state_id, target_sha256,"
    " mark, interpreter, steps, checked_ms, status, created_at)"
)


class SliceCheckRow(NamedTuple):
    """A check of a slice accepted in the same transaction (``jobs.checkin_many``): its new
    state is found by ``(job_id, new_seq)``, written earlier in the same script."""

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
    just closed it as accepted)."""
    return Many(
        _INSERT_CHECK + " VALUES (?, ?, ?, ?, ?, ?, (SELECT s.id FROM states s WHERE s.job_id = ? AND s.seq = ?),"
        " ?, ?, ?, ?, ?, ?, ?)",
        [
            (
                r.job_id,
                CheckKind.SLICE,
                r.reason,
                r.lease_id,
                r.worker_id,
                r.parent_state_id,
                r.job_id,
                r.new_seq,
                r.target_sha256,
                (r.mark or "")[:255],
                r.interpreter[:64],
                int(r.steps),
                int(r.checked_ms),
                CheckStatus.WAITING,
                r.created_at,
            )
            for r in rows
        ],
    )
