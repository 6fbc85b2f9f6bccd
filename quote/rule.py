"""The pricing rule, on plain values: no XML, no I/O.

When a pooling window closes the matcher gives the i-th best-paying ready job to the i-th fastest
pooled client (jobs by price desc, then older first; clients by speed desc). If ``n`` clients are at
least as fast as the speed you want, your job must rank among the first ``n`` jobs. A new job is
the youngest, so it loses every tie on price: it has to pay strictly more than the n-th highest
price now competing, i.e. that price plus one cent. With fewer than ``n`` competitors any price
does, so the answer is the market's minimum price, one cent.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

MIN_PRICE_CENTS = 1


@dataclass(frozen=True)
class Quote:
    """The answer for one desired speed. ``price_cents`` is None when no client is fast enough."""

    speed: float
    n: int  # active, non-suspect clients with speed >= the desired speed
    competing: int  # jobs the new job competes with (ready or running)
    price_cents: int | None
    nth_price_cents: int | None  # the n-th highest competing price, if at least n compete

    @property
    def possible(self) -> bool:
        return self.price_cents is not None


def fast_enough(speeds: Iterable[float], speed: float) -> int:
    """How many of ``speeds`` reach ``speed`` (a NaN speed never does)."""
    return sum(1 for s in speeds if s >= speed)


def fast_enough_sorted(speeds: Sequence[float], speed: float) -> int:
    """``fast_enough`` for ``speeds`` sorted ascending (without NaN): a binary search, for callers
    that keep their speeds sorted and ask often (the simulator)."""
    if speed != speed:  # NaN: no speed reaches it, as in fast_enough
        return 0
    return len(speeds) - bisect.bisect_left(speeds, speed)


def nth_highest(price_counts: Mapping[int, int], n: int) -> int | None:
    """The n-th highest price (1-based) in a multiset given as {price: how many}; None if fewer."""
    seen = 0
    for price in sorted(price_counts, reverse=True):
        seen += price_counts[price]
        if seen >= n:
            return price
    return None


def quote(speeds: Iterable[float], price_counts: Mapping[int, int], speed: float) -> Quote:
    """The minimum price in cents per second that wins a client of at least ``speed``.

    ``speeds`` are the measured speeds of the active, non-suspect clients; ``price_counts`` maps
    each competing job price (cents) to the number of jobs offering it.
    """
    return quote_for(fast_enough(speeds, speed), price_counts, speed)


def quote_sorted(speeds: Sequence[float], price_counts: Mapping[int, int], speed: float) -> Quote:
    """``quote`` for ``speeds`` sorted ascending (see ``fast_enough_sorted``): the same answer."""
    return quote_for(fast_enough_sorted(speeds, speed), price_counts, speed)


def quote_for(n: int, price_counts: Mapping[int, int], speed: float) -> Quote:
    """The quote when ``n`` clients reach ``speed``."""
    competing = sum(price_counts.values())
    if n == 0:
        return Quote(speed, 0, competing, None, None)
    nth = nth_highest(price_counts, n)
    price = MIN_PRICE_CENTS if nth is None else max(MIN_PRICE_CENTS, nth + 1)
    return Quote(speed, n, competing, price, nth)


def format_cents(cents: int) -> str:
    """521 -> ``"5.21"``."""
    return f"{cents // 100}.{cents % 100:02d}"
