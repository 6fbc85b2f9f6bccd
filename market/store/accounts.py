"""SQL for accounts, the ledger and web sessions."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from market.core import ledger, money
from market.core.errors import Conflict, MarketError, NotFound
from market.core.rules import JobStatus, LeaseStatus
from market.core.text import unprintable
from market.store import caches
from market.store.db import Many, case, marks

NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{1,31}$")
EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,190}\.[A-Za-z]{2,}$")


def check_name(name: str, what: str = "account name") -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise MarketError(
            f"{what} {name!r} is not allowed — use 2 to 32 lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def check_email(email: str) -> str:
    # control characters are not whitespace to the pattern, and an address is shown in mail headers and tables
    if not isinstance(email, str) or not EMAIL.match(email) or unprintable(email):
        raise MarketError(f"{email!r} does not look like an e-mail address (name@example.org)")
    return email


def create_account(
    tx, name: str, email: str, password_hash: str, now: float, confirm_token_hash: str | None, grant_cents: int = 0
) -> int:
    """Create an account: unconfirmed (with its confirmation token's hash) or, without one, confirmed.

    A confirmed account gets its starting grant ``grant_cents`` now; an unconfirmed one when it is
    confirmed (:func:`confirm_account`), so signing up strangers' names mints no money.
    """
    check_name(name)
    check_email(email)
    if tx.one("SELECT id FROM accounts WHERE name = ?", (name,)):
        raise Conflict(f"an account named {name!r} already exists — pick another name")
    pending = int(grant_cents) if confirm_token_hash else 0
    values = [name, email, password_hash, 0 if confirm_token_hash else 1, confirm_token_hash, now]
    # the column is named only when it holds something (so this also writes a pre-v4 schema, as
    # the upgrade tests build one)
    more = ", pending_grant" if pending else ""
    account_id = tx.insert(
        f"INSERT INTO accounts (name, email, password_hash, confirmed, confirm_token_hash, created_at{more})"
        f" VALUES (?, ?, ?, ?, ?, ?{', ?' if pending else ''})",
        values + ([pending] if pending else []),
    )
    if grant_cents and not confirm_token_hash:
        post(tx, ledger.grant(account_id, grant_cents, STARTING_GRANT), now)
    return account_id


#: the memo of the ledger entry that pays an account's starting grant
STARTING_GRANT = "starting grant"


def account_by_name(tx, name: str, lock: bool = False) -> dict[str, Any]:
    row = tx.one("SELECT * FROM accounts WHERE name = ?" + (tx.for_update if lock else ""), (name,))
    if row is None:
        raise NotFound(f"no account {name!r} — create it with: market account create {name} --email ADDRESS")
    return row


def account_by_id(tx, account_id: int, lock: bool = False) -> dict[str, Any]:
    row = tx.one("SELECT * FROM accounts WHERE id = ?" + (tx.for_update if lock else ""), (account_id,))
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    return row


def account_by_token_hash(tx, token_hash: str) -> dict[str, Any] | None:
    return tx.one("SELECT * FROM accounts WHERE api_token_hash = ?", (token_hash,))


def list_accounts(tx) -> list[dict[str, Any]]:
    return tx.all(
        "SELECT id, name, email, confirmed, balance, pending_grant, created_at, disabled_at FROM accounts ORDER BY id"
    )


def confirm_account(tx, token_hash: str, now: float) -> dict[str, Any]:
    """Confirm the account whose confirmation token has this hash, and pay its starting grant."""
    row = tx.one("SELECT * FROM accounts WHERE confirm_token_hash = ?" + tx.for_update, (token_hash,))
    if row is None:
        raise NotFound("that confirmation link is not valid (already used, or mistyped) — log in or sign up again")
    _confirm(tx, row, now)
    return row


def confirm_account_by_name(tx, name: str, now: float) -> None:
    """Confirm an account as administrator (no token needed), paying its starting grant if it waits."""
    _confirm(tx, account_by_name(tx, name, lock=True), now)


def _confirm(tx, account: dict[str, Any], now: float) -> None:
    # WHERE confirmed = 0: of two confirmations racing, one changes the row and pays; the other neither
    changed = tx.execute(
        "UPDATE accounts SET confirmed = 1, confirm_token_hash = NULL, pending_grant = 0"
        " WHERE id = ? AND confirmed = 0",
        (account["id"],),
    )
    if changed:
        caches.bump(tx, caches.CREDENTIALS)
    if changed and int(account.get("pending_grant") or 0) > 0:
        post(tx, ledger.grant(account["id"], int(account["pending_grant"]), STARTING_GRANT), now)


def set_password_hash(tx, account_id: int, password_hash: str) -> None:
    tx.execute("UPDATE accounts SET password_hash = ? WHERE id = ?", (password_hash, account_id))


def set_confirm_token_hash(tx, account_id: int, token_hash: str) -> bool:
    """A new confirmation link for a still unconfirmed account (the old one stops working);
    False if the account is confirmed already."""
    return bool(
        tx.execute(
            "UPDATE accounts SET confirm_token_hash = ? WHERE id = ? AND confirmed = 0", (token_hash, account_id)
        )
    )


def accounts_by_email(tx, email: str, limit: int = 5) -> list[dict[str, Any]]:
    """The accounts (at most ``limit``) registered with this e-mail address."""
    return tx.all("SELECT * FROM accounts WHERE email = ? ORDER BY id LIMIT ?", (email, int(limit)))


def set_disabled(tx, name: str, now: float | None) -> dict[str, Any]:
    """Disable (``now``) or enable (None) an account as operator. Disabling logs it out of the web
    and holds its ready jobs at once (``jobs.ready_jobs`` never offers them again while it is
    disabled: their lease-outs would pay its clients and spend its money); enabling puts its held
    jobs back on the ready list, to be checked at the next window."""
    account = account_by_name(tx, name, lock=True)
    tx.execute("UPDATE accounts SET disabled_at = ? WHERE id = ?", (now, account["id"]))
    caches.bump(tx, caches.CREDENTIALS)
    if now is not None:
        tx.execute("DELETE FROM web_sessions WHERE account_id = ?", (account["id"],))
        tx.execute(
            f"UPDATE jobs SET status = '{JobStatus.HELD}', hold_reason = NULL"
            f" WHERE status = '{JobStatus.READY}' AND account_id = ?",
            (account["id"],),
        )
    else:
        tx.script(release_held_statements([account["id"]]))
    return account_by_id(tx, account["id"])


def set_api_token_hash(tx, account_id: int, token_hash: str) -> None:
    tx.execute("UPDATE accounts SET api_token_hash = ? WHERE id = ?", (token_hash, account_id))
    caches.bump(tx, caches.CREDENTIALS)


# -- ledger ----------------------------------------------------------------------------------


def post(tx, entry: ledger.Entry, now: float, lease_id: int | None = None) -> None:
    """Write one checked ledger entry and move the balances, in the caller's transaction."""
    balances = _existing(tx, entry.debit_account, entry.credit_account)
    ledger.apply(balances, entry)  # refuses to overdraw
    record(tx, [(entry, lease_id)], now)


def _existing(tx, *account_ids: int | None) -> dict[int, int]:
    balances = balances_for_update(tx, [a for a in account_ids if a is not None])
    for account_id in account_ids:
        if account_id is not None and account_id not in balances:
            raise NotFound(f"no account with id {account_id}")
    return balances


def balances_for_update(tx, account_ids: Iterable[int]) -> dict[int, int]:
    """Lock these accounts (MariaDB row locks; SQLite's writer lock is already held) and return
    their balances: whatever the caller then checks with ``ledger.apply`` cannot change under it."""
    (locked,) = tx.script(lock_statements(tx, account_ids, "balance")) or [[]]
    return {r["id"]: int(r["balance"]) for r in locked or []}


def lock_statements(tx, account_ids: Iterable[int], columns: str = "") -> list[Any]:
    """THE way a transaction locks account rows, wherever it changes two or more of them (a
    payment moves money from the job's owner to the worker's owner, a reversal back, a fee to
    the market): every id at once, in ascending id order (``SELECT ... WHERE id IN (sorted) ORDER
    BY id FOR UPDATE`` walks the primary key in that order), and before any other row it will
    lock, so two transactions over the same accounts queue instead of deadlocking. Returns the
    statement (for ``tx.script``, to share a round trip), none for no accounts; ``columns``: more
    to read than the id."""
    ids = sorted({int(a) for a in account_ids if a is not None})
    if not ids:
        return []
    more = f", {columns}" if columns else ""
    return [(f"SELECT id{more} FROM accounts WHERE id IN {marks(len(ids))} ORDER BY id" + tx.for_update, ids)]


def record(tx, postings: Sequence[tuple[ledger.Entry, int | None]], now: float) -> None:
    """Write entries already checked by ``ledger.apply`` against ``balances_for_update``."""
    tx.script(record_statements(postings, now))


def record_statements(postings: Sequence[tuple[ledger.Entry, int | None]], now: float) -> list[Any]:
    """The statements that write ``(entry, dispatch id)`` postings: one multi-row ledger insert
    and one balance update, however many entries (a batch of check-ins); none for no postings."""
    if not postings:
        return []
    deltas: dict[int, int] = defaultdict(int)
    for entry, _ in postings:
        if entry.debit_account is not None:
            deltas[entry.debit_account] -= entry.amount
        deltas[entry.credit_account] += entry.amount
    by_account, params = case("id", dict(deltas), "0")
    credited = [e.credit_account for e, _ in postings if e.amount > 0]
    # what each payer paid, counted against its account's spending cap (core.caps) while it has one
    payments: dict[int, int] = defaultdict(int)
    for entry, _ in postings:
        if entry.kind == "payment" and entry.debit_account is not None and entry.amount > 0:
            payments[entry.debit_account] += entry.amount
    capped = []
    if payments:
        paid_by, paid_params = case("id", dict(payments), "0")
        capped = [
            (
                f"UPDATE accounts SET cap_spent = cap_spent + {paid_by}"
                f" WHERE cap IS NOT NULL AND id IN {marks(len(payments))}",
                [*paid_params, *payments],
            )
        ]
    return [
        Many(
            "INSERT INTO ledger (at, debit_account, credit_account, amount, kind, lease_id, memo)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (now, e.debit_account, e.credit_account, e.amount, e.kind, lease_id, e.memo[:255])
                for e, lease_id in postings
            ],
        ),
        (f"UPDATE accounts SET balance = balance + {by_account} WHERE id IN {marks(len(deltas))}", [*params, *deltas]),
        *capped,
        *release_held_statements(credited),
    ]


def release_held_statements(account_ids: Iterable[int]) -> list[Any]:
    """The statement that puts these accounts' held jobs back on the ready list, to be checked
    again at the next window (``rules.unheld``): written wherever an account gains money it can
    spend — every ledger credit (earnings of its own workers, grants, refunds) and every
    reservation returned when a lease closes — in the same transaction. Bounded: one UPDATE over
    the ``jobs_ready`` index's held range, only for these accounts; none for no accounts."""
    ids = sorted(set(account_ids))
    if not ids:
        return []
    return [
        (
            f"UPDATE jobs SET status = '{JobStatus.READY}' WHERE status = '{JobStatus.HELD}'"
            f" AND account_id IN {marks(len(ids))}",
            ids,
        )
    ]


def grant(tx, account_id: int, amount: int, now: float, memo: str = "grant") -> None:
    account_by_id(tx, account_id)
    post(tx, ledger.grant(account_id, amount, memo), now)


def transfer(
    tx,
    payer: int,
    payee: int,
    amount: int,
    now: float,
    kind: str = "transfer",
    memo: str = "",
    lease_id: int | None = None,
) -> None:
    """Move ``amount`` cents from payer to payee, refusing to overdraw (row-locked on MariaDB)."""
    balances = _existing(tx, payer, payee)
    entry = ledger.transfer(payer, payee, amount, balances[payer], kind, memo)
    ledger.apply(balances, entry)
    record(tx, [(entry, lease_id)], now)


def balance(tx, account_id: int) -> int:
    return int(account_by_id(tx, account_id)["balance"])


def history(tx, account_id: int, limit: int = 100) -> list[dict[str, Any]]:
    return tx.all(
        "SELECT id, at, debit_account, credit_account, amount, kind, lease_id, memo FROM ledger"
        " WHERE debit_account = ? OR credit_account = ? ORDER BY id DESC LIMIT ?",
        (account_id, account_id, int(limit)),
    )


def audit(tx) -> dict[str, Any]:
    """Check the ledger invariants; returns totals and the list of accounts that disagree."""
    granted = int(tx.scalar("SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE kind = 'grant'") or 0)
    total = int(tx.scalar("SELECT COALESCE(SUM(balance), 0) FROM accounts") or 0)
    credits = {
        r["a"]: int(r["s"])
        for r in tx.all("SELECT credit_account AS a, SUM(amount) AS s FROM ledger GROUP BY credit_account")
    }
    debits = {
        r["a"]: int(r["s"])
        for r in tx.all(
            "SELECT debit_account AS a, SUM(amount) AS s FROM ledger WHERE debit_account IS NOT NULL"
            " GROUP BY debit_account"
        )
    }
    wrong = []
    negative = []
    for row in tx.all("SELECT id, balance FROM accounts"):
        expected = credits.get(row["id"], 0) - debits.get(row["id"], 0)
        if int(row["balance"]) != expected:
            wrong.append((row["id"], int(row["balance"]), expected))
        if int(row["balance"]) < 0:
            negative.append(row["id"])
    # money promised to open (or held) leases, kept on the account, must be what those leases say
    promised = {
        r["a"]: int(r["s"])
        for r in tx.all(
            "SELECT j.account_id AS a, SUM(d.reserved) AS s FROM leases d JOIN jobs j ON j.id = d.job_id"
            # a lease held during its worker's dispute keeps its reservation until it is paid
            f" WHERE (d.status = '{LeaseStatus.OUT}' OR d.pay_held = 1) AND j.account_id IS NOT NULL"
            " GROUP BY j.account_id"
        )
    }
    reservations = [
        (r["id"], int(r["reserved"]), promised.get(r["id"], 0))
        for r in tx.all("SELECT id, reserved FROM accounts")
        if int(r["reserved"]) != promised.get(r["id"], 0)
    ]
    # what a job's slices owe below a cent is carried on, never a whole cent (``money.carried_payment``)
    carries = [
        (r["id"], int(r["carry"]))
        for r in tx.all("SELECT id, carry FROM jobs WHERE carry < 0 OR carry >= ?", (money.MILLI,))
    ]
    return {
        "granted": granted,
        "total": total,
        "mismatched": wrong,
        "negative": negative,
        "reservations": reservations,
        "carries": carries,
        "balanced": granted == total and not wrong and not negative and not reservations and not carries,
    }


# -- web sessions ----------------------------------------------------------------------------


def create_session(tx, token_hash: str, account_id: int, csrf: str, now: float, expires_at: float) -> None:
    tx.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
    tx.execute(
        "INSERT INTO web_sessions (token_hash, account_id, csrf, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        (token_hash, account_id, csrf, now, expires_at),
    )


def session(tx, token_hash: str, now: float) -> dict[str, Any] | None:
    return tx.one(
        "SELECT s.token_hash, s.csrf, s.expires_at, a.id AS account_id, a.name, a.email, a.confirmed"
        " FROM web_sessions s JOIN accounts a ON a.id = s.account_id"
        " WHERE s.token_hash = ? AND s.expires_at >= ? AND a.disabled_at IS NULL",
        (token_hash, now),
    )


def delete_session(tx, token_hash: str) -> None:
    tx.execute("DELETE FROM web_sessions WHERE token_hash = ?", (token_hash,))
