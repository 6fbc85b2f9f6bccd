"""Every front end's view of the rows other front ends change: it reads the cache generations
(``market.store.caches``) every ``caches.CHECK_SECONDS`` and drops the caches of the kinds that
moved, so a client suspended, revoked or re-measured, a token revoked or an account disabled by
any process reaches this one within about a second. The caches' own lifetimes stay as a back-stop
for a database that cannot be read meanwhile."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import task
from twisted.logger import Logger

from market.store import caches

log = Logger()


class CacheWatch:
    """Calls ``drops[name]()`` when the generation ``name`` moves (and at the first read)."""

    def __init__(self, db, clock, drops: dict[str, Callable[[], None]], every: float = caches.CHECK_SECONDS):
        self.db = db
        self.drops = drops
        self.every = every
        self.seen: dict[str, int] = {}
        self.failing = False
        self._loop = task.LoopingCall(self.check)
        self._loop.clock = clock

    def start(self) -> None:
        self._loop.start(self.every, now=True)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def check(self):
        return self.db.run(caches.generations).addCallbacks(self._compare, self._failed)

    def _compare(self, now: dict[str, int]) -> None:
        if self.failing:
            log.info("cache generations readable again")
            self.failing = False
        for name, drop in self.drops.items():
            if name not in self.seen or now.get(name) != self.seen[name]:
                drop()
        self.seen = now

    def _failed(self, failure) -> None:
        # the database is away: the caches keep their own lifetimes meanwhile; one line per outage
        if not self.failing:
            log.warn("cannot read the cache generations: {error}", error=failure.getErrorMessage())
            self.failing = True
