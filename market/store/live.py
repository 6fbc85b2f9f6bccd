"""A job's live figures for its owner: progress, slices, execution time, cost so far and the
estimate of the rest (``market.core.progress``) — one read for the web's live job page, the RPC
``progress`` call and ``market status`` / ``market watch``."""

from __future__ import annotations

from typing import Any

from market.core import money, rules
from market.core.progress import estimate
from market.store.jobs import owned_job

__all__ = ["job_live"]


def job_live(tx, account_id: int, job_id: int) -> dict[str, Any]:
    """``{job, name, status, outcome, over, progress, slices, executed_seconds, price, cost,
    remaining_seconds, remaining_cost, total_cost, error}``; money as text like ``"5.20"``, an
    unknown estimate as None. Another member's job is 'no job' (``owned_job``)."""
    job = owned_job(tx, account_id, job_id)
    # a reversed lease's payment went back to the owner (docs/trust.md)
    paid = tx.scalar("SELECT SUM(paid) FROM leases WHERE job_id = ? AND reversed = 0", (job_id,)) or 0
    over = rules.is_over(job["status"])
    progress = job["progress"]
    if progress is not None:
        progress = min(max(float(progress), 0.0), 1.0)
    est = estimate(progress, int(job["executed_ms"] or 0), int(job["price"]), int(paid), over)

    def cents(value: int | None) -> str | None:
        return None if value is None else money.format_cents(value)

    return {
        "job": job_id,
        "name": job["name"],
        "status": job["status"],
        "outcome": job["outcome"] or "",
        "over": over,
        "progress": progress,
        "slices": int(job["slices"] or 0),
        "executed_seconds": int(job["executed_ms"] or 0) / 1000.0,
        "price": money.format_cents(job["price"]),
        "cost": cents(est.cost_cents),
        "remaining_seconds": est.remaining_seconds,
        "remaining_cost": cents(est.remaining_cents),
        "total_cost": cents(est.total_cents),
        "error": job["error"] or "",
    }
