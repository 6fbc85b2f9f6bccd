"""The sandbox's total memory where no cgroup can count it: a watchdog on the process tree.

rlimits cap each process; without a delegated cgroup v2 nothing in the kernel caps the sum of
a sandbox's processes. A task is a shell script and must fork, so the worker samples the tree
below the sandbox (every ``interval`` seconds, in a thread of its own so a busy reactor cannot
delay it) and kills the whole sandbox once its processes together hold more than the limit.

What is counted is each process's *proportional* anonymous and shared-memory pages
(``Pss_Anon + Pss_Shmem`` of ``/proc/PID/smaps_rollup``): a page shared copy-on-write by a
parent and its forked children is counted once in total, not once per process, and the
program's own file pages (its binary, libraries: page cache the kernel can drop) are not
counted. Reading ``smaps_rollup`` walks a process's page tables (~0.3 ms for 200 MB), so each
sample first adds up ``RssAnon + RssShmem`` of ``/proc/PID/status`` (a few µs each, and never less
than the proportional figure: shared pages count once per sharer); only when that upper bound
is over the limit are the processes measured exactly. Where ``smaps_rollup`` cannot be read, the
``status`` figure is used (errs towards killing).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

__all__ = ["descendants", "process_memory_kb", "tree_memory_kb", "MemoryWatchdog", "WATCH_INTERVAL"]

# A process faults pages in at ~2.5 GB/s per core: each 10 ms between samples is up to ~25 MB per
# core past the limit before a sample sees it. A sample of a small tree costs ~0.1 ms.
WATCH_INTERVAL = 0.01


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (via /proc/PID/task/*/children), parents before children."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    kids = [int(x) for x in f.read().split()]
            except OSError:
                kids = []
            found.extend(kids)
            todo.extend(kids)
    return found


def _fields(path: str, names: tuple[str, ...]) -> int | None:
    """The sum of the ``kB`` fields ``names`` in a /proc key-value file; None if unreadable."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    total, seen = 0, 0
    for line in data.split(b"\n"):
        key, _, rest = line.partition(b":")
        if key.decode("ascii", "replace") in names:
            parts = rest.split()
            if parts:
                total += int(parts[0])
                seen += 1
    return total if seen else None


def process_memory_kb(pid: int) -> int:
    """A process's memory that only it (and its sharers, proportionally) holds, in KiB; 0 if gone."""
    kb = _fields(f"/proc/{pid}/smaps_rollup", ("Pss_Anon", "Pss_Shmem"))
    if kb is None:
        kb = _fields(f"/proc/{pid}/status", ("RssAnon", "RssShmem"))
    return kb or 0


def process_memory_upper_kb(pid: int) -> int:
    """A cheap upper bound of :func:`process_memory_kb` (shared pages counted whole), in KiB."""
    return _fields(f"/proc/{pid}/status", ("RssAnon", "RssShmem")) or 0


def tree_memory_kb(pid: int, skip_first_level: bool = True, limit_kb: int | None = None) -> int:
    """The memory of the processes below ``pid`` in KiB.

    ``skip_first_level``: leave out ``pid``'s own children, i.e. below bwrap, the sandbox's
    runner (pid 1 inside: ~3 MB of its own, not the job's). ``limit_kb``: when the cheap upper
    bound is within it, return that bound rather than measuring exactly.
    """
    first = set()
    if skip_first_level:
        for t in _tasks(pid):
            first.update(_children(pid, t))
    tree = [p for p in descendants(pid) if p not in first]
    if limit_kb is not None:
        upper = sum(process_memory_upper_kb(p) for p in tree)
        if upper <= limit_kb:
            return upper
    return sum(process_memory_kb(p) for p in tree)


def _tasks(pid: int) -> list[str]:
    try:
        return os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []


def _children(pid: int, task: str) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{task}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


class MemoryWatchdog:
    """Samples the tree below ``pid`` every ``interval`` s; calls ``exceeded(kib)`` once, from its
    own thread, when the tree holds more than ``limit_kb``. ``peak_kb`` is the most it saw."""

    def __init__(
        self,
        pid: int,
        limit_kb: int,
        exceeded: Callable[[int], None],
        interval: float = WATCH_INTERVAL,
        measure: Callable[[int], int] | None = None,
    ) -> None:
        self.pid, self.limit_kb, self.exceeded, self.interval = pid, int(limit_kb), exceeded, interval
        self.measure = measure or (lambda p: tree_memory_kb(p, limit_kb=self.limit_kb))
        self.peak_kb = 0
        self.fired = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"memory-watchdog-{pid}", daemon=True)

    def start(self) -> MemoryWatchdog:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling (returns at once; the thread ends within one interval)."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            kb = self.measure(self.pid)
            self.peak_kb = max(self.peak_kb, kb)
            if kb > self.limit_kb and not self._stop.is_set():
                self.fired = True
                self._stop.set()
                self.exceeded(kb)
                return
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
