"""Exact money: integer cents (credits / 100). Never floats.

A job's price is cents per second of accepted execution, so ``ms`` accepted milliseconds cost
exactly ``price * ms`` thousandths of a cent (``exact_cost``). The ledger moves whole cents: a job
carries what its slices owe below a cent (``carried_payment``) to its next slice, so a job's
slices together pay its exact cost rounded down — in the job owner's favour, less than a cent per
job — instead of losing up to a cent on every slice.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from market.core.errors import MarketError

MAX_CENTS = 10**15  # fits in a signed 64-bit column with room for sums
_AMOUNT = re.compile(r"^\s*\d+(\.\d{1,2})?\s*$")


def parse_amount(text: object, what: str = "amount") -> int:
    """``"5.20"`` -> 520. Accepts str or int (whole credits); refuses floats, signs and >2 decimals."""
    if isinstance(text, bool):
        raise MarketError(f"{what} must be a number of credits like 5.20, not {text!r}")
    if isinstance(text, int):
        text = str(text)
    if not isinstance(text, str) or not _AMOUNT.match(text):
        raise MarketError(f"{what} must be a number of credits with at most 2 decimals, like 5.20 — got {text!r}")
    try:
        cents = int((Decimal(text.strip()) * 100).to_integral_value())
    except InvalidOperation:
        raise MarketError(f"{what} {text!r} is not a number") from None
    if cents > MAX_CENTS:
        raise MarketError(f"{what} {text!r} is too large")
    return cents


def parse_price(text: object) -> int:
    """A job price in cents per second; at least 0.01."""
    cents = parse_amount(text, "price")
    if cents < 1:
        raise MarketError("price must be at least 0.01 credits per second")
    return cents


def format_cents(cents: int) -> str:
    """520 -> ``"5.20"``; -5 -> ``"-0.05"``."""
    sign = "-" if cents < 0 else ""
    cents = abs(int(cents))
    return f"{sign}{cents // 100}.{cents % 100:02d}"


def payment(price_cents: int, accepted_ms: int) -> int:
    """What a job owner pays for ``accepted_ms`` milliseconds at ``price_cents`` per second."""
    if price_cents < 0 or accepted_ms < 0:
        raise ValueError("price and time must not be negative")
    return price_cents * accepted_ms // 1000


MILLI = 1000  # thousandths of a cent in a cent: the unit of a job's exact cost and its carry


def exact_cost(price_cents: int, accepted_ms: int) -> int:
    """What ``accepted_ms`` milliseconds at ``price_cents`` per second cost, in thousandths of a
    cent: exact, no rounding."""
    if price_cents < 0 or accepted_ms < 0:
        raise ValueError("price and time must not be negative")
    return price_cents * accepted_ms


def carried_payment(price_cents: int, accepted_ms: int, carry: int) -> tuple[int, int]:
    """One slice's payment with its job's carry: ``(whole cents to pay now, new carry)``.

    ``carry`` is what the job's earlier slices owed below a whole cent (thousandths of a cent,
    ``0 <= carry < MILLI``); it is added to this slice's exact cost and what is left below a cent
    is carried on. Summed over a job's slices the cents are ``exact total // MILLI``.
    """
    if not 0 <= carry < MILLI:
        raise ValueError(f"a carry is below one cent (0..{MILLI - 1} thousandths), got {carry!r}")
    return divmod(exact_cost(price_cents, accepted_ms) + carry, MILLI)


def payment_ceiling(price_cents: int, accepted_ms: int) -> int:
    """The most a slice of ``accepted_ms`` at ``price_cents`` can pay with any carry: its exact
    cost rounded up (what a lease reserves)."""
    return -(-exact_cost(price_cents, accepted_ms) // MILLI)
