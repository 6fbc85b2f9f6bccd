"""The paper's quote rule, as the simulator applies it to its own market state.

To run at speed S or faster: let n be the number of clients at least that fast; the n-th best
competing job (in ``market.core.matcher.job_order_key`` order, i.e. by price) would get the n-th
fastest client, which is at least S fast. Paying one cent more than the n-th highest competing
price therefore puts a new job within the first n — if every one of those n clients asked in
the same window, which is what ``quote honesty`` in ``sim.metrics`` measures. With fewer than
n competing jobs one cent is enough; with no client that fast there is no quote.

This mirrors the standalone ``quote`` tool's rule on the simulator's state; it does not import
that tool (the tool reads reports, the simulator has none).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

__all__ = ["quote_price"]


def quote_price(speeds: Sequence[float], prices: Mapping[int, int], wanted: float) -> int | None:
    """The price (cents/s) that should buy ``wanted`` speed, or None if no client is that fast.

    ``speeds``: the online clients' speeds, sorted ascending; ``prices``: how many competing
    (unfinished) jobs pay each price. A count per price rather than a sorted list because the
    simulator updates it at every submission and finish but asks for a quote rarely.
    """
    n = len(speeds) - bisect.bisect_left(speeds, wanted)
    if n == 0:
        return None
    seen = 0
    for price in sorted(prices, reverse=True):
        seen += prices[price]
        if seen >= n:
            return price + 1
    return 1
