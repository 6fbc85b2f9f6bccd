"""Spending caps: the most a job, a batch or an account may spend, on plain values.

A cap is a limit in cents on what something has *spent*: what its accepted slices paid plus what
its open leases reserved (a lease reserves the most its slice can pay, ``rules.reservation``, and
no slice pays more than its lease reserved, ``rules.pay``). Window planning
(``rules.plan_window``) leases a job only when the reservation of its slice fits in what every cap
over it leaves; otherwise the job is held with :func:`reason`. So nothing ever pays above its cap,
and raising a cap (``unheld``) gives the held jobs their next chance.

An account's cap counts what the account spent since its cap was first set (``accounts.cap_since``;
changing the cap keeps that start, clearing it and setting a new one starts again).
"""

from __future__ import annotations

from typing import NamedTuple

from market.core import money

__all__ = ["Cap", "JOB", "BATCH", "ACCOUNT", "reason", "left", "fits", "parse_cap"]

JOB = "job"
BATCH = "batch"
ACCOUNT = "account"


class Cap(NamedTuple):
    """A spending cap and what was spent under it (cents)."""

    what: str  # job | batch | account
    limit: int  # the cap, in cents
    spent: int  # paid by accepted slices plus reserved by open leases


def left(cap: Cap) -> int:
    """What the cap still lets be spent (never negative)."""
    return max(cap.limit - cap.spent, 0)


def fits(cap: Cap, need: int) -> bool:
    """Whether a lease reserving ``need`` cents stays within the cap."""
    return cap.spent + need <= cap.limit


def reason(cap: Cap) -> str:
    """Why a job held by ``cap`` is held, in plain words (shown through ``core.states``)."""
    owner = {JOB: "the job's", BATCH: "its batch's", ACCOUNT: "the account's"}.get(cap.what, "a")
    return (
        f"spending cap reached: {money.format_cents(cap.spent)} of {money.format_cents(cap.limit)} credits"
        f" ({owner} cap; a slice more would pass it); it runs again when the cap is raised"
    )


def parse_cap(text: object) -> int | None:
    """A cap as a member writes it: credits like ``5.20``; ``""``/``"none"``/``"off"`` clears it (None)."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("", "none", "off")):
        return None
    return money.parse_amount(text, "cap")
