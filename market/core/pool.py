"""The pooling window: collect clients' requests for work, then match them in one go.

A window opens at the first waiting request and closes ``window`` seconds later or as soon as
``threshold`` requests wait, whichever comes first (the paper's scheduler). At the close the
pool hands every waiting request to an ``assign`` function (the dispatcher: read the ready
list, run the matcher, write the dispatch rows) and answers each request with what ``assign``
gave it, or with ``NoWork`` when it got nothing.

The clock is injected: the server passes the reactor, tests and the simulator pass
``twisted.internet.task.Clock`` or ``sim.clock.SimClock``. The pool never reads wall time.

Rules worth knowing:

- One request per client per window: if a client asks again while its earlier request still
  waits, the new request replaces the old one and the old one is answered ``NoWork`` at once
  (a worker that reconnects must not hold two places in the pool, nor get two jobs).
- Requests that arrive while ``assign`` is running wait for the NEXT window. Windows never
  overlap: if the next window is due (by time or threshold) before ``assign`` finishes, it closes
  right after.
- If ``assign`` fails, every request of that window errbacks with the failure; if delivering
  its answers fails halfway, the requests not yet answered errback. None is left hanging.
- Cancelling a request's Deferred (the client hung up) withdraws it while its window is still
  open; once ``assign`` is running the match stands and the dispatcher's lease expiry reclaims
  the job.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, NamedTuple, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["WindowPolicy", "PoolRequest", "NoWork", "PoolStats", "Pool", "Assign"]

_log = Logger()


@dataclass(frozen=True)
class WindowPolicy:
    """When a pooling window closes: ``window`` seconds after it opened, or at ``threshold``
    waiting requests, whichever comes first. Pure: no clock, no state."""

    window: float
    threshold: int

    def __post_init__(self) -> None:
        if not self.window > 0:
            raise ValueError(f"the pooling window must be longer than 0 s, not {self.window!r}")
        if self.threshold < 1:
            raise ValueError(f"the pool threshold must be at least 1 request, not {self.threshold!r}")

    def closes_at(self, opened_at: float) -> float:
        """The latest time a window opened at ``opened_at`` may stay open."""
        return opened_at + self.window

    def is_full(self, waiting: int) -> bool:
        """Whether ``waiting`` requests close the window now."""
        return waiting >= self.threshold

    @property
    def retry_after(self) -> float:
        """How long a client that got nothing should wait before asking again: one window,
        but at least a second so idle clients do not hammer the server with tiny windows."""
        return max(1.0, float(self.window))


class PoolRequest(NamedTuple):
    """A client's request as ``assign`` sees it; ``key`` is unique per pool.

    A named tuple rather than a frozen dataclass: one is built per request, and the simulator
    builds millions."""

    key: int
    client_id: int
    speed: float
    requested_at: float
    extra: Any = None


@dataclass(frozen=True)
class NoWork:
    """The answer to a request that got no job; ask again after ``retry_after`` seconds."""

    retry_after: float
    reason: str = "no job was matched to this client in this window"


@dataclass(frozen=True)
class PoolStats:
    """Counters for monitoring. ``mean_wait`` is the mean time from request to answer over the
    requests answered at a window's close (with work or ``NoWork``)."""

    windows_closed: int
    requests_served: int
    requests_without_work: int
    requests_replaced: int
    assign_failures: int
    mean_wait: float
    waiting: int


_A = TypeVar("_A")  # what ``assign`` answers a request with (a lease, a job offer...)

Answers = Mapping[int, _A]
Assign = Callable[[list[PoolRequest]], Answers[_A] | Deferred[Answers[_A]]]
_Waiting = dict[int, tuple[PoolRequest, Deferred[_A | NoWork]]]  # client id -> request, its answer


class Pool(Generic[_A]):
    """Pools clients' requests for work in windows and answers them from ``assign``.

    Each request is answered with one of ``assign``'s answers (type ``_A``) or with ``NoWork``."""

    def __init__(self, clock: IReactorTime, policy: WindowPolicy, assign: Assign[_A]) -> None:
        self._clock = clock
        self.policy = policy
        self._assign = assign
        self._keys = itertools.count(1)
        self._waiting: _Waiting[_A] = {}
        self._timer: IDelayedCall | None = None
        self._assigning = False
        self._due = False  # the next window should close as soon as the running assign ends
        self._stopped = False
        self._stop_waiters: list[Deferred[None]] = []
        self._windows_closed = 0
        self._served = 0
        self._without_work = 0
        self._replaced = 0
        self._assign_failures = 0
        self._answered = 0
        self._wait_total = 0.0

    # -- the public interface ------------------------------------------------------------------

    def request(self, client_id: int, speed: float, extra: Any = None) -> Deferred[_A | NoWork]:
        """Put a client in the pool; the Deferred fires with its answer or ``NoWork``."""
        if self._stopped:
            return succeed(self._no_work("the dispatcher is stopping"))
        now = self._clock.seconds()
        request = PoolRequest(next(self._keys), client_id, speed, now, extra)
        answer: Deferred[_A | NoWork] = Deferred(lambda d: self._withdraw(request))
        previous = self._waiting.pop(client_id, None)
        self._waiting[client_id] = (request, answer)
        if self._timer is None:  # this request opens the window
            delay = self.policy.closes_at(now) - now
            self._timer = self._clock.callLater(delay, self._window_expired)
        if previous is not None:
            self._replaced += 1
            previous[1].callback(self._no_work("replaced by a newer request from the same client"))
        if self.policy.is_full(len(self._waiting)):
            self._close_or_defer()
        return answer

    def stop(self) -> Deferred[None]:
        """Answer every waiting request with ``NoWork`` and cancel the window timer.

        The returned Deferred fires once no ``assign`` is running any more.
        """
        self._stopped = True
        self._cancel_timer()
        waiting, self._waiting = self._waiting, {}
        for _, answer in waiting.values():
            answer.callback(self._no_work("the dispatcher is stopping"))
        if not self._assigning:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._stop_waiters.append(done)
        return done

    @property
    def waiting(self) -> int:
        """How many requests wait for the current window to close."""
        return len(self._waiting)

    @property
    def stats(self) -> PoolStats:
        """A snapshot of the monitoring counters."""
        return PoolStats(
            windows_closed=self._windows_closed,
            requests_served=self._served,
            requests_without_work=self._without_work,
            requests_replaced=self._replaced,
            assign_failures=self._assign_failures,
            mean_wait=self._wait_total / self._answered if self._answered else 0.0,
            waiting=len(self._waiting),
        )

    # -- the window ----------------------------------------------------------------------------

    def _no_work(self, reason: str) -> NoWork:
        return NoWork(self.policy.retry_after, reason)

    def _withdraw(self, request: PoolRequest) -> None:
        current = self._waiting.get(request.client_id)
        if current is not None and current[0].key == request.key:
            del self._waiting[request.client_id]
            if not self._waiting:
                self._cancel_timer()

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _window_expired(self) -> None:
        self._timer = None
        self._close_or_defer()

    def _close_or_defer(self) -> None:
        if self._assigning:
            self._due = True
        else:
            self._close()

    def _close(self) -> None:
        self._cancel_timer()
        self._due = False
        batch, self._waiting = self._waiting, {}
        if not batch:
            return
        self._assigning = True
        outcome = maybeDeferred(self._assign, [request for request, _ in batch.values()])
        outcome.addCallback(_require_mapping)
        outcome.addCallbacks(self._deliver, self._fail, callbackArgs=(batch,), errbackArgs=(batch,))
        # a failure while delivering still answers whoever was not answered yet
        outcome.addErrback(self._fail, batch)
        outcome.addBoth(self._assign_finished)

    def _deliver(self, answers: Answers[_A], batch: _Waiting[_A]) -> None:
        now = self._clock.seconds()
        served_before = self._served
        for request, answer in batch.values():
            given: _A | NoWork | None = answers.get(request.key)
            if given is None:
                given = self._no_work("no job was matched to this client in this window")
                self._without_work += 1
            else:
                self._served += 1
            self._answered += 1
            self._wait_total += now - request.requested_at
            if not answer.called:  # a cancelled request is already answered
                answer.callback(given)
        if self._served - served_before < len(answers):
            keys = {request.key for request, _ in batch.values()}
            unknown = [key for key in answers if key not in keys]
            if unknown:
                _log.warn("assign answered requests that were not in the window: {keys}", keys=unknown)

    def _fail(self, failure: Failure, batch: _Waiting[_A]) -> None:
        self._assign_failures += 1
        for _, answer in batch.values():
            if not answer.called:
                answer.errback(failure)

    def _assign_finished(self, _: object) -> None:
        self._assigning = False
        self._windows_closed += 1
        if self._stopped:
            waiters, self._stop_waiters = self._stop_waiters, []
            for waiter in waiters:
                waiter.callback(None)
            return
        if self._waiting and (self._due or self.policy.is_full(len(self._waiting))):
            self._close()
        elif not self._waiting:
            self._due = False


def _require_mapping(answers: object) -> Answers[Any]:
    if answers is None:
        return {}
    if not isinstance(answers, Mapping):
        raise TypeError(f"assign must return a mapping of request key to answer, not {answers!r}")
    return answers
