"""The simulated market: clients and jobs around the production ``Pool`` and matcher.

What is simulated, and what is not:

- Clients have a fixed speed (probe operations per second; the prober's measurement is taken
  as exact). An online idle client asks ``market.core.pool.Pool`` for work; on ``NoWork`` it waits
  ``retry_after``, doubling (``clients.backoff``) on consecutive misses up to
  ``clients.max_retry``. With churn (``clients.online``/``offline``) clients come and go; one
  that leaves mid-slice loses the slice and the job comes back when its lease expires. A share
  ``clients.miss_rate`` of slices miss their deadline: the work is rolled back and the job is
  ready again at the deadline (slice + allowance), when the simulated reaper expires the lease.
- Jobs arrive at t=0 (``jobs.initial``) and as a Poisson process (``jobs.rate``), with a price
  (integer cents per second) and a length in probe operations. A job runs for at most one
  slice per dispatch, then goes back to the ready list, as in the paper.
- ``jobs.quote_share`` of jobs set their price with the quote rule for a desired speed
  (``quote.rule``, the ``quote`` tool's own) instead of drawing one.
- Each dispatch first spends ``pool.transfer`` seconds moving the state (the client is busy
  but makes no progress), then runs for up to ``pool.slice`` seconds; the lease's deadline is
  slice + ``pool.allowance``.
- Money and every other decision of the market are ``market.core.rules``', kept in ``sim.books``
  exactly as the store keeps them: a window holds the jobs whose owner cannot pay a slice
  (``rules.plan_window``), a lease reserves what its slice may cost, and a check-in is paid
  ``money.payment(price, accepted ms)`` where the accepted time is what the server measures:
  checkout to check-in, transfer included, capped at the granted slice (``rules.accepted_ms``).
  Each job has its own owner and each client its own; owners' budgets are not modelled (every
  owner can pay every slice), so no job is held.

The pool's ``assign`` is where production code is reused verbatim: the ready list's top
candidates (``sim.ready``) go through window planning (``close_window``) and, with the pooled
clients, through ``market.core.matcher.POLICIES``.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import gc
import itertools
import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.python.failure import Failure

from market.core import money, rules
from market.core.matcher import POLICIES, Assignment, Policy, PooledClient, ReadyJob
from market.core.pool import NoWork, Pool, PoolRequest, PoolStats, WindowPolicy
from market.core.rules import JobStatus, LeaseStatus
from quote.rule import quote_sorted
from sim.books import Books, Lease
from sim.clock import SimClock, SimDelayedCall
from sim.ready import ReadyList, candidate_key
from sim.scenario import Scenario

__all__ = [
    "SimJob",
    "SimClient",
    "WindowRecord",
    "RunResult",
    "Simulation",
    "simulate",
    "close_window",
    "fewer_collections",
]

# owners' budgets are not modelled: every owner can pay every slice of a long run
OWNER_BUDGET = money.MAX_CENTS
# bound once: an Enum member looked up on its class costs ~75 ns
_REJECTED, _FINISHED, _READY = LeaseStatus.REJECTED, LeaseStatus.FINISHED, JobStatus.READY


class SimJob:
    """A job's life in the simulation."""

    __slots__ = (
        "id",
        "price",
        "submitted_at",
        "length",
        "done",
        "ready",
        "first_dispatch",
        "finished_at",
        "exec_seconds",
        "paid",
        "slices",
        "rollbacks",
        "quoted_speed",
    )

    def __init__(self, id: int, price: int, submitted_at: float, length: int, quoted_speed: float | None) -> None:
        self.id, self.price, self.submitted_at, self.length = id, price, submitted_at, length
        self.done = 0  # committed probe operations
        self.ready = ReadyJob(id, price, submitted_at)
        self.first_dispatch: float | None = None
        self.finished_at: float | None = None
        self.exec_seconds = 0.0  # accepted execution time
        self.paid = 0  # cents
        self.slices = 0
        self.rollbacks = 0
        self.quoted_speed = quoted_speed  # the speed the owner priced for, if quoted


class SimClient:
    """A volunteer machine's life in the simulation."""

    __slots__ = (
        "id",
        "speed",
        "online",
        "online_since",
        "online_seconds",
        "busy",
        "pending",
        "retry",
        "retry_delay",
        "slice_call",
        "slice_start",
        "slice_exec",
        "slice_missed",
        "job",
        "lease",
        "busy_seconds",
        "lost_seconds",
        "transfer_seconds",
        "earnings",
        "session_call",
    )

    def __init__(self, id: int, speed: float) -> None:
        self.id, self.speed = id, speed
        self.online = False
        self.online_since = 0.0
        self.online_seconds = 0.0
        self.busy = False
        self.pending: Deferred[Lease | NoWork] | None = None
        self.retry: SimDelayedCall | None = None
        self.retry_delay = 0.0  # the wait after the last NoWork (0 after a job)
        self.slice_call: SimDelayedCall | None = None
        self.slice_start = 0.0
        self.slice_exec = 0.0
        self.slice_missed = False
        self.job: SimJob | None = None
        self.lease: Lease | None = None
        self.busy_seconds = 0.0  # accepted execution
        self.lost_seconds = 0.0  # slices that missed their deadline or were cut by departure
        self.transfer_seconds = 0.0  # moving states of accepted slices
        self.earnings = 0
        self.session_call: SimDelayedCall | None = None


@dataclass
class WindowRecord:
    """One closed window's inputs and what the simulation then dispatched (for tests)."""

    at: float
    clients: list[PooledClient]
    ready: list[ReadyJob]
    rng_state: Any
    dispatched: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class RunResult:
    """Everything a run leaves behind for ``sim.metrics``."""

    scenario: Scenario
    jobs: list[SimJob]
    clients: list[SimClient]
    pool: PoolStats
    events: int
    windows: list[WindowRecord]
    books: Books | None = None  # with keep_books: every lease and ledger entry
    trust: Any = None  # the TrustSimulation of a run with a [trust] table (sim.trust)


def close_window(
    books: Books,
    ready: ReadyList,
    clients: list[PooledClient],
    granted: Mapping[int, float],
    policy: Policy,
    now: float,
    rng: random.Random | None = None,
) -> list[tuple[Assignment, Lease]]:
    """Close one pooling window, as ``market.store.jobs.assign_window`` does with SQL: walk the top of
    the ready list with ``rules.plan_window`` (held jobs leave it), let ``policy`` match the
    candidates to ``clients``, give back the candidates left over, and check the matched jobs out
    for each client's ``granted`` slice. A policy without a job order (``random``) may pick any
    ready job: every affordable one is a candidate."""
    longest = max(granted[c.id] for c in clients)
    popped: dict[int, ReadyJob] = {}
    if ready.ordered:
        wanted = len(clients)
        top: Iterable[ReadyJob] = itertools.islice(ready.pop_each(), rules.window_reach(wanted))
    else:
        top = ready.take(len(clients))
        wanted = len(top)

    jobs = books.jobs

    def walk() -> Iterator[rules.WindowJob]:
        for job in top:
            popped[job.id] = job
            yield jobs[job.id].window

    plan = books.plan_window(walk(), wanted, longest)
    candidates = [popped[job.id] for job in plan.candidates]
    assignments = policy(clients, candidates, now=now, rng=rng)
    assigned = {a.job.id for a in assignments}
    ready.give_back(job for job in candidates if job.id not in assigned)
    out = []
    for a in assignments:
        lease = books.checkout(a.job.id, a.client.id, granted[a.client.id], now)
        if lease is not None:
            out.append((a, lease))
    return out


class Simulation:
    """One run of a scenario on simulated time."""

    def __init__(self, scenario: Scenario, record_windows: bool = False, keep_books: bool = False) -> None:
        self.s = scenario
        self.clock = SimClock()
        # one stream per kind of draw: changing one quantity leaves the others' draws alone
        seed = scenario.seed
        self._rng_speed = random.Random(f"{seed}:speed")
        self._rng_churn = random.Random(f"{seed}:churn")
        self._rng_jobs = random.Random(f"{seed}:jobs")
        self._rng_arrivals = random.Random(f"{seed}:arrivals")
        self._rng_quote = random.Random(f"{seed}:quote")
        self._rng_miss = random.Random(f"{seed}:miss")
        self._rng_policy = random.Random(f"{seed}:policy")
        policy = POLICIES[scenario.policy]
        if scenario.policy == "aging":
            policy = functools.partial(policy, rate=scenario.aging_rate)
        self._policy = policy
        self.ready = ReadyList(candidate_key(scenario.policy, scenario.aging_rate))
        # keep_books keeps every lease and the ledger (for tests; a long run would hold millions)
        self.books = Books(grace=scenario.allowance, keep_history=keep_books)
        self.pool = Pool(self.clock, WindowPolicy(scenario.window, scenario.threshold), self._assign)
        self.jobs: dict[int, SimJob] = {}
        self.clients: list[SimClient] = []
        self._online_speeds: list[float] = []  # sorted, for the quote rule
        self._open_prices: dict[int, int] = {}  # unfinished jobs per price, for the quote rule
        self._record = record_windows
        # read on every dispatch: plain attributes, not lookups through the scenario
        self._slice, self._transfer = scenario.slice, scenario.transfer
        self._miss_rate, self._deadline = scenario.miss_rate, scenario.slice + scenario.allowance
        self.windows: list[WindowRecord] = []
        self._ended = False
        self._failure: Failure | None = None

    # -- running -------------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Simulate ``scenario.duration`` seconds and return what happened."""
        s = self.s
        for client_id in range(1, s.clients + 1):
            self._add_client(client_id)
        for _ in range(s.initial_jobs):
            self._submit()
        if s.arrival_rate > 0:
            self._schedule_arrival()
        self.clock.run(until=s.duration)
        if self._failure is not None:
            self._failure.raiseException()
        self._ended = True
        self.pool.stop()
        self._close_books()
        books = self.books if self.books.ledger is not None else None
        return RunResult(
            s, list(self.jobs.values()), self.clients, self.pool.stats, self.clock.calls_run, self.windows, books
        )

    def _close_books(self) -> None:
        end = self.s.duration
        for client in self.clients:
            if client.online:
                client.online_seconds += end - client.online_since
                if client.busy and not client.slice_missed:
                    # the running slice counts as busy time up to the end of the run
                    running = end - client.slice_start - self.s.transfer
                    client.busy_seconds += max(0.0, min(running, client.slice_exec))

    # -- clients -------------------------------------------------------------------------------

    def _add_client(self, client_id: int) -> None:
        s = self.s
        client = SimClient(client_id, max(1e-9, s.speed.draw(self._rng_speed)))
        self.clients.append(client)
        self.books.add_client(client_id, self.books.open_account())
        online, offline = s.online, s.offline
        if online is None or offline is None:  # no churn (a scenario has both or neither)
            self._go_online(client, first_ask=self._rng_churn.uniform(0.0, 1.0))
            return
        on, off = online.mean(), offline.mean()
        if self._rng_churn.random() < on / (on + off):
            self._go_online(client, first_ask=self._rng_churn.uniform(0.0, 1.0))
        else:
            client.session_call = self.clock.callLater(offline.draw(self._rng_churn), self._go_online, client)

    def _go_online(self, client: SimClient, first_ask: float = 0.0) -> None:
        client.online = True
        client.online_since = self.clock.seconds()
        bisect.insort(self._online_speeds, client.speed)
        if self.s.online is not None:
            client.session_call = self.clock.callLater(self.s.online.draw(self._rng_churn), self._go_offline, client)
        client.retry_delay = 0.0
        client.retry = self.clock.callLater(first_ask, self._ask, client)

    def _go_offline(self, client: SimClient) -> None:
        offline = self.s.offline
        assert offline is not None  # only scheduled with churn, which has both session lengths
        now = self.clock.seconds()
        client.online = False
        client.online_seconds += now - client.online_since
        del self._online_speeds[bisect.bisect_left(self._online_speeds, client.speed)]
        if client.pending is not None:
            pending, client.pending = client.pending, None
            pending.cancel()
        if client.retry is not None and client.retry.active():
            client.retry.cancel()
        client.retry = None
        if client.busy:
            # the slice dies with the session; the server only notices at the deadline
            job = client.job
            assert client.slice_call is not None  # a busy client's slice is scheduled
            client.slice_call.cancel()
            client.lost_seconds += now - client.slice_start
            deadline = client.slice_start + self.s.slice + self.s.allowance
            self.clock.callLater(deadline - now, self._lease_expired, job, client.lease)
            client.busy, client.job, client.slice_call, client.lease = False, None, None, None
        client.session_call = self.clock.callLater(offline.draw(self._rng_churn), self._go_online, client)

    def _ask(self, client: SimClient) -> None:
        client.retry = None
        if self._ended or not client.online or client.busy:
            return
        answer = self.pool.request(client.id, client.speed)
        answer.addCallbacks(self._answered, self._request_failed, callbackArgs=(client,), errbackArgs=(client,))
        if not answer.called:  # a full pool answers inside request()
            client.pending = answer

    def _answered(self, answer: Lease | NoWork, client: SimClient) -> None:
        try:
            self._take_answer(answer, client)
        except BaseException:
            self._crash(Failure())

    def _take_answer(self, answer: Lease | NoWork, client: SimClient) -> None:
        client.pending = None
        if self._ended:
            return
        if isinstance(answer, NoWork):
            delay = answer.retry_after
            if client.retry_delay:
                delay = min(self.s.max_retry, max(delay, client.retry_delay * self.s.backoff))
            client.retry_delay = delay
            client.retry = self.clock.callLater(delay, self._ask, client)
            return
        client.retry_delay = 0.0
        self._dispatch(client, answer)

    def _request_failed(self, failure: Failure, client: SimClient) -> None:
        if not failure.check(CancelledError):  # a departed client's request is no error
            self._crash(failure)

    def _crash(self, failure: Failure) -> None:
        # a Deferred would swallow the exception and leave the run silently wrong: stop it
        if self._failure is None:
            self._failure = failure
        self.clock.stop()

    # -- jobs ----------------------------------------------------------------------------------

    def _schedule_arrival(self) -> None:
        gap = self._rng_arrivals.expovariate(self.s.arrival_rate)
        if self.clock.seconds() + gap < self.s.duration:
            self.clock.callLater(gap, self._arrive)

    def _arrive(self) -> None:
        self._submit()
        self._schedule_arrival()

    def _submit(self) -> None:
        s, rng = self.s, self._rng_jobs
        price = max(1, round(s.price.draw(rng)))
        length = max(1, round(s.length.draw(rng)))
        quoted_speed = None
        if s.quote_share > 0 and self._rng_quote.random() < s.quote_share:
            wanted = (s.quote_speed or s.speed).draw(self._rng_quote)
            quoted = quote_sorted(self._online_speeds, self._open_prices, wanted).price_cents
            if quoted is not None:
                price, quoted_speed = quoted, wanted
        job = SimJob(len(self.jobs) + 1, price, self.clock.seconds(), length, quoted_speed)
        self.jobs[job.id] = job
        self.books.add_job(job.id, self.books.open_account(OWNER_BUDGET), price)
        self._open_prices[price] = self._open_prices.get(price, 0) + 1
        self.ready.push(job.ready)

    # -- the pool's assign: production matching --------------------------------------------------

    def _assign(self, requests: list[PoolRequest]) -> dict[int, Lease]:
        now = self.clock.seconds()
        clients = [PooledClient(r.client_id, r.speed, r.requested_at) for r in requests]
        if self._record:
            self.windows.append(WindowRecord(now, clients, self.ready.snapshot(), self._rng_policy.getstate()))
        granted = {r.client_id: self._slice_for(r.client_id) for r in requests}
        leases = close_window(self.books, self.ready, clients, granted, self._policy, now, self._rng_policy)
        key_of = {r.client_id: r.key for r in requests}
        return {key_of[a.client.id]: lease for a, lease in leases}

    # -- slices --------------------------------------------------------------------------------

    def _slice_for(self, client_id: int) -> float:
        """The slice a client's request asks for (the scenario's; sim.trust shortens a watched one's)."""
        return self._slice

    def _dispatch(self, client: SimClient, lease: Lease) -> None:
        now = self.clock.seconds()
        job = self.jobs[lease.job_id]
        if self._record:
            self.windows[-1].dispatched.append((client.id, job.id))
        if job.first_dispatch is None:
            job.first_dispatch = now
        job.slices += 1
        remaining = job.length - job.done
        granted = self._slice_for(client.id)
        capacity = client.speed * granted
        if remaining <= capacity:
            work, seconds = remaining, remaining / client.speed
        else:
            work, seconds = max(1, int(capacity)), granted
        client.busy, client.job, client.lease, client.slice_start = True, job, lease, now
        client.slice_exec = seconds
        client.slice_missed = self._miss_rate > 0 and self._rng_miss.random() < self._miss_rate
        if client.slice_missed:
            client.slice_call = self.clock.callLater(self._deadline, self._deadline_missed, client, job, lease)
        else:
            client.slice_call = self.clock.callLater(
                self._transfer + seconds, self._checked_in, client, job, lease, work, seconds
            )

    def _checked_in(self, client: SimClient, job: SimJob, lease: Lease, work: int, seconds: float) -> None:
        now = self.clock.seconds()
        client.busy, client.job, client.slice_call, client.lease = False, None, None, None
        # the worker sends its state, or its result when the job is done: the market's rules decide
        if job.done + work >= job.length:
            answer = self.books.finish(lease.id, now)
        else:
            answer = self.books.checkin(lease.id, now)
        if answer["status"] == _REJECTED:  # late: the slice is lost, the job keeps its state
            client.lost_seconds += now - client.slice_start
            job.rollbacks += 1
            self._back_to_ready(job)
            self._ask(client)
            return
        client.busy_seconds += seconds
        client.transfer_seconds += self._transfer
        job.done += work
        job.exec_seconds += seconds
        job.paid += answer["paid"]
        client.earnings += answer["paid"]
        if answer["status"] == _FINISHED:
            job.finished_at = now
            self.ready.forget(job.id)
            self.books.forget_job(job.id)
            left = self._open_prices[job.price] - 1
            if left:
                self._open_prices[job.price] = left
            else:
                del self._open_prices[job.price]
        else:
            self._back_to_ready(job)
        self._ask(client)

    def _deadline_missed(self, client: SimClient, job: SimJob, lease: Lease) -> None:
        client.busy, client.job, client.slice_call, client.lease = False, None, None, None
        client.lost_seconds += self.s.slice + self.s.allowance
        self._lease_expired(job, lease)
        self._ask(client)

    def _lease_expired(self, job: SimJob, lease: Lease) -> None:
        # the simulated reaper runs at each lease's deadline
        if self.books.expire(lease.id, self.clock.seconds()):
            job.rollbacks += 1
            self._back_to_ready(job)

    def _back_to_ready(self, job: SimJob) -> None:
        """Back on the ready list if the rules put it there."""
        if self.books.jobs[job.id].status == _READY:
            self.ready.push(job.ready)


def simulate(scenario: Scenario, record_windows: bool = False, keep_books: bool = False) -> RunResult:
    """Run one scenario."""
    if scenario.trust is not None:
        raise ValueError("a scenario with a [trust] table runs through sim.trust.simulate")
    with fewer_collections():
        return Simulation(scenario, record_windows, keep_books).run()


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of the block.

    A large run allocates millions of short-lived objects (Deferreds, requests, assignments)
    next to hundreds of thousands of live jobs, and the collector keeps rescanning the live
    ones: ~10-25% of a 10,000-client run. The simulation makes no reference cycles (a full
    collection after a run frees nothing), so reference counting alone reclaims its garbage.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
