"""Which of several market front ends a worker talks to, and how long it waits first.

All front ends of one market share its database, so any of them serves any worker: a worker
stays on the one that answers, moves to another *at once* when it cannot reach it (refused,
reset, timed out, HTTP 5xx from a proxy in front of a dead one), and waits only when every front
end failed since the last answer: a bounded exponential backoff with jitter, so that thousands of
workers stranded together do not come back together. A Fault is an answer from a live market,
never a reason to move (the caller does not report it here).

The next front end is drawn at random among those not yet tried in this round, so the workers of
a dead front end spread over the live ones instead of all landing on its neighbour in the list.

Pure: no clock and no random source of its own; ``draw`` is a function returning a float in
[0, 1) (``random.random`` in the worker, a fixed sequence in tests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

#: the first wait after a whole round failed, and the longest, in seconds
BACKOFF_FIRST = 1.0
BACKOFF_CAP = 60.0


def backoff_delay(rounds: int, draw: float, first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP) -> float:
    """The wait after ``rounds`` (>= 1) consecutive rounds in which every front end failed:
    ``first * 2**(rounds-1)`` bounded by ``cap``, then "equal jitter": somewhere in its upper half,
    chosen by ``draw`` in [0, 1). Never 0 and never above ``cap``."""
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    if not 0.0 <= draw < 1.0:
        raise ValueError("draw must be in [0, 1)")
    ceiling = min(cap, first * 2.0 ** min(rounds - 1, 62))
    return ceiling / 2.0 + draw * ceiling / 2.0


@dataclass
class Rotation:
    """The state of one worker's choice among ``count`` front ends (indexes 0..count-1)."""

    count: int
    draw: Callable[[], float]
    first: float = BACKOFF_FIRST
    cap: float = BACKOFF_CAP
    #: the front end in use
    current: int = 0
    #: front ends that failed since the last answer (this round)
    failed_round: set[int] = field(default_factory=set)
    #: consecutive rounds in which every front end failed
    rounds: int = 0

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError("a worker needs at least one server")
        if not 0 < self.first <= self.cap:
            raise ValueError("the backoff needs 0 < first <= cap")

    @classmethod
    def starting_anywhere(
        cls, count: int, draw: Callable[[], float], first: float = BACKOFF_FIRST, cap: float = BACKOFF_CAP
    ) -> Rotation:
        """A rotation that starts on a front end drawn at random: workers given the same list
        spread over all of it instead of all starting on the first."""
        return cls(count, draw, first, cap, current=_pick(range(max(count, 1)), draw()))

    def answered(self) -> None:
        """The current front end answered (a result or a Fault): stay on it; a new round starts."""
        self.failed_round.clear()
        self.rounds = 0

    def unreachable(self) -> float:
        """The current front end could not be reached. Move to another and return how long to
        wait before trying it: 0 while some front end is untried in this round, else the backoff
        (and a new round starts, on a front end other than the one that just failed if any)."""
        self.failed_round.add(self.current)
        untried = [i for i in range(self.count) if i not in self.failed_round]
        if untried:
            self.current = _pick(untried, self.draw())
            return 0.0
        self.rounds += 1
        self.failed_round.clear()
        others = [i for i in range(self.count) if i != self.current] or [self.current]
        self.current = _pick(others, self.draw())
        return backoff_delay(self.rounds, self.draw(), self.first, self.cap)


def _pick(choices: Iterable[int], draw: float) -> int:
    options = list(choices)
    if not 0.0 <= draw < 1.0:
        raise ValueError("draw must be in [0, 1)")
    return options[int(draw * len(options))]
