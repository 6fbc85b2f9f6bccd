"""A job's live figures for its owner: progress, slices, execution time, cost so far and the
estimate of the rest (``market.core.progress``) — one read for the web's live job page, the RPC
``progress`` call and ``market status`` / ``market watch``."""

from __future__ import annotations

from typing import Any

from market.core import money, rules
from market.core.progress import estimate
from market.store import batches as sql_batches
from market.store.jobs import owned_job

__all__ = ["job_live", "batch_live"]


def batch_live(tx, account_id: int, batch_id: int) -> dict[str, Any]:
    """A batch's live figures: ``{batch, over, jobs, size, progress, states, cost, estimate,
    slices, executed_seconds}`` — ``states`` counts its jobs by the words members read (failed
    apart from finished), ``estimate`` is the cost so far over the share done (None while
    unknown); ``over`` once every job was added and has ended. Another member's batch is 'no batch'."""
    s = sql_batches.summary(tx, account_id, batch_id)
    progress = min(max(float(s["progress"]), 0.0), 1.0)
    over = s["jobs"] >= s["size"] and all(rules.is_over(status) for status in s["counts"])
    return {
        "batch": batch_id,
        "over": over,
        "jobs": s["jobs"],
        "size": s["size"],
        "progress": progress,
        "states": {str(k): v for k, v in sorted(s["states"].items())},
        "cost": money.format_cents(s["paid"]),
        "estimate": money.format_cents(round(s["paid"] / progress)) if progress > 0 and not over else None,
        "slices": s["slices"],
        "executed_seconds": s["executed_ms"] / 1000.0,
    }


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
