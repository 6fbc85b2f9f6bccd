"""Ledger rules, without I/O.

Money moves only in double-entry transfers between two accounts, or arrives by an explicit grant
(which has no debit account). So the sum of all balances changes only by grants, and a transfer
never leaves its payer below zero.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import dataclass

from market.core.errors import InsufficientFunds, MarketError
from market.core.money import MAX_CENTS, format_cents

# InsufficientFunds is what transfer() and apply() raise: re-exported for their callers
__all__ = ["KINDS", "Entry", "grant", "transfer", "apply", "memo_words", "InsufficientFunds"]

KINDS = ("grant", "payment", "transfer", "reversal")  # reversal: a payment taken back (core.verification)


# a payment's and a reversal's stored memo (``rules.payment_memo``, ``verification``): the slice's
# number is the lease's internal id, which the ledger row keeps in its own column anyway
_SLICE_MEMO = re.compile(r"^(reversal: )?job (\d+) slice \d+$")


def memo_words(memo: str | None) -> str:
    """A ledger memo as a member reads it: ``job 12 slice 307`` -> ``a slice of job 12`` (and
    ``reversal: ...`` -> ``a slice of job 12 taken back``); other memos as they are."""
    found = _SLICE_MEMO.match(memo or "")
    if found is None:
        return memo or ""
    return f"a slice of job {found.group(2)}" + (" taken back" if found.group(1) else "")


@dataclass(frozen=True)
class Entry:
    debit_account: int | None  # None for a grant
    credit_account: int
    amount: int
    kind: str
    memo: str = ""

    def with_amount(self, amount: int) -> Entry:
        return Entry(self.debit_account, self.credit_account, amount, self.kind, self.memo)


def grant(account: int, amount: int, memo: str = "") -> Entry:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > MAX_CENTS:
        raise MarketError(f"a grant must be a positive whole number of cents, got {amount!r}")
    return Entry(None, account, amount, "grant", memo)


def transfer(payer: int, payee: int, amount: int, payer_balance: int, kind: str = "transfer", memo: str = "") -> Entry:
    """Check one transfer against the payer's current balance and describe it."""
    if kind not in KINDS or kind == "grant":
        raise MarketError(f"unknown transfer kind {kind!r}")
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0 or amount > MAX_CENTS:
        raise MarketError(f"a transfer must be a positive whole number of cents, got {amount!r}")
    if payer == payee:
        raise MarketError("an account cannot pay itself")
    if payer_balance < amount:
        raise InsufficientFunds(
            f"balance {format_cents(payer_balance)} is less than {format_cents(amount)}"
            " — add credits (market account grant) or lower the price"
        )
    return Entry(payer, payee, amount, kind, memo)


def apply(balances: MutableMapping[int, int], entry: Entry) -> None:
    """Move ``entry`` within ``balances`` (account id -> cents), refusing to overdraw its payer.

    The store calls this on balances it has locked, then writes what it applied, so many entries
    can be checked against each other and written with one statement per table.
    """
    if entry.debit_account is not None:
        have = balances[entry.debit_account]
        if have < entry.amount:
            raise InsufficientFunds(
                f"balance {format_cents(have)} is less than {format_cents(entry.amount)}"
                " — add credits (market account grant) or lower the price"
            )
        balances[entry.debit_account] = have - entry.amount
    balances[entry.credit_account] = balances[entry.credit_account] + entry.amount
