"""The job and batch pages' live figures as server-sent events: ``GET /jobs/ID/events`` and
``GET /batches/ID/events`` (``market.store.live.batch_live``: progress, jobs by state, cost).

Every ``EVERY`` seconds the stream sends one ``data:`` line of JSON (``market.store.live.job_live``:
progress, slices, execution seconds, cost so far, the estimate of the rest) and ends after the
event that says the job is over. Nothing here waits on the reactor: each tick is one database read
off its thread, and a tick still reading when the next is due is skipped. Streams are bounded:
``PER_ACCOUNT`` open at once per member and ``TOTAL`` for the site (more are refused with 429), and
each closes after ``LIFETIME`` seconds (the browser's EventSource reconnects by itself), so a
stream's unread bytes stay small even if a client never reads them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task

from market.store import live as sql_live
from market.web.context import Pages, Refused

#: seconds between events
EVERY = 2.0
#: streams one member may have open at once, and the whole site
PER_ACCOUNT = 4
TOTAL = 200
#: seconds a stream stays open before the browser reconnects
LIFETIME = 300.0


class LiveStreams(Pages):
    """The events page; its open streams, counted per account."""

    def __init__(self, web, every: float = EVERY, lifetime: float = LIFETIME):
        super().__init__(web)
        self.every, self.lifetime = every, lifetime
        self.open: dict[int, int] = {}

    def total(self) -> int:
        return sum(self.open.values())

    async def events(self, request, visitor, job_id):
        account = visitor.account_id
        return await self._events(request, visitor, lambda tx: sql_live.job_live(tx, account, job_id))

    async def batch_events(self, request, visitor, batch_id):
        account = visitor.account_id
        return await self._events(request, visitor, lambda tx: sql_live.batch_live(tx, account, batch_id))

    async def _events(self, request, visitor, read: Callable[[Any], dict[str, Any]]):
        account = visitor.account_id
        first = await self.web.db.run(read)  # 404 for another's job or batch
        if self.open.get(account, 0) >= PER_ACCOUNT or self.total() >= TOTAL:
            raise Refused(429, "Too many live pages are open; close some or reload this one later.")
        self.open[account] = self.open.get(account, 0) + 1
        try:
            await self._stream(request, read, first)
        finally:
            self.open[account] -= 1
            if not self.open[account]:
                del self.open[account]
        return b""

    def _stream(self, request, read: Callable[[Any], dict[str, Any]], first: dict[str, Any]) -> defer.Deferred:
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        clock = self.web.clock
        ended: defer.Deferred = defer.Deferred()
        state = {"reading": False, "done": False}
        started = clock.seconds()

        def end(_=None):
            if not state["done"]:
                state["done"] = True
                if loop.running:
                    loop.stop()
                ended.callback(None)

        def send(figures: dict[str, Any]) -> None:
            if state["done"]:
                return
            request.write(b"data: " + json.dumps(figures).encode("utf-8") + b"\n\n")
            if figures["over"] or clock.seconds() - started >= self.lifetime:
                end()

        def tick():
            if state["reading"] or state["done"]:
                return  # the last read is still running: skip, never queue
            state["reading"] = True
            d = self.web.db.run(read)

            def got(figures):
                state["reading"] = False
                send(figures)

            def failed(_f):
                state["reading"] = False
                end()

            d.addCallbacks(got, failed)

        request.notifyFinish().addBoth(end)  # the browser went away
        loop = task.LoopingCall(tick)
        loop.clock = clock
        send(first)
        if not state["done"]:
            loop.start(self.every, now=False)
        return ended
