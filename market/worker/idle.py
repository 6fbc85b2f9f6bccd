"""Idle detection and CPU share: what a volunteer machine's owner controls."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def busy_fraction(before: tuple[int, int], after: tuple[int, int]) -> float:
    busy, total = after[0] - before[0], after[1] - before[1]
    return busy / total if total > 0 else 0.0


IDLE_BELOW = 0.25  # the machine counts as idle when less than a quarter of its CPU time is busy


class Throttle:
    """Caps a job's CPU share with a stop/continue duty cycle (period 100 ms)."""

    PERIOD = 0.1

    def __init__(self, reactor, percent: int, pids: Callable[[], list[int]]):
        self.reactor = reactor
        self.percent = percent
        self.pids = pids
        self._call = None
        self._running = False

    def start(self):
        if self.percent >= 100 or self._running:
            return
        self._running = True
        self._run_phase()

    def _signal(self, sig):
        for pid in self.pids():
            try:
                os.kill(pid, sig)
            except OSError:
                pass

    def _run_phase(self):
        if not self._running:
            return
        self._signal(signal.SIGCONT)
        self._call = self.reactor.callLater(self.PERIOD * self.percent / 100.0, self._stop_phase)

    def _stop_phase(self):
        if not self._running:
            return
        self._signal(signal.SIGSTOP)
        self._call = self.reactor.callLater(self.PERIOD * (100 - self.percent) / 100.0, self._run_phase)

    def stop(self):
        self._running = False
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._signal(signal.SIGCONT)
