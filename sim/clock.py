"""A heap-based simulated clock: an ``IReactorTime`` for ``market.core.pool``.

``twisted.internet.task.Clock`` keeps its calls in a sorted list and re-sorts on every
``callLater``, which is fine for unit tests but too slow for ten thousand simulated clients.
``SimClock`` keeps a binary heap and skips cancelled or rescheduled entries lazily when they
surface, so scheduling, cancelling and firing are O(log n).

One deliberate difference from ``task.Clock.advance``: a call runs with ``seconds()`` equal to
its own scheduled time, not to the end of the advance, because the simulator timestamps
events with ``seconds()``. Exceptions raised by a call propagate out of ``advance``/``run``:
a simulation with a bug must stop, not log and carry on.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

__all__ = ["SimClock", "SimDelayedCall"]


@implementer(IDelayedCall)
class SimDelayedCall:
    """An ``IDelayedCall``: ``getTime``, ``active``, ``cancel``, ``reset``, ``delay``."""

    __slots__ = ("_clock", "_time", "_seq", "func", "args", "kw", "cancelled", "called")

    def __init__(self, clock: SimClock, time: float, func: Callable[..., Any], args: tuple, kw: dict) -> None:
        self._clock = clock
        self._time = time
        self._seq = 0
        self.func, self.args, self.kw = func, args, kw
        self.cancelled = self.called = False

    def getTime(self) -> float:
        """When the call is due, in the clock's seconds."""
        return self._time

    def active(self) -> bool:
        """True until the call has run or been cancelled."""
        return not (self.cancelled or self.called)

    def cancel(self) -> None:
        """Unschedule the call (its heap entry is dropped when it surfaces)."""
        self._check_active()
        self.cancelled = True
        self._clock._live -= 1

    def reset(self, secondsFromNow: float) -> None:
        """Reschedule the call ``secondsFromNow`` seconds after the clock's present."""
        self._check_active()
        self._time = self._clock.seconds() + secondsFromNow
        self._clock._push(self)

    def delay(self, secondsLater: float) -> None:
        """Postpone the call by ``secondsLater`` seconds."""
        self._check_active()
        self._time += secondsLater
        self._clock._push(self)

    def _check_active(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled()
        if self.called:
            raise AlreadyCalled()

    def __repr__(self) -> str:
        return f"<SimDelayedCall at {self._time} {getattr(self.func, '__qualname__', self.func)}>"


@implementer(IReactorTime)
class SimClock:
    """Simulated time: ``IReactorTime`` (``seconds``, ``callLater``, ``getDelayedCalls``), plus
    ``advance`` and ``run``."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._heap: list[tuple[float, int, SimDelayedCall]] = []
        self._seqs = itertools.count()
        self._live = 0
        self._stopping = False
        self.calls_run = 0

    def seconds(self) -> float:
        """The simulated present."""
        return self._now

    def callLater(self, delay: float, callable: Callable[..., Any], *args: Any, **kw: Any) -> SimDelayedCall:
        """Run ``callable(*args, **kw)`` ``delay`` seconds from now."""
        if delay < 0:
            raise ValueError(f"cannot schedule a call {delay} s in the past")
        call = SimDelayedCall(self, self._now + delay, callable, args, kw)
        self._live += 1
        self._push(call)
        return call

    def getDelayedCalls(self) -> list[SimDelayedCall]:
        """The calls still scheduled, in no particular order."""
        seen = {id(call): call for _, seq, call in self._heap if call.active() and seq == call._seq}
        return list(seen.values())

    @property
    def pending(self) -> int:
        """How many calls are still scheduled."""
        return self._live

    def next_time(self) -> float | None:
        """When the next live call is due, or None when nothing is scheduled."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def stop(self) -> None:
        """Make the running ``run``/``advance`` return after the current call."""
        self._stopping = True

    def advance(self, amount: float) -> None:
        """Run every call due within ``amount`` seconds, each at its own time."""
        self.run(until=self._now + amount)

    def run(self, until: float | None = None) -> None:
        """Run calls in time order (ties in scheduling order) until none is due by ``until``
        (or until none is left), then set the present to ``until`` if given."""
        heap = self._heap
        pop = heapq.heappop
        self._stopping = False
        while heap and not self._stopping:
            time, seq, call = heap[0]
            if seq != call._seq or call.cancelled or call.called:
                pop(heap)
                continue
            if until is not None and time > until:
                break
            pop(heap)
            self._now = time
            call.called = True
            self._live -= 1
            self.calls_run += 1
            call.func(*call.args, **call.kw)
        if until is not None and until > self._now and not self._stopping:
            self._now = until

    def _push(self, call: SimDelayedCall) -> None:
        call._seq = next(self._seqs)
        heapq.heappush(self._heap, (call._time, call._seq, call))

    def _drop_stale(self) -> None:
        heap = self._heap
        while heap:
            _, seq, call = heap[0]
            if seq == call._seq and call.active():
                return
            heapq.heappop(heap)
