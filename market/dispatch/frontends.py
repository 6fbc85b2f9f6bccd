"""This front end among others: its heartbeat, the matcher role, and requests that cross front ends.

The ``Coordinator`` is a child service of ``twistd market`` next to the dispatcher
(``market.tap``). It beats every ``HEARTBEAT_SECONDS`` (``store.frontends.beat``: heartbeat,
role renewed or taken when free, live front ends counted — the rules are
``market.core.frontends``). Then:

- while this front end holds the matcher role, its dispatcher's pool is THE pooling window of the
  market: its own workers' requests go in directly (one front end alone works as before), and the
  coordinator polls ``work_requests`` for the other front ends' requests and puts them in the same
  pool; the window writes each one's answer (its lease, or nothing) in its row, in the window's
  transaction (``store.frontends.assign_shared_window``);
- while it does not, its workers' requests go in ``work_requests`` and the coordinator polls for
  their answers (every ``POLL_SECONDS`` while any waits), then answers each worker with its lease.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from market.core import frontends as rules
from market.core.pool import NoWork
from market.dispatch.groupcommit import GroupCommit
from market.store import frontends as sql

log = Logger()

#: the holder deletes old request rows and long-gone front ends every this many heartbeats
TIDY_EVERY = 30
#: a holder whose last look found no request looks every this many polls (50 ms) until one does
IDLE_POLLS = 5
#: how often requests and answers are looked for in the database while any may be there
POLL_SECONDS = 0.01


def new_frontend(rpc: str, host: str | None = None, pid: int | None = None) -> rules.FrontEnd:
    """A fresh id for this process, ``host:pid:random`` (a restart is a new front end)."""
    host = (host or socket.gethostname())[:120]
    pid = os.getpid() if pid is None else pid
    return rules.FrontEnd(f"{host}:{pid}:{uuid.uuid4().hex[:8]}", host, pid, rpc[:255])


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Coordinator(service.Service):
    """The matcher role and the request table, for one dispatcher."""

    name = "frontends"

    def __init__(
        self,
        db,
        dispatcher,
        me: rules.FrontEnd,
        single: bool,
        clock=None,
        role_seconds: float = rules.ROLE_SECONDS,
        heartbeat: float = rules.HEARTBEAT_SECONDS,
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.db = db
        self.dispatcher = dispatcher
        self.me = me
        #: SQLite: this is the only front end (``register`` refused a second), always the holder
        self.single = single
        self.clock = clock
        self.role_seconds = role_seconds
        #: how long a request through the database waits for a window (a long window: longer)
        self.remote_wait = max(rules.REMOTE_WAIT_SECONDS, 3 * float(dispatcher.settings.window))
        self.holds_role = single
        self.live = 1
        self._pooled: set[int] = set()  # request rows in the pool now
        self._catch_up = True  # take every pending row at the next poll (just became holder)
        self._waiting: dict[int, tuple[defer.Deferred, float]] = {}  # row -> (answer, give up at)
        self._cancelled: set[int] = set()
        self._windowed: set[int] = set()  # rows a window of this pool took (answered there or by another holder)
        self._beats = 0
        self._ticks = 0
        self._found = False  # the last look for requests found some
        self._renewed_at: float | None = None  # when a heartbeat last succeeded (this process's clock)
        #: requests are written group-committed: those that arrive while one batch is written go
        #: in the next one
        self._puts = GroupCommit(lambda asks: self.db.run(sql.put_requests, me.id, asks))
        self._beat = task.LoopingCall(self.beat)
        self._beat.clock = clock
        self._heartbeat = heartbeat
        self._poll = task.LoopingCall(self.poll)
        self._poll.clock = clock
        #: counters for monitoring and the benchmark
        self.remote_requests = 0
        self.remote_answered = 0
        self.remote_wait_total = 0.0
        self.taken = 0  # how many times this front end took the role

    # -- start, stop, heartbeat -------------------------------------------------------------------
    def register(self) -> rules.Beat:
        """Register this front end (synchronously, before serving). On SQLite this refuses
        (``Conflict``) when another front end is alive on the database."""
        beat = self.db.transact(sql.register, self.me, self.role_seconds, self.single, pid_alive)
        self._apply(beat)
        return beat

    def startService(self):
        super().startService()
        self.dispatcher.coordinator = self
        self._beat.start(self._heartbeat, now=False).addErrback(lambda f: log.failure("heartbeat stopped", f))
        if not self.single:
            self._poll.start(POLL_SECONDS, now=False).addErrback(lambda f: log.failure("request poll stopped", f))

    def stopService(self):
        super().stopService()
        for loop in (self._beat, self._poll):
            if loop.running:
                loop.stop()
        waiting, self._waiting = self._waiting, {}
        for answer, _ in waiting.values():
            if not answer.called:
                answer.callback(NoWork(1.0, "the front end is stopping"))
        d = self.db.run(sql.stop, self.me.id)
        return d.addErrback(lambda f: log.failure("could not mark this front end stopped", f))

    def beat(self):
        self._beats += 1
        tidy = 4 * self.remote_wait if self.holds_role and self._beats % TIDY_EVERY == 0 else None
        d = self.db.run(sql.beat, self.me.id, self.role_seconds, None, tidy)
        d.addCallbacks(self._apply, self._beat_failed)
        return d

    def _beat_failed(self, f) -> None:
        log.failure("heartbeat failed; will retry", f)
        if self.holds_role and not self.single and self._renewed_at is not None:
            if self.clock.seconds() - self._renewed_at >= self.role_seconds:
                # it cannot know it still holds the role: the others may have taken it
                self.holds_role = False
                log.warn("front end {me} gives up the matcher role: no heartbeat for its expiry", me=self.me.id)

    def _apply(self, beat: rules.Beat) -> None:
        self._renewed_at = self.clock.seconds()
        was = self.holds_role
        self.holds_role = beat.holds_role or self.single
        self.live = beat.live
        if self.holds_role and not was:
            self.taken += 1
            self._catch_up = True
            log.info("front end {me} holds the matcher role ({live} front end(s) alive)", me=self.me.id, live=beat.live)
        elif was and not self.holds_role:
            log.warn("front end {me} lost the matcher role to {holder}", me=self.me.id, holder=beat.holder)

    # -- requests ---------------------------------------------------------------------------------
    def request_remote(self, client_id: int, speed: float, granted: float):
        """A request of this front end's worker, for the holder's window -> Deferred of its lease
        or ``NoWork``."""
        self.remote_requests += 1
        asked = self.clock.seconds()
        answer: defer.Deferred = defer.Deferred(lambda d: None)

        def put(row: int):
            if answer.called:  # the worker hung up meanwhile
                if row not in self._waiting:
                    self._cancelled.add(row)
                    self._waiting[row] = (defer.Deferred(), asked)
                return
            earlier = self._waiting.pop(row, None)
            if earlier is not None and not earlier[0].called:  # the same worker asked twice in one batch
                earlier[0].callback(NoWork(self.dispatcher.pool.policy.retry_after, "replaced by a newer request"))
            self._waiting[row] = (answer, asked + self.remote_wait)
            answer.addBoth(self._answered, row, asked)

        def failed(f):
            if not answer.called:
                answer.errback(f)

        d = self._puts.submit((client_id, speed, granted))
        d.addCallbacks(put, failed)
        return answer

    def _answered(self, result, row: int, asked: float):
        if row in self._waiting:  # cancelled by its caller: withdraw it at the next poll
            self._cancelled.add(row)
        self.remote_answered += 1
        self.remote_wait_total += self.clock.seconds() - asked
        return result

    def poll(self):
        work = []
        self._ticks += 1
        # an idle holder looks less often: every IDLE_POLLS ticks after a poll that found nothing
        due = self._catch_up or self._found or self._ticks % IDLE_POLLS == 0
        if self.holds_role and (self.live > 1 or self._catch_up) and not self.single and due:
            work.append(self._take_requests())
        if self._waiting:
            work.append(self._collect())
        if not work:
            return None
        return defer.DeferredList(work, consumeErrors=True)

    def _take_requests(self):
        catching_up = self._catch_up
        self._catch_up = False
        d = self.db.run(sql.new_requests, self.remote_wait)

        def pool(rows):
            self._found = bool(rows)
            # a row pooled before and pending no more (answered, withdrawn) never is again: forget
            # it. One answered after this read still shows pending here: it stays known, so it is
            # never put in the pool twice (where it would replace its worker's newer request)
            seen = {int(row["id"]) for row in rows}
            full = len(rows) >= rules.MAX_REQUESTS_PER_POLL
            last = max(seen, default=0)
            self._pooled = {r for r in self._pooled if r in seen or (full and r > last)}
            for row in rows:
                rid = int(row["id"])
                if rid in self._pooled:
                    continue
                self._pooled.add(rid)
                extra = {"slice": float(row["slice"]), "remote": rid, "frontend": row["frontend"]}
                answer = self.dispatcher.pool.request(int(row["client_id"]), float(row["speed"]), extra)
                answer.addBoth(self._window_answered, rid)

        def failed(f):
            if catching_up:
                self._catch_up = True
            log.failure("could not read requests of other front ends; will retry", f)

        return d.addCallbacks(pool, failed)

    def _window_answered(self, result, row: int):
        """The pool answered a request that came through the database: the window wrote its answer
        in its row; a request answered outside a window (replaced by the same worker's newer one,
        or the pool stopping) is marked so its front end stops waiting."""
        if isinstance(result, Failure):  # the window failed: the row is still pending, take it again
            self._windowed.discard(row)
            self._pooled.discard(row)
        elif row in self._windowed:  # a window answered it, here or (claimed there) on another holder
            self._windowed.discard(row)
        elif isinstance(result, NoWork):
            self.db.run(sql.withdraw, [row]).addErrback(lambda f: log.failure("could not withdraw request", f))
        return None  # a failure was the window's to log; the row's front end waits for the next window

    def windowed(self, rows) -> None:
        """Request rows a window of this pool is about to claim, match and answer."""
        self._windowed.update(rows)

    def _collect(self):
        now = self.clock.seconds()
        rows = list(self._waiting)
        give_up = [r for r, (_, until) in self._waiting.items() if until <= now or r in self._cancelled]
        d = self.db.run(sql.collect, self.me.id, rows, give_up)

        def deliver(done: dict[int, Any]):
            for row, lease in done.items():
                entry = self._waiting.pop(row, None)
                self._cancelled.discard(row)
                if entry is None or entry[0].called:
                    continue
                nothing = NoWork(
                    self.dispatcher.pool.policy.retry_after, "no job was matched to this client in this window"
                )
                entry[0].callback(lease if lease is not None else nothing)

        def failed(f):
            # the database is away: answer the workers that waited too long, keep the others
            for row in [r for r, (_, until) in self._waiting.items() if until <= now]:
                answer, _ = self._waiting.pop(row)
                if not answer.called:
                    answer.errback(f)
            log.failure("could not read answers to requests; will retry", f)

        return d.addCallbacks(deliver, failed)
