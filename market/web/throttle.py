"""Rate limits for log-ins and sign-ups, and a cap on the password hashing running at once.

An attempt is counted the moment it is allowed, before any hashing, in one call on the reactor
thread: twenty guesses sent in parallel are twenty attempts, and only as many as the limit get
as far as a hash. A right password then clears its name's count and gives its address back the
attempt it took, so members who log in are never counted against anyone.

Counting per name stops guessing one member's password from many addresses; counting per address
stops one address trying many names (or signing up many accounts); counting per e-mail address
stops one mailbox collecting accounts. The counts live in the server process (a restart forgets
them) and are bounded: at most ``max_keys`` keys are remembered; when that many are recent, new
keys are refused until old ones age out, so a flood of made-up names or addresses cannot grow
memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThread

T = TypeVar("T")

#: how many keys (names, addresses, e-mail addresses) a throttle remembers at most
MAX_KEYS = 50_000


class Throttle:
    """At most ``limits[kind]`` attempts per key of each kind within ``period`` seconds.

    ``attempt(name=..., address=...)`` counts one attempt against every key it is given, or, if
    any key is at its limit, counts nothing and says how long to wait.
    """

    def __init__(self, clock, limits: dict[str, int], period: float, max_keys: int = MAX_KEYS):
        self.clock = clock
        self.limits = dict(limits)
        self.period = period
        self.max_keys = max_keys
        self._attempts: dict[Hashable, deque[float]] = {}
        self._next_sweep = 0.0

    def _recent(self, key: Hashable, now: float) -> deque[float]:
        times = self._attempts.get(key)
        if times is None:
            return deque()
        while times and times[0] <= now - self.period:
            times.popleft()
        if not times:
            # forget keys with nothing recent, so scanning many names cannot grow memory forever
            del self._attempts[key]
        return times

    def _sweep(self, now: float) -> None:
        """Forget every key with nothing recent (at most once a 20th of a period: it walks them all)."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + self.period / 20
        for key in list(self._attempts):
            self._recent(key, now)

    def wait(self, **keys: str) -> float:
        """Seconds until one more attempt with these keys is allowed; 0 when it is allowed now."""
        now = self.clock.seconds()
        wait = 0.0
        for kind, key in keys.items():
            times = self._recent((kind, key), now)
            if len(times) >= self.limits[kind]:
                wait = max(wait, times[0] + self.period - now)
        return wait

    def attempt(self, **keys: str) -> float:
        """Count one attempt against every key and return 0, or count nothing and return the wait."""
        now = self.clock.seconds()
        wait = self.wait(**keys)
        if wait > 0:
            return wait
        new = [(kind, key) for kind, key in keys.items() if (kind, key) not in self._attempts]
        if new and len(self._attempts) + len(new) > self.max_keys:
            self._sweep(now)
            if len(self._attempts) + len(new) > self.max_keys:
                return self.period / 20  # too many strangers at once: nobody new until some age out
        for kind, key in keys.items():
            self._attempts.setdefault((kind, key), deque()).append(now)
        return 0.0

    def refund(self, **keys: str) -> None:
        """Give back the latest attempt of each key (an attempt that turned out to be no attack)."""
        for kind, key in keys.items():
            times = self._attempts.get((kind, key))
            if times:
                times.pop()
                if not times:
                    del self._attempts[(kind, key)]

    def clear(self, **keys: str) -> None:
        """Forget every attempt of these keys."""
        for kind, key in keys.items():
            self._attempts.pop((kind, key), None)

    def __len__(self) -> int:
        return len(self._attempts)


class LoginThrottle:
    """Log-in attempts: ``per_name`` per account name and ``per_address`` per address in ``period``."""

    def __init__(
        self, clock, per_name: int = 5, per_address: int = 20, period: float = 900.0, max_keys: int = MAX_KEYS
    ):
        self.counts = Throttle(clock, {"name": per_name, "address": per_address}, period, max_keys)

    def attempt(self, name: str, address: str) -> float:
        """Count this log-in attempt (0), or refuse it uncounted (the seconds to wait)."""
        return self.counts.attempt(name=name.lower(), address=address)

    def wait(self, name: str, address: str) -> float:
        return self.counts.wait(name=name.lower(), address=address)

    def succeeded(self, name: str, address: str) -> None:
        """A right password: clear the name's count; the address gets this attempt back."""
        self.counts.clear(name=name.lower())
        self.counts.refund(address=address)

    def refund(self, name: str, address: str) -> None:
        """An attempt that was never tried (the site was busy): both keys get it back."""
        self.counts.refund(name=name.lower(), address=address)


class SignupThrottle:
    """Sign-ups: ``per_address`` per address and ``per_email`` per mailbox in ``period``."""

    def __init__(
        self, clock, per_address: int = 5, per_email: int = 3, period: float = 3600.0, max_keys: int = MAX_KEYS
    ):
        self.counts = Throttle(clock, {"address": per_address, "email": per_email}, period, max_keys)

    def attempt(self, address: str, email: str) -> float:
        """Count this sign-up (0), or refuse it uncounted (the seconds to wait)."""
        return self.counts.attempt(address=address, email=mailbox(email))

    def refund(self, address: str, email: str) -> None:
        """A sign-up that was never tried (the site was busy)."""
        self.counts.refund(address=address, email=mailbox(email))


def mailbox(email: str) -> str:
    """The mailbox an address delivers to, as far as the market can tell: lower case, without a
    ``+tag`` (``Ann+2@Example.org`` and ``ann@example.org`` are one mailbox)."""
    local, _, domain = email.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


class Busy(Exception):
    """More password hashing is waiting than the site lets wait."""


class HashingGate:
    """At most ``running`` password hashes at once, at most ``waiting`` more in line.

    argon2 takes ~190 ms of a core a hash; without a cap, a crowd of log-ins and sign-ups from many
    addresses would fill the thread pool and the CPU. Over the line, :class:`Busy` at once.
    """

    def __init__(self, running: int = 2, waiting: int = 64):
        self._semaphore = defer.DeferredSemaphore(running)
        self.waiting = waiting

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        if self._semaphore.tokens == 0 and len(self._semaphore.waiting) >= self.waiting:
            raise Busy("too many log-ins and sign-ups at once")
        return await self._semaphore.run(deferToThread, work, *args)
