"""E-mail on finish or failure, in SQL: which ended jobs and batches to mail about, each claimed
once (``notified``) in the transaction that reads it, so no job or batch is ever mailed twice.
What a mail says is ``market.core.notices``'; sending is the site's notifier's
(``market.web.notify``), after the transaction."""

from __future__ import annotations

from collections import Counter
from typing import Any

from market.core import states
from market.core.rules import OVER
from market.store.db import marks

_ENDED = "(" + ", ".join(f"'{s}'" for s in sorted(OVER)) + ")"


def set_notify(tx, account_id: int, on: bool) -> None:
    """Turn the account's e-mail on finish or failure on or off."""
    tx.execute("UPDATE accounts SET notify = ? WHERE id = ?", (1 if on else 0, account_id))


def notify_of(tx, account_id: int) -> bool:
    return bool(tx.scalar("SELECT notify FROM accounts WHERE id = ?", (account_id,)))


def claim(tx, limit: int = 100) -> list[dict[str, Any]]:
    """Claim up to ``limit`` jobs that ended since the last claim (each once, mailed or not) and
    answer the notices their owners asked for: ``{"kind": "job", "to", "job"}`` for a job of no
    batch that finished or failed, ``{"kind": "batch", "to", "batch", "counts"}`` once for a batch
    whose last job ended (``counts``: its jobs by the words members read). Cancelled jobs end
    without a mail of their own."""
    rows = tx.all(
        "SELECT j.id, j.kind, j.name, j.status, j.outcome, j.error, j.verification, j.batch_id,"
        " a.notify, a.email,"
        " (SELECT COALESCE(SUM(l.paid), 0) FROM leases l WHERE l.job_id = j.id) AS paid"
        " FROM jobs j JOIN accounts a ON a.id = j.account_id"
        f" WHERE j.notified = 0 AND j.status IN {_ENDED} ORDER BY j.id LIMIT ?" + tx.for_update,
        (int(limit),),
    )
    if not rows:
        return []
    tx.execute(f"UPDATE jobs SET notified = 1 WHERE id IN {marks(len(rows))}", [r["id"] for r in rows])
    notices: list[dict[str, Any]] = []
    for r in rows:
        if r["batch_id"] is None and r["notify"] and r["status"] != "cancelled":
            notices.append({"kind": "job", "to": r["email"], "job": r})
    for batch_id in sorted({r["batch_id"] for r in rows if r["batch_id"] is not None}):
        notice = _batch_notice(tx, batch_id)
        if notice is not None:
            notices.append(notice)
    return notices


def _batch_notice(tx, batch_id: int) -> dict[str, Any] | None:
    """Claim the batch if all its jobs ended (and all were added); its notice if its owner asked."""
    batch = tx.one(
        "SELECT b.id, b.name, b.size, b.notified, a.notify, a.email"
        " FROM batches b JOIN accounts a ON a.id = b.account_id"
        " WHERE b.id = ?" + tx.for_update,
        (batch_id,),
    )
    if batch is None or batch["notified"]:
        return None
    groups = tx.all(
        "SELECT status, outcome, COUNT(*) AS n FROM jobs WHERE batch_id = ? GROUP BY status, outcome", (batch_id,)
    )
    if sum(int(g["n"]) for g in groups) < int(batch["size"]) or any(g["status"] not in OVER for g in groups):
        return None
    tx.execute("UPDATE batches SET notified = 1 WHERE id = ?", (batch_id,))
    if not batch["notify"]:
        return None
    counts: Counter[str] = Counter()
    for g in groups:
        counts[states.job_state(g["status"], g["outcome"]).status] += int(g["n"])
    paid = tx.scalar(
        "SELECT COALESCE(SUM(l.paid), 0) FROM leases l JOIN jobs j ON j.id = l.job_id WHERE j.batch_id = ?", (batch_id,)
    )
    return {"kind": "batch", "to": batch["email"], "batch": {**batch, "paid": int(paid or 0)}, "counts": dict(counts)}
