"""SQL the web site needs beyond accounts, clients and jobs: session clean-up and job events.

A job's history is read back from what the market already records (its submission and finish
times, and every dispatch of its states), so the feed of job state changes needs no table of its own.
"""

from __future__ import annotations

from typing import Any

from market.core.errors import NotFound


def end_other_sessions(tx, account_id: int, keep_token_hash: str | None) -> int:
    """Log the account out everywhere except the session ``keep_token_hash`` (after a password change)."""
    return tx.execute(
        "DELETE FROM web_sessions WHERE account_id = ? AND token_hash <> ?", (account_id, keep_token_hash or "")
    )


def owned_client(tx, account_id: int, client_id: int) -> dict[str, Any]:
    """The client with its latest speed, if this account owns it; otherwise 'no client'."""
    row = tx.one(
        "SELECT id, name, status, suspect, sandbox_level, created_at, last_seen FROM clients"
        " WHERE id = ? AND account_id = ?",
        (client_id, account_id),
    )
    if row is None:
        raise NotFound(f"no client {client_id} in your account")
    speed = tx.one(
        "SELECT speed, measured_at FROM speeds WHERE client_id = ? ORDER BY measured_at DESC, id DESC LIMIT 1",
        (client_id,),
    )
    row["speed"] = speed["speed"] if speed else None
    row["measured_at"] = speed["measured_at"] if speed else None
    return row


def client_speeds(tx, account_id: int) -> dict[int, float]:
    """Each of the account's clients' latest measured speed, by client id (clients never measured are absent)."""
    rows = tx.all(
        "SELECT c.id, (SELECT s.speed FROM speeds s WHERE s.client_id = c.id"
        " ORDER BY s.measured_at DESC, s.id DESC LIMIT 1) AS speed FROM clients c WHERE c.account_id = ?",
        (account_id,),
    )
    return {r["id"]: r["speed"] for r in rows if r["speed"] is not None}


def job_events(tx, account_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The newest state changes of the account's jobs, newest first.

    Each event is ``{job_id, name, at, event, detail}``; events are: submitted, slice (a state
    checked back in or refused), finished, cancelled.
    """
    limit = int(limit)
    events: list[dict[str, Any]] = []
    for row in tx.all(
        "SELECT id, name, submitted_at, finished_at, status, outcome FROM jobs"
        " WHERE account_id = ? ORDER BY id DESC LIMIT ?",
        (account_id, limit),
    ):
        events.append(
            {"job_id": row["id"], "name": row["name"], "at": row["submitted_at"], "event": "submitted", "detail": ""}
        )
        if row["finished_at"] is not None:
            event = "cancelled" if row["status"] == "cancelled" else "finished"
            events.append(
                {
                    "job_id": row["id"],
                    "name": row["name"],
                    "at": row["finished_at"],
                    "event": event,
                    "detail": row["outcome"] or "",
                }
            )
    for row in tx.all(
        "SELECT d.id, d.job_id, j.name, d.checked_in_at, d.deadline, d.status FROM leases d"
        " JOIN jobs j ON j.id = d.job_id WHERE j.account_id = ? AND d.status <> 'out'"
        " AND d.status <> 'finished' ORDER BY d.id DESC LIMIT ?",
        (account_id, limit),
    ):
        at = row["checked_in_at"] if row["checked_in_at"] is not None else row["deadline"]
        events.append(
            {
                "job_id": row["job_id"],
                "name": row["name"],
                "at": at,
                "event": "slice",
                "detail": f"slice {row['id']} {row['status']}",
            }
        )
    events.sort(key=lambda e: (e["at"], e["job_id"]), reverse=True)
    return events[:limit]
