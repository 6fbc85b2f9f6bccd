"""The log-in rate limit: failed attempts counted per account name and per address, in memory.

Counting per name stops guessing one member's password from many addresses; counting per address
stops one address trying many names. The counts live in the server process (a restart forgets
them), which is enough to turn password guessing from thousands of tries a minute into a handful.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Hashable


class LoginThrottle:
    """Allows ``per_name`` failures per name and ``per_address`` per address within ``period`` seconds."""

    def __init__(self, clock, per_name: int = 5, per_address: int = 20, period: float = 900.0):
        self.clock = clock
        self.period = period
        self.limits = {"name": per_name, "address": per_address}
        self._failures: dict[Hashable, deque[float]] = defaultdict(deque)

    def _recent(self, key: Hashable) -> deque[float]:
        now = self.clock.seconds()
        times = self._failures[key]
        while times and times[0] <= now - self.period:
            times.popleft()
        if not times:
            # forget keys with nothing recent, so scanning many names cannot grow memory forever
            del self._failures[key]
            return deque()
        return times

    def wait(self, name: str, address: str) -> float:
        """Seconds until this name/address may try again; 0 when it may try now."""
        now = self.clock.seconds()
        wait = 0.0
        for kind, key in (("name", name.lower()), ("address", address)):
            times = self._recent((kind, key))
            if len(times) >= self.limits[kind]:
                wait = max(wait, times[0] + self.period - now)
        return wait

    def failed(self, name: str, address: str) -> None:
        """Count one failed attempt against both the name and the address."""
        now = self.clock.seconds()
        self._failures[("name", name.lower())].append(now)
        self._failures[("address", address)].append(now)

    def succeeded(self, name: str) -> None:
        """A right password clears that name's failures (the address keeps its count)."""
        self._failures.pop(("name", name.lower()), None)
