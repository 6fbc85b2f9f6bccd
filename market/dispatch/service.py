"""The dispatcher: requests, the pool, leases, check-ins, the prober and the lease reaper.

It owns no SQL (``market.store.jobs`` does) and no matching rule (``market.core.matcher``) and no
window rule (``market.core.pool``): it wires them to a clock and a database. Every method returns a
Deferred; database work runs off the reactor thread.
"""

from __future__ import annotations

import functools
import hashlib
import os
import struct
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer, task
from twisted.logger import Logger

from market import accounts
from market.core import matcher
from market.core import verification as policy
from market.core.errors import Forbidden, MarketError, NotFound
from market.core.pool import NoWork, Pool, WindowPolicy
from market.core.rules import JobKind, LeaseStatus, Outcome, SliceStatus
from market.dispatch import prober
from market.dispatch.cachewatch import CacheWatch
from market.dispatch.groupcommit import GroupCommit
from market.settings import DispatchSettings
from market.store import caches
from market.store import clients as sql_clients
from market.store import frontends as sql_frontends
from market.store import jobs as sql_jobs
from market.store import logs as sql_logs
from market.store import secrets as sql_secrets
from market.store import statechunks as sql_statechunks
from market.store import verification as sql_verify
from market.tasklet import envelope

log = Logger()

CLIENT_CACHE_SECONDS = 30.0
# a state up to this size is hashed on the reactor thread (well under a millisecond); a larger one
# in a thread (hashlib releases the GIL), so a megabytes-long state never stalls other callers
INLINE_HASH_BYTES = 64 * 1024


class SecureDraws:
    """Uniform floats in [0, 1) from the operating system's random source (as
    ``random.SystemRandom().random``), read 512 at a time: one system call per 512 check-ins
    instead of one each, on the reactor thread of a market where every check-in draws."""

    BATCH = 512

    def __init__(self) -> None:
        self._left: list[float] = []

    def __call__(self) -> float:
        if not self._left:
            words = struct.unpack(f"<{self.BATCH}Q", os.urandom(8 * self.BATCH))
            self._left = [(w >> 11) * (1.0 / (1 << 53)) for w in words]  # 53 random bits, as random()
        return self._left.pop()


def _ready_job(row: dict[str, Any]) -> matcher.ReadyJob:
    return matcher.ReadyJob(id=row["id"], price=row["price"], submitted_at=row["submitted_at"])


class Dispatcher(service.Service):
    """The market's scheduling service (a child of the ``twistd market`` MultiService)."""

    name = "dispatcher"

    def __init__(
        self, db, settings: DispatchSettings, clock=None, offload=None, draw: Callable[[], float] | None = None
    ):
        if clock is None:
            from twisted.internet import reactor as clock
        self.db = db
        self.settings = settings
        self.clock = clock
        #: the helper processes (``market.offload``) that do CPU-heavy work on members' and workers'
        #: input; the RPC and web layers use it through the dispatcher
        self.offload = offload
        self._secret: bytes | None = None  # the database's probe secret, read at the first probe
        #: the random draw that samples slices for replay (uniform in [0, 1)); a worker must not
        #: be able to predict which of its slices will be checked
        self._draw = draw if draw is not None else SecureDraws()
        #: replay leases handed out (their check-ins are compared, not committed); reloaded at start
        self._replays: set[int] = set()
        self.pool = Pool(clock, WindowPolicy(settings.window, settings.threshold), self._assign)
        #: this front end among others (``market.dispatch.frontends.Coordinator``), set when it
        #: starts; None: the only front end, its pool the market's window (tests, the simulator)
        self.coordinator: Any = None
        self._reaper = task.LoopingCall(self.reap)
        self._reaper.clock = clock
        # client id -> (client row with last_speed, when read): a worker asks for work every slice,
        # and reading its row, speed and touching last_seen each time was a third of a cycle's SQL
        self._clients: dict[int, tuple] = {}
        # ... dropped when any front end changes a client (suspension, revocation, speed) or
        # someone's credentials: the same view on every front end within about a second
        self._watch = CacheWatch(
            db, clock, {caches.CLIENTS: self._clients.clear, caches.CREDENTIALS: accounts.credentials_changed}
        )
        # at most 4 MiB of states per transaction: MariaDB's default packet limit is 16 MiB, and a
        # script carries the states escaped (up to twice their size); a larger state goes alone
        # The checks of slices to replay are opened in the same transaction (every slice of a
        # worker under watch has one: a transaction of their own, answered before the worker, cost
        # a third of the check-in throughput on MariaDB)
        verify = settings.verify_settings
        self._verify = verify if verify.fraction > 0 or verify.watch_slices > 0 else None
        self._checkins = GroupCommit(
            lambda batch: self.db.run(sql_jobs.checkin_many, batch, self._verify),
            max_bytes=4 * 1024 * 1024,
            size=lambda checkin: len(checkin.state),
        )

    # -- service -------------------------------------------------------------------------------
    def startService(self):
        super().startService()
        self.db.run(sql_verify.open_replay_leases).addCallbacks(
            self._replays.update, lambda f: log.failure("could not read open replay leases", f)
        )
        self._watch.start()
        # expire leases that ended while we were down, then keep reaping
        self._reaper.start(self.settings.reap_interval, now=True).addErrback(
            lambda f: log.failure("lease reaper stopped", f)
        )

    def stopService(self):
        if self._reaper.running:
            self._reaper.stop()
        self._watch.stop()
        super().stopService()
        stats = self.pool.stats
        log.info(
            "dispatcher stopping: {windows} windows served {served} requests (mean wait {wait:.3f} s);"
            " {checkins} check-ins in {batches} transactions ({mean:.1f} per transaction)",
            windows=stats.windows_closed,
            served=stats.requests_served,
            wait=stats.mean_wait,
            checkins=self._checkins.items,
            batches=self._checkins.batches,
            mean=self._checkins.mean_batch,
        )
        # answer every waiting worker, wait for a window being assigned and the check-ins queued
        return defer.gatherResults([self.pool.stop(), self._checkins.idle()])

    def reap(self):
        now = self.clock.seconds()
        d = self.db.run(sql_jobs.expire_leases, now)

        def done(expired):
            if expired:
                log.info("expired {n} overdue lease(s): {ids}", n=len(expired), ids=expired)
            # test jobs over for longer than a check-in could still be on its way: their rows go
            # (the client keeps its speed record); in its own short transaction
            return self.db.run(sql_jobs.clean_test_jobs, now - self.settings.grace).addCallback(checks)

        def checks(_):
            # checks nobody could take within verify-wait stay unverified, and disputes nobody
            # decided within dispute-timeout are given up undecided: never blocked forever
            d = self.db.run(
                sql_verify.expire,
                now,
                self.settings.verify_wait,
                policy.NO_VERIFIER,
                self.settings.dispute_timeout,
                policy.NO_DECIDER,
            )
            # chunks of check-ins that never committed (refused, late, interrupted) go
            return d.addCallback(lambda _: self.db.run(sql_statechunks.drop_orphans))

        d.addCallback(done)
        d.addErrback(lambda f: log.failure("lease reaper failed; will retry", f))
        return d

    # -- work requests -------------------------------------------------------------------------
    def negotiate(self, proposed: float | None) -> float:
        s = self.settings
        if proposed is None:
            return s.default_slice
        return float(min(max(proposed, s.min_slice), s.max_slice))

    @defer.inlineCallbacks
    def request(
        self,
        client_id: int,
        proposed_slice: float | None = None,
        sandbox_level: str | None = None,
        verify_on: str | None = None,
    ):
        """The paper's ``request``: a test job at once, or a job after the pooling window, or NoWork.

        ``verify_on``: the interpreter of a worker that opted in to verify; it gets a replay lease
        at once when a check waits that it may replay (``core.verification.pick_check``)."""
        now = self.clock.seconds()
        granted = self.negotiate(proposed_slice)
        cached = self._clients.get(client_id)
        if (
            cached is not None
            and now - cached[1] < CLIENT_CACHE_SECONDS
            and cached[0]["sandbox_level"] == (sandbox_level or cached[0]["sandbox_level"])
        ):
            client = cached[0]
        else:
            client = yield self.db.run(self._client_for_request, client_id, now, sandbox_level)
            self._clients[client_id] = (client, now)
        if client["suspect"]:
            raise Forbidden(f"client {client_id} gave a wrong test-job answer and is suspended — ask the operator")
        if prober.needs_probe(client["last_speed"], now, self.settings.probe_interval):
            last = client["last_speed"]
            dispatch = yield self._probe(client_id, None if last is None else float(last["speed"]), granted, now)
            return dispatch
        if verify_on:
            # only a trusted worker (not under watch) decides a dispute, unless none came within verify-wait
            trusted = not policy.under_watch(int(client.get("verified_slices") or 0), self.settings.watch_slices)
            verifier = policy.Verifier(client_id, client["account_id"], verify_on, bool(client["suspect"]), trusted)
            replay = yield self.db.run(
                sql_verify.take_check,
                verifier,
                now,
                self.settings.grace,
                self.settings.min_slice,
                self.settings.verify_wait,
            )
            if replay is not None:
                self._replays.add(replay["stateid"])
                return replay
        speed = float(client["last_speed"]["speed"])
        # a worker under watch (every slice replayed) is leased a share of its slice
        # (``policy.slice_seconds``): a made-up slice's replay runs to a cap that shrinks with it
        granted = policy.slice_seconds(
            granted, int(client.get("verified_slices") or 0), self.settings.min_slice, self.settings.verify_settings
        )
        co = self.coordinator
        if co is not None and not co.holds_role:  # the window runs on the role's holder
            answer = yield co.request_remote(client_id, speed, granted)
        else:
            answer = yield self.pool.request(client_id, speed, {"slice": granted})
        return answer

    @staticmethod
    def _client_for_request(tx, client_id, now, sandbox_level):
        client = sql_clients.client_by_id(tx, client_id)
        sql_clients.touch_client(tx, client_id, now, sandbox_level)
        client["last_speed"] = sql_clients.last_speed(tx, client_id)
        if sandbox_level is not None:
            client["sandbox_level"] = sandbox_level
        return client

    @defer.inlineCallbacks
    def _probe(self, client_id: int, speed: float | None, granted: float, now: float):
        """A probe at once, granted the slice the client negotiated (as a job would be) and sized
        to last ``probe-seconds`` (at most half the slice) at its last speed, or ``test-job-size``
        cubed steps if it was never measured; Conflict if the client has one out, or has had its
        probes for this probe interval (``test-jobs-per-interval``)."""
        s = self.settings
        secret = yield self._probe_secret()
        steps = prober.steps_for(speed, min(s.probe_seconds, granted / 2), s.test_job_size**3)
        lease = yield self.db.run(
            sql_jobs.create_probe,
            client_id,
            functools.partial(prober.make_probe, secret, steps=steps),
            steps,
            granted,
            s.grace,
            now,
            s.test_jobs_per_interval,
            s.probe_interval,
        )
        return lease

    def _probe_secret(self):
        """-> Deferred of the database's probe secret, read once."""
        if self._secret is not None:
            return defer.succeed(self._secret)

        def keep(secret):
            self._secret = secret
            return secret

        return self.db.run(sql_secrets.probe_secret).addCallback(keep)

    def _assign(self, requests):
        clients = [matcher.PooledClient(id=r.client_id, speed=r.speed, requested_at=r.requested_at) for r in requests]
        granted = {r.client_id: r.extra["slice"] for r in requests}
        co = self.coordinator
        if co is None:
            d = self.db.run(
                sql_jobs.assign_window,
                clients,
                self.clock.seconds(),
                self.settings.grace,
                granted,
                matcher.match,
                _ready_job,
            )
        else:
            # one window over this front end's requests and those of the others (put in the
            # database); each lease records the front end whose worker asked
            remote = {r.client_id: r.extra["remote"] for r in requests if r.extra.get("remote")}
            co.windowed(remote.values())
            issued_by = {r.client_id: r.extra.get("frontend") or co.me.id for r in requests}
            d = self.db.run(
                sql_frontends.assign_shared_window,
                clients,
                remote,
                issued_by,
                self.clock.seconds(),
                self.settings.grace,
                granted,
                matcher.match,
                _ready_job,
            ).addCallback(lambda result: result[0])

        def by_request(by_client):
            return {r.key: by_client[r.client_id] for r in requests if r.client_id in by_client}

        return d.addCallback(by_request)

    # -- check-ins -------------------------------------------------------------------------------
    def checkin(
        self,
        client_id: int,
        stateid: int,
        state: bytes,
        slice_status: str = SliceStatus.OK,
        progress: float | None = None,
        capped: bool = False,
        chunked: tuple[Any, tuple[int, int, str]] | None = None,
    ):
        """The paper's ``state``, group-committed with the check-ins that arrive meanwhile.

        The state's header is read and its payload hashed (``sql_jobs.state_facts_and_origin``)
        before it is queued, outside any transaction: the transaction only compares them with the
        lease, and opens the slice's replay check if it is due (``sql_jobs.SliceCheck``).
        ``capped``: on a replay lease, the verifier says its replay hit its step cap without
        reaching the target (``info {replay: 'capped'}``) — no evidence of another state."""
        # ``chunked``: a state sent in chunks (``store.statechunks``), already read back and
        # hashed: ((facts, interpreter, mark), (chunks, size, digest)); ``state`` is then empty
        at = self.clock.seconds()  # it arrived now: hashing it is the market's time, not the worker's
        if stateid in self._replays:
            return self._hashed(_reached_payload, state).addCallback(self._replayed, client_id, stateid, capped)
        if chunked is not None:
            facts = defer.succeed(chunked[0])
        else:
            facts = self._hashed(sql_jobs.state_facts_and_origin, state)

        def submit(read):
            f, interpreter, mark = read
            return self._checkins.submit(
                sql_jobs.CheckIn(
                    stateid,
                    client_id,
                    state,
                    at,
                    slice_status,
                    progress,
                    f,
                    self._slice_check(client_id, interpreter, mark),
                    chunked[1] if chunked is not None else None,
                )
            )

        return facts.addCallback(submit)

    # -- verification by replay ----------------------------------------------------------------
    def _hashed(self, fn, data: bytes):
        """``fn(data)`` (a hash), in a thread for a large input (hashlib releases the GIL)."""
        if len(data) <= INLINE_HASH_BYTES:
            return defer.maybeDeferred(fn, data)
        from twisted.internet import threads

        return threads.deferToThread(fn, data)

    def _replayed(self, reached: str, client_id: int, stateid: int, capped: bool = False):
        """Compare a verifier's answer with its check's target, in one short transaction."""

        def done(answer):
            # a decided dispute may have made the worker or the first verifier suspect, and an
            # agreement changed the worker's verified slices: read client rows afresh (replay
            # answers are a few per cent of check-ins)
            self._clients.clear()
            return answer

        return self.db.run(
            sql_verify.record_replay,
            stateid,
            client_id,
            reached,
            self.clock.seconds(),
            capped,
            self.settings.watch_slices,
        ).addCallback(done)

    def _slice_check(self, client_id: int, interpreter: str, mark: str) -> sql_jobs.SliceCheck | None:
        """What the check-in's transaction needs to decide whether to replay the slice
        (``policy.why_verify``): the draw, made here, and the worker's speed from its cached row
        (None: read there). Its verified slices come with the locked lease, never stale."""
        if self._verify is None:
            return None
        cached = self._clients.get(client_id)
        last = cached[0].get("last_speed") if cached is not None else None
        speed = float(last["speed"]) if last else None
        return sql_jobs.SliceCheck(self._draw(), interpreter, mark, speed)

    @defer.inlineCallbacks
    def finish(
        self,
        client_id: int,
        stateid: int,
        result: bytes | None,
        outcome: str = Outcome.FINISHED,
        error: str | None = None,
        output: str | bytes = "",
    ):
        """The paper's ``result``: store it and pay the last slice in one transaction. A probe's
        answer is checked first, outside that transaction and off the reactor (in a helper): the
        transaction only records the verdict, and the answer carries the measured ``speed``.
        ``output``: what the last slice printed, stored in the same transaction (so whoever sees
        the job finished sees all its output)."""
        now = self.clock.seconds()  # the slice ended when the answer arrived, not after its check
        if stateid in self._replays:
            reached = yield self._hashed(_sha256, result or b"")
            answer = yield self._replayed(reached, client_id, stateid)
            return answer

        def probe_of(tx):
            job = sql_jobs.job_row(tx, sql_jobs.lease_row(tx, stateid)["job_id"])
            return (job["id"], job["probe_size"]) if job["kind"] == JobKind.TEST else None

        probe = yield self.db.run(probe_of)
        right = False
        if probe is not None and outcome == Outcome.FINISHED and result is not None:
            if len(result) <= prober.MAX_ANSWER:  # a longer answer is wrong unread
                secret = yield self._probe_secret()
                try:
                    right = yield self.offload.call(
                        "market.dispatch.prober:answer_is_right",
                        result,
                        secret,
                        probe[0],
                        probe[1],
                        owner=("client", client_id),
                    )
                except MarketError as e:  # busy or too slow: an honest worker's answer is neither
                    log.info("probe answer of client {client} not checked: {why}", client=client_id, why=e)
                    raise

        def work(tx):
            d = sql_jobs.lease_row(tx, stateid)
            job = sql_jobs.job_row(tx, d["job_id"])
            answer = sql_jobs.finish(tx, stateid, client_id, result, outcome, error, now)
            if output and answer["status"] == LeaseStatus.FINISHED and not answer.get("duplicate"):
                data = sql_logs.slice_output(output, self.settings.slice_log)
                sql_logs.append(tx, d["job_id"], stateid, data, now, self.settings.job_log)
            if job["kind"] == JobKind.TEST and answer["status"] == LeaseStatus.FINISHED and not answer["duplicate"]:
                seconds = now - d["checked_out_at"]
                correct, speed = prober.verdict(right, job["probe_size"], seconds)
                if correct:
                    sql_clients.record_speed(tx, client_id, prober.operations(job["probe_size"]), seconds, now)
                    answer["speed"] = speed
                else:
                    sql_clients.mark_suspect(tx, client_id)
                    answer["suspect"] = True
            return answer

        answer = yield self.db.run(work)
        if "speed" in answer or answer.get("suspect"):
            self._clients.pop(client_id, None)  # its speed or suspicion changed: read it afresh
        if (
            probe is None
            and answer.get("status") == LeaseStatus.FINISHED
            and not answer.get("duplicate")
            and outcome == Outcome.FINISHED
            and result is not None
        ):
            target = yield self._hashed(_sha256, result)
            yield self.db.run(self._result_check, stateid, target, now)
        return answer

    def _result_check(self, tx, stateid: int, target: str, now: float):
        """Every final result of a job is replayed from its last state (a task is not: it is no
        step machine). The replay runs on the interpreter that state names."""
        lease = sql_jobs.lease_row(tx, stateid)
        job = sql_jobs.job_row(tx, lease["job_id"])
        if job["kind"] != JobKind.JOB:
            return None
        row = tx.one("SELECT data, chunks FROM states WHERE id = ?", (lease["state_id"],))
        if row["chunks"]:  # stored in chunks: its header is in the first (checked when it was stored)
            interpreter, mark = _header_of_start(sql_statechunks.state_chunk(tx, lease["state_id"], 0))
        else:
            interpreter, mark = _header_of(bytes(row["data"]))
        last = sql_clients.last_speed(tx, lease["client_id"])
        speed = last["speed"] if last else None
        steps = policy.max_steps(lease["granted_seconds"], speed, self.settings.verify_margin)
        return sql_verify.create_check(
            tx, policy.CheckKind.RESULT, policy.Reason.RESULT, stateid, target, mark, interpreter, steps, now
        )

    def record_log(self, client_id: int, stateid: int, answer: dict, output: str | bytes):
        """Store what a slice printed (``info {log}`` of ``state``) once its check-in was
        accepted: a late slice runs again and prints again, a replay lease printed what the owner
        already has. Cut to ``slice-log`` bytes, the job to ``job-log``.
        Returns ``answer`` (a failure to store is logged, never the check-in's failure)."""
        if stateid in self._replays or (answer or {}).get("status") not in (
            LeaseStatus.ACCEPTED,
            LeaseStatus.FINISHED,
        ):
            return defer.succeed(answer)
        data = sql_logs.slice_output(output, self.settings.slice_log)
        if not data:
            return defer.succeed(answer)
        at = self.clock.seconds()

        def store(tx):
            lease = sql_jobs.lease_row(tx, stateid)
            if lease["client_id"] != client_id or lease["check_id"] is not None:
                return
            sql_logs.append(tx, lease["job_id"], stateid, data, at, self.settings.job_log)

        def failed(f):
            log.failure("cannot store the output of lease {s}", f, s=stateid)
            return answer

        return self.db.run(store).addCallbacks(lambda _: answer, failed)

    def fail(self, client_id: int, stateid: int, slice_status: str, message: str):
        if stateid in self._replays:
            return self.db.run(sql_verify.fail_replay, stateid, client_id, self.clock.seconds())
        return self._fail(client_id, stateid, slice_status, message)

    def _fail(self, client_id: int, stateid: int, slice_status: str, message: str):
        """A slice that produced no usable state (crash, memory, refused...): roll back, keep the job.
        A slice that reached no freeze point is paid, and ends the job at the ``nofreeze-strikes``-th."""
        return self.db.run(
            sql_jobs.fail_lease,
            stateid,
            client_id,
            slice_status,
            message,
            self.clock.seconds(),
            self.settings.nofreeze_strikes,
        )


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _reached_payload(data: bytes) -> str:
    """The payload hash of the state a verifier reached; "" for bytes that are no envelope (they
    match no target)."""
    try:
        return envelope.payload_sha256(data)
    except envelope.EnvelopeError:
        return ""


def _header_of_start(piece: bytes) -> tuple[str, str]:
    """:func:`_header_of` from the first chunk of a state stored in chunks."""
    reader = envelope.Inspector()
    try:
        reader.feed(piece)
    except envelope.EnvelopeError:
        return "unknown", ""
    header = reader.header
    if header is None:
        return "unknown", ""
    return header.interpreter, str(getattr(header, "mark", "") or "")


def _header_of(data: bytes) -> tuple[str, str]:
    """(interpreter, mark) of a state's header; the mark is "" in a state of an older runtime."""
    try:
        header = envelope.read_header(data)
    except envelope.EnvelopeError:
        return "unknown", ""
    return header.interpreter, str(getattr(header, "mark", "") or "")


__all__ = ["Dispatcher", "NoWork", "MarketError", "NotFound"]
