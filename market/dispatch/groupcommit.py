"""Group commit: many small requests answered by one database transaction.

Requests that arrive while a batch is being committed wait and form the next batch, so a lone
request is committed at once (no timer, no added latency) and a busy server commits many per
transaction: the cost of a transaction's round trips and its commit is shared by everyone in it.
This is how the dispatcher turns thousands of ``state`` check-ins per second into a few hundred
transactions.

``run_batch(items)`` returns (or returns a Deferred of) one result per item, in order; a result
that is an ``Exception`` instance is that item's own refusal and errbacks only its caller. If the
whole batch fails (a database error), each of its items is retried alone, so one bad item, say
a state too large for the database's packet limit, cannot fail its neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Union

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.python.failure import Failure

RunBatch = Callable[[list[Any]], Union[Sequence[Any], "Deferred[Sequence[Any]]"]]


class GroupCommit:
    """Queue items; commit them in batches, one batch at a time."""

    def __init__(
        self,
        run_batch: RunBatch,
        max_items: int = 128,
        max_bytes: int = 32 * 1024 * 1024,
        size: Callable[[Any], int] = lambda item: 0,
    ) -> None:
        self._run = run_batch
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._size = size
        self._queue: list[tuple[Any, Deferred]] = []
        self._busy = False
        self._idle_waiters: list[Deferred] = []
        self.batches = 0
        self.items = 0

    def submit(self, item: Any) -> Deferred:
        """Queue ``item``; the Deferred fires with its result or fails with its refusal."""
        answer: Deferred = Deferred()
        self._queue.append((item, answer))
        if not self._busy:
            self._next()
        return answer

    def idle(self) -> Deferred:
        """Fires once nothing is queued or being committed (for a clean shutdown)."""
        if not self._busy and not self._queue:
            return succeed(None)
        waiter: Deferred = Deferred()
        self._idle_waiters.append(waiter)
        return waiter

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    def _take(self) -> list[tuple[Any, Deferred]]:
        taken, total = 0, 0
        for item, _ in self._queue:
            total += self._size(item)
            if taken and (taken >= self.max_items or total > self.max_bytes):
                break
            taken += 1
        batch, self._queue = self._queue[:taken], self._queue[taken:]
        return batch

    def _next(self) -> None:
        """Send the next batch to the database, if anything is queued."""
        if not self._queue:
            self._busy = False
            return
        self._busy = True
        batch = self._take()
        self.batches += 1
        self.items += len(batch)
        d = maybeDeferred(self._run, [item for item, _ in batch])
        d.addCallbacks(self._committed, self._failed, callbackArgs=(batch,), errbackArgs=(batch,))

    def _committed(self, results: Sequence[Any], batch: list[tuple[Any, Deferred]]) -> None:
        # the next batch goes to the database first: answering this one (encoding and writing a
        # response per item) then overlaps with that batch's transaction
        self._next()
        self._deliver(results, batch)
        self._check_idle()

    def _failed(self, failure: Failure, batch: list[tuple[Any, Deferred]]) -> Deferred:
        # find the item that broke the batch: each alone, one after the other, then carry on
        alone = succeed(None)
        if len(batch) == 1:
            batch[0][1].errback(failure)
        else:
            for entry in batch:
                alone.addCallback(lambda _, entry: self._alone(entry), entry)
        alone.addCallback(lambda _: self._next())
        alone.addCallback(lambda _: self._check_idle())
        return alone

    def _alone(self, entry: tuple[Any, Deferred]) -> Deferred:
        d = maybeDeferred(self._run, [entry[0]])
        d.addCallbacks(self._deliver, entry[1].errback, callbackArgs=([entry],))
        return d

    @staticmethod
    def _deliver(results: Sequence[Any], batch: list[tuple[Any, Deferred]]) -> None:
        if not isinstance(results, Sequence) or len(results) != len(batch):
            # a bug in run_batch: nobody may be left waiting
            failure = Failure(RuntimeError(f"a batch of {len(batch)} got {results!r:.80} as results"))
            for _, answer in batch:
                answer.errback(failure)
            return
        for (_, answer), result in zip(batch, results):
            if isinstance(result, Exception):
                answer.errback(Failure(result))
            else:
                answer.callback(result)

    def _check_idle(self) -> None:
        if not self._busy and not self._queue:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)
