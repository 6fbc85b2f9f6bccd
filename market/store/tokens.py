"""SQL for a member's named API tokens and for password-reset links (both stored only as hashes)."""

from __future__ import annotations

import hmac
from typing import Any

from market.core.errors import Conflict, MarketError, NotFound
from market.core.text import unprintable
from market.store import caches

#: live (not revoked) API tokens an account may hold at once: a page lists them all, so it stays short
MAX_TOKENS = 20
#: how long a password-reset link works
RESET_SECONDS = 3600.0


def check_token_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip() or len(name) > 64 or unprintable(name):
        raise MarketError("a token name needs 1 to 64 printable characters, e.g. 'laptop' or 'ci'")
    return name.strip()


def create_api_token(tx, account_id: int, name: str, token_hash: str, now: float) -> int:
    """Store a new named token's hash; refuses a duplicate live name and more than MAX_TOKENS."""
    name = check_token_name(name)
    live = tx.all("SELECT name FROM api_tokens WHERE account_id = ? AND revoked_at IS NULL", (account_id,))
    if any(r["name"] == name for r in live):
        raise Conflict(f"you already have a token named {name!r} — pick another name or revoke that one")
    if len(live) >= MAX_TOKENS:
        raise Conflict(f"an account holds at most {MAX_TOKENS} tokens — revoke one you no longer use first")
    return tx.insert(
        "INSERT INTO api_tokens (account_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
        (account_id, name, token_hash, now),
    )


def list_api_tokens(tx, account_id: int) -> list[dict[str, Any]]:
    """The account's live tokens, newest first (never their hashes)."""
    return tx.all(
        "SELECT id, name, created_at, last_used FROM api_tokens WHERE account_id = ? AND revoked_at IS NULL"
        " ORDER BY id DESC",
        (account_id,),
    )


def revoke_api_token(tx, account_id: int, token_id: int, now: float) -> dict[str, Any]:
    """Revoke one of the account's live tokens; another account's token is 'no token' (NotFound)."""
    row = tx.one(
        "SELECT id, name FROM api_tokens WHERE id = ? AND account_id = ? AND revoked_at IS NULL",
        (token_id, account_id),
    )
    if row is None:
        raise NotFound(f"no token {token_id} in your account (already revoked?)")
    tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE id = ?", (now, token_id))
    caches.bump(tx, caches.CREDENTIALS)
    return row


def live_token(tx, account_id: int, token_hash: str) -> dict[str, Any] | None:
    """The account's live token with this hash, or None. Compared in Python with
    ``hmac.compare_digest`` against each of the (at most MAX_TOKENS) live hashes: timing-safe."""
    rows = tx.all(
        "SELECT id, name, token_hash FROM api_tokens WHERE account_id = ? AND revoked_at IS NULL", (account_id,)
    )
    found = None
    for row in rows:
        if hmac.compare_digest(row["token_hash"].encode(), token_hash.encode()):
            found = row
    return found


def touch_api_token(tx, token_id: int, now: float) -> None:
    tx.execute("UPDATE api_tokens SET last_used = ? WHERE id = ?", (now, token_id))


# -- password-reset links --------------------------------------------------------------------


def create_reset(tx, account_id: int, token_hash: str, now: float, seconds: float = RESET_SECONDS) -> None:
    """Store a reset link's hash; the account's earlier links (and everyone's expired ones) stop working."""
    tx.execute("DELETE FROM password_resets WHERE account_id = ? OR expires_at < ?", (account_id, now))
    tx.execute(
        "INSERT INTO password_resets (token_hash, account_id, created_at, expires_at) VALUES (?, ?, ?, ?)",
        (token_hash, account_id, now, now + seconds),
    )


def reset_account(tx, token_hash: str, now: float) -> int | None:
    """The account a live reset link is for, or None (unknown, used or expired)."""
    row = tx.one("SELECT account_id FROM password_resets WHERE token_hash = ? AND expires_at >= ?", (token_hash, now))
    return int(row["account_id"]) if row else None


def use_reset(tx, token_hash: str, now: float, password_hash: str) -> int:
    """Spend a reset link once: set the new password, end every session of the account, delete the
    link. Of two uses racing, the one that deletes the row wins; the other is refused."""
    account_id = reset_account(tx, token_hash, now)
    if account_id is None or not tx.execute("DELETE FROM password_resets WHERE token_hash = ?", (token_hash,)):
        raise NotFound("that password-reset link is not valid (used, expired or mistyped) — ask for a new one")
    tx.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id))
    tx.execute("DELETE FROM web_sessions WHERE account_id = ?", (account_id,))
    return account_id
