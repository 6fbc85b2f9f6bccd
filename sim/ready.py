"""The simulator's ready list, indexed the way the production store's ``ORDER BY`` is.

The dispatcher never hands the matcher the whole ready list: the store reads the top
``len(pool)`` jobs in the policy's order (``ORDER BY ... LIMIT k``) and the matcher ranks
those. The simulator does the same with a heap on the policy's own job key from
``market.core.matcher``, so a window costs O(k log n) instead of O(n). A policy without a job order
(``random``) gets the whole ready list.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from market.core.matcher import ReadyJob, aging_job_key, fifo_job_key, job_order_key

__all__ = ["ReadyList", "candidate_key"]


def candidate_key(policy: str, aging_rate: float) -> Callable[[ReadyJob], Any] | None:
    """The job order a policy ranks by (its top k are all it can pick), or None."""
    if policy in ("paper", "price-only"):
        return job_order_key
    if policy == "fifo":
        return fifo_job_key
    if policy == "aging":
        return aging_job_key(aging_rate)
    return None


class ReadyList:
    """Ready jobs; ``take(k)`` removes the policy's candidates, ``give_back`` returns the
    ones the policy did not pick."""

    def __init__(self, key: Callable[[ReadyJob], Any] | None) -> None:
        self._key = key
        # a job's key never changes, and jobs come back after every slice: compute it once
        self._entries: dict[int, tuple[Any, ReadyJob]] = {}
        self._heap: list[tuple[Any, ReadyJob]] = []
        self._all: dict[int, ReadyJob] = {}

    def __len__(self) -> int:
        return len(self._heap) if self._key is not None else len(self._all)

    def push(self, job: ReadyJob) -> None:
        """A job became ready (submitted, checked in, or rolled back)."""
        if self._key is not None:
            entry = self._entries.get(job.id)
            if entry is None or entry[1] is not job:
                entry = self._entries[job.id] = (self._key(job), job)
            heapq.heappush(self._heap, entry)
        else:
            self._all[job.id] = job

    @property
    def ordered(self) -> bool:
        """Whether the policy ranks jobs by a key (then only the top of the list can be picked)."""
        return self._key is not None

    def pop_each(self) -> Iterator[ReadyJob]:
        """Remove and yield the jobs in the policy's order, one at a time as the caller asks for
        them (window planning walks the top of the list until it has enough affordable jobs)."""
        heap, pop = self._heap, heapq.heappop
        while heap:
            yield pop(heap)[1]

    def take(self, k: int) -> list[ReadyJob]:
        """Remove and return the jobs a policy choosing ``k`` may pick from."""
        if self._key is None:
            jobs = list(self._all.values())
            self._all.clear()
            return jobs
        heap, pop = self._heap, heapq.heappop
        return [pop(heap)[1] for _ in range(min(k, len(heap)))]

    def forget(self, job_id: int) -> None:
        """A job finished: drop its cached key."""
        self._entries.pop(job_id, None)

    def give_back(self, jobs: Iterable[ReadyJob]) -> None:
        """Put back candidates the policy left unassigned."""
        for job in jobs:
            self.push(job)

    def snapshot(self) -> list[ReadyJob]:
        """Every ready job (for recording a window's inputs)."""
        if self._key is None:
            return list(self._all.values())
        return [job for _, job in self._heap]
