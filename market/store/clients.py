"""SQL for computation clients and their measured speeds."""

from __future__ import annotations

from typing import Any

from market.core.errors import Conflict, NotFound
from market.store import caches
from market.store.accounts import check_name


def register_client(tx, account_id: int, name: str, token_hash: str, now: float) -> int:
    check_name(name, "client name")
    if tx.one("SELECT id FROM clients WHERE account_id = ? AND name = ?", (account_id, name)):
        raise Conflict(f"this account already has a client named {name!r} — pick another name")
    return tx.insert(
        "INSERT INTO clients (account_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        (account_id, name, token_hash, now),
    )


def client_by_id(tx, client_id: int) -> dict[str, Any]:
    row = tx.one("SELECT * FROM clients WHERE id = ?", (client_id,))
    if row is None:
        raise NotFound(f"no client {client_id} — register one with: market client register ACCOUNT")
    return row


def list_clients(tx, account_id: int | None = None) -> list[dict[str, Any]]:
    sql = (
        "SELECT c.id, c.name, c.account_id, a.name AS account, c.status, c.suspect, c.sandbox_level,"
        " c.created_at, c.last_seen, c.revoked_at FROM clients c JOIN accounts a ON a.id = c.account_id"
    )
    if account_id is None:
        return tx.all(sql + " ORDER BY c.id")
    return tx.all(sql + " WHERE c.account_id = ? ORDER BY c.id", (account_id,))


def revoke_client(tx, client_id: int, now: float, account_id: int | None = None) -> dict[str, Any]:
    """Revoke a client for good (an operator's, or its owner's when ``account_id`` is given): its
    token is refused from now on; its open leases are left to expire and be re-leased."""
    row = client_by_id(tx, client_id)
    if account_id is not None and row["account_id"] != account_id:
        raise NotFound(f"no client {client_id} in your account")
    if row["revoked_at"] is not None:
        raise Conflict(f"client {client_id} is already revoked")
    tx.execute("UPDATE clients SET revoked_at = ? WHERE id = ?", (now, client_id))
    caches.bump(tx, caches.CLIENTS, caches.CREDENTIALS)
    return client_by_id(tx, client_id)


def touch_client(tx, client_id: int, now: float, sandbox_level: str | None = None) -> None:
    if sandbox_level is None:
        tx.execute("UPDATE clients SET last_seen = ?, status = 'active' WHERE id = ?", (now, client_id))
    else:
        tx.execute(
            "UPDATE clients SET last_seen = ?, status = 'active', sandbox_level = ? WHERE id = ?",
            (now, sandbox_level, client_id),
        )


def mark_suspect(tx, client_id: int) -> None:
    tx.execute("UPDATE clients SET suspect = 1 WHERE id = ?", (client_id,))
    caches.bump(tx, caches.CLIENTS)


def record_speed(tx, client_id: int, operations: int, seconds: float, now: float) -> float:
    speed = operations / seconds if seconds > 0 else 0.0
    tx.insert(
        "INSERT INTO speeds (client_id, speed, operations, seconds, measured_at) VALUES (?, ?, ?, ?, ?)",
        (client_id, speed, operations, seconds, now),
    )
    caches.bump(tx, caches.CLIENTS)
    return speed


def last_speed(tx, client_id: int) -> dict[str, Any] | None:
    return tx.one(
        "SELECT speed, measured_at FROM speeds WHERE client_id = ? ORDER BY measured_at DESC, id DESC LIMIT 1",
        (client_id,),
    )
