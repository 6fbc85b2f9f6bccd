"""A job's progress in money and time: what it cost so far and what the rest should cost.

Pure (no I/O, no clock): the web's live job page, ``market status`` / ``market watch`` and the RPC
``status`` struct all call :func:`estimate`, so they agree to the cent. The estimate extrapolates
the job's own reported progress linearly: if ``executed`` seconds of accepted execution brought it
to ``progress``, the rest takes ``executed * (1 - progress) / progress`` more seconds, paid at the
job's current price. Progress is the job's own claim (``progress(fraction)``; a worker relays it),
so it is clamped to [0, 1]; with none reported there is no estimate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Estimate", "estimate"]


@dataclass(frozen=True)
class Estimate:
    """``cost_cents``: paid for accepted execution so far. ``remaining_seconds`` (execution
    seconds still to run) and ``remaining_cents`` (their cost at the current price, rounded up to
    a cent) are None when unknown: no progress reported yet, or nothing executed."""

    cost_cents: int
    remaining_seconds: float | None
    remaining_cents: int | None

    @property
    def total_cents(self) -> int | None:
        """The whole job's expected cost: paid so far plus the rest."""
        return None if self.remaining_cents is None else self.cost_cents + self.remaining_cents


def estimate(
    progress: float | None, executed_ms: int, price_cents: int, paid_cents: int, over: bool = False
) -> Estimate:
    """The estimate for a job at ``progress`` (0..1 or None) after ``executed_ms`` of accepted
    execution, priced at ``price_cents`` per second, having paid ``paid_cents``; ``over``: the job
    has ended (nothing remains)."""
    paid = max(0, int(paid_cents))
    if over:
        return Estimate(paid, 0.0, 0)
    if progress is None or not math.isfinite(progress) or progress <= 0 or executed_ms <= 0:
        return Estimate(paid, None, None)
    p = Fraction(min(float(progress), 1.0))
    remaining_ms = math.ceil(Fraction(int(executed_ms)) * (1 - p) / p)
    cents = math.ceil(Fraction(remaining_ms * max(0, int(price_cents)), 1000))
    return Estimate(paid, remaining_ms / 1000.0, cents)
