"""How many bytes of request bodies the market holds in memory at once, all connections together.

A body is admitted only after its sender has authenticated, and only with room for its declared
length (``Content-Length``); the room is given back when its call has been answered. When there is
no room the body **waits, its connection's reading paused**, for at most ``body-wait`` seconds,
then it is refused as busy (Fault 9: retry). Why wait first rather than refuse at once: a body that
waits costs the market nothing (TCP holds it in the client's socket, not our memory) and its
client's upload is not wasted; and most waits are short, because every admitted body must keep up
``min-body-rate`` or its connection is closed and its room given back. The wait is bounded, so a
full budget turns into clear refusals rather than a queue without end.

Two rules keep the room fair:

- **small bodies** (up to ``SMALL`` bytes: nearly every call, most states) never queue behind
  large ones, and the last sixteenth of the budget is theirs alone: large bodies filling the budget
  cannot stall a worker's ``request`` or a member's ``status``;
- **one owner** (an account, with its workers) holds at most a quarter of the budget (always at
  least one body), so one account's uploads cannot fill it.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from twisted.internet import defer

from market.core.errors import DatabaseUnavailable
from market.settings import ConnectionSettings, show_size

#: bodies up to this size are "small": never behind a large one, and the reserve is theirs
SMALL = 64 * 1024


class Busy(DatabaseUnavailable):
    """No room for a body within ``body-wait`` seconds (Fault 9: the market is busy; retry)."""


class _Waiter:
    __slots__ = ("owner", "size", "deferred", "timer")

    def __init__(self, owner: Hashable, size: int, deferred: defer.Deferred, timer: Any):
        self.owner, self.size, self.deferred, self.timer = owner, size, deferred, timer


class BodyBudget:
    """The room for request bodies: :meth:`take` some, :meth:`give` it back when the call is answered."""

    def __init__(self, settings: ConnectionSettings, clock: Any):
        self.total = settings.body_budget
        #: the largest single body the budget can ever hold: all but the small bodies' reserve
        self.largest = settings.largest_body
        self.share = max(self.total // 4, 1)
        self.wait = settings.body_wait
        self._clock = clock
        self.used = 0  #: bytes held by admitted bodies
        self.large = 0  #: of which by large bodies
        self._owners: dict[Hashable, int] = {}
        self._waiting: list[_Waiter] = []

    def take(self, owner: Hashable, size: int) -> bool | defer.Deferred[bool]:
        """Room for a body of ``size`` bytes of ``owner``'s: True at once, or a Deferred that fires
        True when there is room or fails with Busy after ``body-wait`` seconds. Cancelling the
        Deferred (the connection closed) takes the body out of the queue."""
        if size > self.largest:
            raise ValueError(f"a body of {size} bytes can never fit in {self.largest}")
        if (size <= SMALL or not self._waiting) and self._fits(owner, size):
            self._hold(owner, size)  # the usual case: room, and no one waiting ahead
            return True

        def cancel(d: defer.Deferred) -> None:
            self._drop(waiter)

        d: defer.Deferred[bool] = defer.Deferred(cancel)
        waiter = _Waiter(owner, size, d, None)
        self._waiting.append(waiter)
        self._admit_waiting()  # the ones ahead may be held back only by their owner's share
        if d.called:
            return True
        waiter.timer = self._clock.callLater(self.wait, self._too_long, waiter)
        return d

    def give(self, owner: Hashable, size: int) -> None:
        """A body's room, taken with :meth:`take`, is free again (its call was answered or its
        connection closed)."""
        self.used -= size
        if size > SMALL:
            self.large -= size
        left = self._owners.get(owner, 0) - size
        if left > 0:
            self._owners[owner] = left
        else:
            self._owners.pop(owner, None)
        if self._waiting:
            self._admit_waiting()

    def held_by(self, owner: Hashable) -> int:
        return self._owners.get(owner, 0)

    # -- the rules -------------------------------------------------------------------------------
    def _fits(self, owner: Hashable, size: int) -> bool:
        if self.used + size > self.total:
            return False
        if size <= SMALL:
            return True
        if self.large + size > self.largest:
            return False
        held = self._owners.get(owner, 0)
        return held == 0 or held + size <= self.share

    def _hold(self, owner: Hashable, size: int) -> None:
        self.used += size
        if size > SMALL:
            self.large += size
        self._owners[owner] = self._owners.get(owner, 0) + size

    def _admit_waiting(self) -> None:
        # in order of arrival; a large body that does not fit for lack of room stops the large
        # ones behind it (no starving big uploads with a stream of middling ones); one held back
        # only by its owner's share, and small ones, do not stop anyone
        blocked = False
        for waiter in list(self._waiting):
            small = waiter.size <= SMALL
            if not small and blocked:
                continue
            if self._fits(waiter.owner, waiter.size):
                self._drop(waiter)
                self._hold(waiter.owner, waiter.size)
                waiter.deferred.callback(True)
            elif not small and (self.used + waiter.size > self.total or self.large + waiter.size > self.largest):
                blocked = True

    def _too_long(self, waiter: _Waiter) -> None:
        waiter.timer = None
        self._drop(waiter)
        waiter.deferred.errback(
            Busy(
                f"the market is receiving {show_size(self.total)} of uploads already and had no room for"
                f" yours within {self.wait:g} s; retry in a few seconds"
            )
        )

    def _drop(self, waiter: _Waiter) -> None:
        if waiter in self._waiting:
            self._waiting.remove(waiter)
        if waiter.timer is not None and waiter.timer.active():
            waiter.timer.cancel()
        waiter.timer = None
