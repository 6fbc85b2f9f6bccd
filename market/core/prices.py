"""What a price buys against the current market, and when a price is unusual enough to confirm.

The quote rule (``quote.rule``, docs/quote.md): at a pooling window the i-th best-paying ready
job gets the i-th fastest pooled client, and a new job loses every tie. So a price ranks behind
every competing job (ready or running) that pays as much or more; and the price that wins the
fastest client now is the highest competing price plus one cent (one cent with none competing).

A price far above that buys nothing more — the fastest client is already won — and is most
likely a typing slip (1,000,000 per second for 1.00). Such a price is *unusual*: the web form
and ``market submit`` show what it buys and ask for a confirmation. A market's ceiling
(``max-price``) refuses prices above it outright, on every way in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from market.core import money
from market.core.errors import PriceTooHigh

__all__ = ["PriceView", "price_view", "check_ceiling", "UNUSUAL_FACTOR", "UNUSUAL_FLOOR"]

#: a price above this many times the price that wins the fastest client now is unusual ...
UNUSUAL_FACTOR = 10
#: ... once it is also above this (cents per second: 100.00 credits), so that a small market's
#: one-cent quotes do not make every ordinary price unusual
UNUSUAL_FLOOR = 10_000


class PriceView(NamedTuple):
    """A price against the competing jobs' prices."""

    price: int  # cents per second
    rank: int  # the client it would get at a window: 1 the fastest
    competing: int  # ready or running jobs
    top_price: int  # the price that wins the fastest client now
    unusual: bool

    @property
    def words(self) -> str:
        """What the price buys, in plain words."""
        price, top = money.format_cents(self.price), money.format_cents(self.top_price)
        if self.rank == 1:
            buys = f"at {price} credits per second the job would get the fastest client at the next window"
        else:
            buys = (
                f"at {price} credits per second the job would rank {self.rank} of {self.competing + 1}:"
                f" the {_ordinal(self.rank)} fastest client"
            )
        buys += f" ({self.competing} job{'s' if self.competing != 1 else ''} compete; {top} wins the fastest)"
        if self.unusual:
            buys += (
                f". {price} is over {UNUSUAL_FACTOR} times what wins the fastest client and buys nothing more:"
                " check it, then confirm"
            )
        return buys


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def price_view(price: int, competing: Mapping[int, int]) -> PriceView:
    """``price`` (cents per second) against ``competing`` ({price: how many ready or running jobs})."""
    ahead = sum(count for p, count in competing.items() if p >= price)
    total = sum(competing.values())
    top = max(competing, default=0) + 1
    unusual = price > max(UNUSUAL_FACTOR * top, UNUSUAL_FLOOR)
    return PriceView(price, ahead + 1, total, top, unusual)


def check_ceiling(price: int, ceiling: int | None) -> None:
    """Refuse a price above the market's ceiling (``max-price``; None: no ceiling)."""
    if ceiling is not None and price > ceiling:
        raise PriceTooHigh(
            f"a price of {money.format_cents(price)} credits per second is above this market's ceiling of"
            f" {money.format_cents(ceiling)}; give a lower price"
        )
