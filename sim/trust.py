"""Cheating workers and verification by replay, on simulated time.

A ``[trust]`` table turns a run into this one: a share of the clients cheat, and every decision
about verification is ``market.core.verification``'s, the very policy the dispatcher runs:
which slices are replayed (``why_verify``: every result, every slice of a worker under watch, a
``fraction`` of the others), by whom (``pick_check``: an opted-in client of another owner, disputes
first), for how many back-edges (``max_steps``), what a disagreement decides (``judge``: a trusted
decider of another owner, with 4x the cap), where a job goes back to (``rollback_seq``), which payments are taken back
(``reversals``, new ledger entries) and what a replay is paid (``replay_ms``).

What is modelled, and how:

- **Cheaters** (``cheaters``, a share of the clients, drawn from their own stream) cheat on a
  share ``cheat_share`` of their slices, one way per run (``cheat``):

  - ``instant``: no work at all; a made-up state checked in when the slice ends, to be paid for
    the whole slice (checking in at once would be paid for the few milliseconds the server
    measured);
  - ``skip``: runs ``1 - skip`` of the slice's steps, then makes up the rest: a state not
    reachable from the parent;
  - ``forge``: honest slices, a made-up final result without running the last slice;
  - ``slow``: runs ``1 - skip`` of the steps and checks in the real state it reached at the end
    of the slice. That state *is* reachable from its parent, so a replay agrees with it: replay
    cannot tell it from honest work, and this model does not pretend it can.

  A cheater that opted in to verify (``verifiers``) also lies as a verifier when ``liars``: it
  sends a made-up state at once instead of replaying. Turncoats (``turncoats``) start as trusted
  workers (``watch_slices`` verified slices); otherwise every cheater starts under watch, as a
  new client does. Honest clients start trusted (an established market), or under watch with
  ``new_market`` (a market that just opened: every client new, the start-up transient). A caught
  cheater gets no more leases; with ``rejoin`` the same machine comes back at once as a new client
  of a new owner (under watch).
- **Replays** go to opted-in clients when they ask for work, before the pool: the dispatcher
  answers such a ``request`` with a replay lease when a check waits. A replay of an honest slice
  reaches the target after the slice's back-edges; a replay of a made-up state never matches and
  runs to the cap, ``max_steps(slice seconds, worker's speed, margin)``. A replay counts every
  back-edge, so it runs at the verifier's speed / ``replay_slowdown``. It is paid at the job's
  lease price for ``replay_ms`` (never more than the checked slice), from the job's owner.
- **Keeping refutation cheap** (the policy's, 2026-12-05): a worker's slice checks beyond
  ``MAX_OPEN_PER_WORKER`` in flight are held (``pick_check``/``expired`` with a limit), one of its
  disputes is decided at a time, a loser's checks nobody replays are given up (``moot``); with
  ``hold`` a worker with a disputed check gets no paid lease (``on_hold``), with ``watch_slice`` a
  worker under watch is granted a share of the slice (``slice_seconds``). ``refute_early`` is a
  what-if for a runtime that could stop a replay once past the claimed state (off by default).
- **Money.** Slices are paid at check-in by ``sim.books`` (``market.core.rules``). Losing a
  dispute takes back the loser's unverified payments (``reversals``) on the disputed job, or on
  every job it has unverified states on (``scope = "all"``, the default), and rolls each such job
  back (``rollback_seq``): the work after that point is dropped, and a lease out on it checks in
  a state whose parent is gone — refused, unpaid.
- **Results** are verified like slices; a finished job's result is final only once a replay
  agreed. A result delivered while a made-up state lies unnoticed in its job's history agrees
  with its replay (the replay starts from the last state) and is counted as a wrong verified
  result: the policy's blind spot, measured rather than hidden.
"""

from __future__ import annotations

import random
from typing import Any

from market.core import ledger, money
from market.core import verification as v
from sim import engine
from sim.books import Lease
from sim.engine import RunResult, SimClient, SimJob, Simulation, fewer_collections
from sim.scenario import Scenario, Trust

__all__ = ["TrustSimulation", "TRUST_METRICS", "trust_metrics", "simulate"]

INTERPRETER = "cpython-3.11"
# the steady-state figures count what was checked in or replayed from then on (the first hours
# of a run that starts every client at once are a start-up transient); a run shorter than 12 h
# leaves out its first quarter
STEADY_AFTER = 3 * 3600.0
_LIAR_SECONDS = 1.0  # a lying verifier answers at once
MIN_SLICE = 10.0  # the market's min-slice setting (a watched worker's slice is never shorter)
HOLD_RETRY = 30.0  # a worker on hold (verification.on_hold) asks again after this long


class Worker:
    """What the market (and the experiment) knows of one client's trust."""

    __slots__ = (
        "client",
        "machine",
        "cheater",
        "verifies",
        "verified",
        "suspect",
        "slices",
        "cheats",
        "first_cheat_at",
        "caught_after",
        "caught_cheats",
        "caught_at",
    )

    def __init__(self, client: SimClient, machine: int, cheater: bool, verifies: bool, verified: int) -> None:
        self.client, self.machine, self.cheater, self.verifies = client, machine, cheater, verifies
        self.verified = verified  # verified slices: under watch while fewer than watch_slices
        self.suspect = False
        self.slices = 0  # slices (and results) checked in
        self.cheats = 0  # of which made up (or run slow on purpose)
        self.first_cheat_at: float | None = None
        self.caught_after: int | None = None  # slices checked in when it lost a dispute
        self.caught_cheats: int | None = None  # of which cheated
        self.caught_at: float | None = None


class State:
    """A committed state of a job (one slice), with what the experiment knows and the market does not."""

    __slots__ = (
        "seq",
        "client",
        "verified",
        "done",
        "wrong",
        "lease",
        "payee",
        "price",
        "paid",
        "ms",
        "reversed",
        "taken_back",
        "dropped",
    )

    def __init__(self, seq: int, client: int | None, done: int, wrong: bool) -> None:
        self.seq, self.client, self.done, self.wrong = seq, client, done, wrong
        self.verified = client is None  # state #0 is the owner's own
        self.lease = 0
        self.payee = 0
        self.price = 0
        self.paid = 0
        self.ms = 0
        self.reversed = False
        self.taken_back = 0  # cents reversed
        self.dropped = False  # a rollback dropped it


class CheckRun:
    """A check and the truth behind it."""

    __slots__ = ("check", "state", "work", "cap", "right", "first_reached", "verifier", "reason", "replays")

    def __init__(self, check: v.Check, state: State, work: int, cap: int, right: bool, reason: str) -> None:
        self.check, self.state, self.work, self.cap, self.right = check, state, work, cap, right
        self.reason = reason
        self.first_reached = ""
        self.verifier: int | None = None
        self.replays: list[v.Replay] = []  # every replay so far, first verifier's first


class TrustSimulation(Simulation):
    """A run with cheating clients and verification by replay (``scenario.trust``)."""

    def __init__(self, scenario: Scenario, record_windows: bool = False, keep_books: bool = False) -> None:
        super().__init__(scenario, record_windows, keep_books)
        assert scenario.trust is not None
        self.t: Trust = scenario.trust
        self._rng_trust = random.Random(f"{scenario.seed}:trust")  # who cheats, who verifies
        self._rng_cheat = random.Random(f"{scenario.seed}:cheat")  # which slices
        self._rng_sample = random.Random(f"{scenario.seed}:sample")  # the policy's draw
        self.steady_after = min(STEADY_AFTER, scenario.duration / 4)
        self.workers: dict[int, Worker] = {}
        self.owner_of: dict[int, int] = {}  # client -> its owner's account
        self.chains: dict[int, list[State]] = {}  # job -> its committed states, oldest first
        self.history: dict[int, list[State]] = {}  # job -> every state it was paid for, dropped ones too
        self.stale: set[int] = set()  # leases whose parent state a rollback dropped
        self.open_checks: dict[int, CheckRun] = {}
        self._check_ids = iter(range(1, 1 << 62))
        self._next_client = scenario.clients + 1
        self._lease_wrong: dict[int, bool] = {}  # lease -> the state or result it will bring is made up
        self._lease_compute: dict[int, float] = {}  # lease -> seconds of real computing
        self._slow: set[int] = set()  # leases a slow cheater runs
        self._open_lease: dict[int, int] = {}  # job -> its lease out
        self._owner_of_job: dict[int, int | None] = {}
        self.f: dict[str, Any] = {
            "slices": 0,
            "slice_seconds": 0.0,
            "compute_seconds": 0.0,
            "replays": 0,
            "replay_seconds": 0.0,
            "replay_compute": 0.0,
            "replay_compute_made_up": 0.0,
            "replay_compute_result": 0.0,
            "replay_compute_watch": 0.0,
            "replay_compute_sampled": 0.0,
            # the same in operations (seconds x the machine's speed): a slow verifier's second is
            # less compute than a fast worker's; a replay's ops are its steps x replay_slowdown
            "slice_ops": 0.0,
            "replay_ops": 0.0,
            "replay_ops_made_up": 0.0,
            "replay_ops_result": 0.0,
            "replay_ops_watch": 0.0,
            "replay_ops_sampled": 0.0,
            "replay_verifier_speed": 0.0,  # sum of the verifiers' speeds over the replays they ran
            # from ``STEADY_AFTER`` on: the start-up (every rejoining cheater under watch) left out
            "steady_slice_seconds": 0.0,
            "steady_replay_compute": 0.0,
            "steady_slice_ops": 0.0,
            "steady_replay_ops": 0.0,
            "replay_fees": 0,
            "checks": 0,
            "checks_result": 0,
            "checks_unverifiable": 0,
            "checks_moot": 0,
            "held_asks": 0,
            "disputes": 0,
            "cheated_slices": 0,
            "refused_stale": 0,
            "honest_suspects": 0,
            "forged_results": 0,
            "forged_final": 0,
            "wrong_final": 0,
            "wrong_final_open_check": 0,
            "results_verified": 0,
            "results_unverified": 0,
        }

    # -- population ----------------------------------------------------------------------------

    def _add_client(self, client_id: int) -> None:
        super()._add_client(client_id)
        client = self.clients[-1]
        # drawn whatever the kind, so every kind meets the same clients (common random numbers)
        cheater = self._rng_trust.random() < self.t.cheaters and self.t.cheat != "none"
        self._register(client, machine=client_id, cheater=cheater)

    def _register(self, client: SimClient, machine: int, cheater: bool) -> Worker:
        t = self.t
        verifies = self._rng_trust.random() < t.verifiers
        trusted = not t.new_market and (not cheater or (t.turncoats and machine == client.id))
        worker = Worker(client, machine, cheater, verifies, t.settings.watch_slices if trusted else 0)
        self.workers[client.id] = worker
        self.owner_of[client.id] = self.books.client_owner(client.id)
        return worker

    def _rejoin(self, worker: Worker) -> None:
        """A caught cheater's machine comes back as a new client of a new owner."""
        old = worker.client
        now = self.clock.seconds()
        old.online_seconds += now - old.online_since
        old.online = False  # the machine goes on as the new client
        if old.session_call is not None and old.session_call.active():
            old.session_call.cancel()
        client = SimClient(self._next_client, old.speed)
        self._next_client += 1
        client.online, client.online_since = True, now
        self.clients.append(client)
        self.books.add_client(client.id, self.books.open_account())
        new = self._register(client, worker.machine, cheater=True)
        new.verifies = worker.verifies
        client.retry = self.clock.callLater(0.0, self._ask, client)

    def _slice_for(self, client_id: int) -> float:
        worker = self.workers.get(client_id)
        if worker is None or not self.t.watch_slice:
            return self._slice
        return v.slice_seconds(self._slice, worker.verified, MIN_SLICE, self.t.settings)

    # -- asking: replays before the pool -------------------------------------------------------

    def _ask(self, client: SimClient) -> None:
        worker = self.workers.get(client.id)
        if worker is None or worker.suspect:
            return  # no paid leases, no replays: a suspect is refused work
        if not self._ended and client.online and not client.busy and worker.verifies and self.open_checks:
            run = self._take_check(worker)
            if run is not None:
                client.retry = None
                self._replay(worker, run)
                return
        if self.t.hold and self.open_checks and v.on_hold(client.id, (r.check for r in self.open_checks.values())):
            # no paid lease while a check of its work is disputed: ask again later
            if not self._ended and client.online and not client.busy:
                self.f["held_asks"] += 1
                client.retry = self.clock.callLater(HOLD_RETRY, self._ask, client)
            return
        super()._ask(client)

    def _take_check(self, worker: Worker) -> CheckRun | None:
        now = self.clock.seconds()
        wait = self.t.settings.wait_seconds
        checks = [run.check for run in self.open_checks.values()]
        for c in v.expired(checks, now, wait, v.MAX_OPEN_PER_WORKER):
            self._unverifiable(self.open_checks[c.id])
        in_flight = v.open_per_worker(checks)
        for run in self.open_checks.values():
            if v.held(run.check, in_flight):  # it waits for a verifier from its release on
                run.check = run.check._replace(waiting_since=now)
        trusted = not v.under_watch(worker.verified, self.t.settings.watch_slices)
        me = v.Verifier(worker.client.id, self.owner_of[worker.client.id], INTERPRETER, worker.suspect, trusted)
        check = v.pick_check(me, (run.check for run in self.open_checks.values()), now, wait, v.MAX_OPEN_PER_WORKER)
        return None if check is None else self.open_checks[check.id]

    def _replay(self, worker: Worker, run: CheckRun) -> None:
        client = worker.client
        status = v.CheckStatus.REPLAYING if run.check.status == v.CheckStatus.WAITING else v.CheckStatus.DECIDING
        run.check = run.check._replace(status=status)
        lies = worker.cheater and self.t.liars
        capped = False
        if lies:
            seconds, reached = _LIAR_SECONDS, f"lie:{client.id}:{run.check.id}"
        else:
            # a decider replays with DECIDER_CAP_FACTOR x the cap
            cap = v.decider_steps(run.cap) if status == v.CheckStatus.DECIDING else v.first_steps(run.cap)
            capped = not run.right or run.work > cap
            steps = cap if capped else run.work
            if not run.right and self.t.refute_early:
                # what if (not built: docs/trust.md): a replay stops once it has passed the claimed
                # state's position without matching, about the slice's claimed steps in
                steps = min(cap, max(1, int(run.work * self.t.refute_early)))
            seconds = steps * self.t.replay_slowdown / client.speed
            reached = f"cap:{run.check.id}:{cap}" if capped else self._target(run)
            self.f["compute_seconds"] += seconds
            self.f["replay_compute"] += seconds
            part = "made_up" if not run.right else run.reason
            self.f[f"replay_compute_{part}"] += seconds
            ops = seconds * client.speed
            self.f["replay_ops"] += ops
            self.f[f"replay_ops_{part}"] += ops
            self.f["replay_verifier_speed"] += client.speed
            if self.clock.seconds() >= self.steady_after:
                self.f["steady_replay_compute"] += seconds
                self.f["steady_replay_ops"] += ops
        self.f["replays"] += 1
        self.f["replay_seconds"] += seconds
        client.busy, client.slice_start = True, self.clock.seconds()
        trusted = not v.under_watch(worker.verified, self.t.settings.watch_slices)
        replay = v.Replay(client.id, reached, capped, trusted)
        client.slice_call = self.clock.callLater(seconds, self._replayed, worker, run, replay, seconds)

    @staticmethod
    def _target(run: CheckRun) -> str:
        # what the worker checked in: the true state's hash when it did the work
        return f"true:{run.check.id}" if run.right else f"made-up:{run.check.id}"

    def _replayed(self, worker: Worker, run: CheckRun, replay: v.Replay, seconds: float) -> None:
        client = worker.client
        client.busy, client.slice_call = False, None
        self._pay_replay(worker, run, seconds)
        if run.check.id not in self.open_checks:  # a rollback dropped the state it checked
            self._ask(client)
            return
        c = run.check
        run.replays.append(replay)
        judgement = v.judge(self._target(run), c.worker, run.replays)
        if judgement.status == v.CheckStatus.AGREED:
            self._agreed(run, v.CheckStatus.AGREED)
        elif judgement.status == v.CheckStatus.DISPUTED:
            if len(run.replays) == 1:
                self.f["disputes"] += 1
                run.first_reached, run.verifier = replay.reached, client.id
                run.check = c._replace(
                    status=v.CheckStatus.DISPUTED,
                    first_verifier=client.id,
                    first_verifier_owner=self.owner_of[client.id],
                    disputed_at=self.clock.seconds(),
                )
            else:  # the decider confirmed nobody: another one
                run.check = c._replace(
                    status=v.CheckStatus.DISPUTED,
                    deciders=(*c.deciders, (client.id, self.owner_of[client.id])),
                    disputed_at=self.clock.seconds(),
                )
        elif judgement.status == v.CheckStatus.UNVERIFIABLE:
            self._unverifiable(run)  # undecided: nobody loses, nothing verified
        else:
            if judgement.worker_right:
                self._agreed(run, v.CheckStatus.DECIDED)
            else:
                del self.open_checks[c.id]
                if c.kind == v.CheckKind.RESULT:
                    self._result_final(run, verified=False)
            for loser in judgement.losers:
                self._lost(loser, c.job_id)
        self._ask(client)

    def _pay_replay(self, worker: Worker, run: CheckRun, seconds: float) -> None:
        state = run.state
        ms = v.replay_ms(int(seconds * 1000), state.ms)
        amount = money.payment(state.price, ms)
        owner = run.check.job_owner
        payee = self.owner_of[worker.client.id]
        if amount <= 0 or owner is None or owner == payee:
            return
        entry = ledger.transfer(owner, payee, amount, self.books.balances[owner], "payment", "replay")
        self._post(entry)
        self.f["replay_fees"] += amount
        worker.client.earnings += amount

    def _post(self, entry: ledger.Entry) -> None:
        ledger.apply(self.books.balances, entry)
        if self.books.ledger is not None:
            self.books.ledger.append((entry, None, self.clock.seconds()))

    def _agreed(self, run: CheckRun, status: v.CheckStatus) -> None:
        del self.open_checks[run.check.id]
        run.state.verified = True
        worker = self.workers[run.check.worker]
        worker.verified += 1
        if run.check.kind == v.CheckKind.RESULT:
            self._result_final(run, verified=True)

    def _unverifiable(self, run: CheckRun, counted: bool = True) -> None:
        del self.open_checks[run.check.id]
        if counted:  # given up for want of a verifier (a moot check is counted apart)
            self.f["checks_unverifiable"] += 1
        if run.check.kind == v.CheckKind.RESULT:
            self._result_final(run, verified=False)

    def _result_final(self, run: CheckRun, verified: bool) -> None:
        if not verified:
            self.f["results_unverified"] += 1
            return
        self.f["results_verified"] += 1
        if not run.right:
            self.f["forged_final"] += 1
        elif any(s.wrong for s in self.chains.get(run.check.job_id, ())):
            self.f["wrong_final"] += 1
            job_id = run.check.job_id
            if any(r.check.job_id == job_id and not r.right for r in self.open_checks.values()):
                # a replay of one of its made-up states was still under way: holding the result
                # until the job's checks close would have kept it from being final
                self.f["wrong_final_open_check"] += 1

    # -- losing a dispute ----------------------------------------------------------------------

    def _lost(self, loser: int, job_id: int) -> None:
        worker = self.workers[loser]
        if not worker.suspect:
            worker.suspect = True
            worker.caught_after, worker.caught_at = worker.slices, self.clock.seconds()
            worker.caught_cheats = worker.cheats
            if not worker.cheater:
                self.f["honest_suspects"] += 1
            client = worker.client
            if client.busy and client.lease is not None and client.slice_call is not None:
                # refused work: its slice in flight is never checked in; the lease expires
                client.slice_call.cancel()
                lease, job = client.lease, client.job
                assert job is not None
                self.clock.callLater(max(0.0, lease.deadline - self.clock.seconds()), self._lease_expired, job, lease)
                client.busy, client.job, client.slice_call, client.lease = False, None, None, None
            if client.pending is not None:  # a request in the pool: refused
                pending, client.pending = client.pending, None
                pending.cancel()
            if client.retry is not None and client.retry.active():
                client.retry.cancel()
            client.retry = None
            if worker.cheater and self.t.rejoin:
                self._rejoin(worker)
        for run in list(self.open_checks.values()):
            if v.moot(run.check, loser):
                self.f["checks_moot"] += 1
                self._unverifiable(run, counted=False)
        jobs = [job_id] if self.t.scope == "job" else [j for j, states in self.history.items() if _made(states, loser)]
        for j in jobs:
            self._take_back(loser, j)

    def _take_back(self, loser: int, job_id: int) -> None:
        chain = self.chains.get(job_id)
        if not chain:
            return
        owner = self._owner_of_job.get(job_id)
        # a payment stays attached to its lease whatever a rollback dropped since: all of them count
        states = {s.lease: s for s in self.history.get(job_id, ())}
        payments = [
            v.Payment(s.lease, job_id, s.client, owner, s.payee, s.paid, s.verified, s.reversed)
            for s in states.values()
            if s.client is not None and owner is not None
        ]
        for entry in v.reversals(payments, loser, self.books.balances):
            self._post(entry)
            state = states[int(entry.memo.rsplit(" ", 1)[1])]
            state.reversed, state.taken_back = True, entry.amount
            self.workers[loser].client.earnings -= entry.amount
        sim_job = self.jobs[job_id]
        if sim_job.finished_at is not None:
            return  # a delivered result stays delivered; counted by _result_final
        seq = v.rollback_seq([v.StateRecord(s.seq, s.client, s.verified) for s in chain], loser)
        keep = [s for s in chain if s.seq <= seq]
        for s in chain[len(keep) :]:
            s.dropped = True
        self.chains[job_id] = keep
        sim_job.done = keep[-1].done
        # checks on dropped states stay open: a replay still tells whether their makers did the work
        # they were paid for (the store gives them up, "its state was discarded": docs/trust.md)
        lease = self._open_lease.get(job_id)
        if lease is not None:
            self.stale.add(lease)

    # -- slices --------------------------------------------------------------------------------

    def _dispatch(self, client: SimClient, lease: Lease) -> None:
        super()._dispatch(client, lease)
        self._open_lease[lease.job_id] = lease.id
        worker = self.workers[client.id]
        job = self.jobs[lease.job_id]
        last = job.done + max(1, int(client.speed * self._slice_for(client.id))) >= job.length
        cheat = worker.cheater and self._rng_cheat.random() < self.t.cheat_share
        kind = self.t.cheat
        wrong, compute = False, client.slice_exec
        if cheat and kind == "instant":
            wrong, compute = True, 0.0
        elif cheat and kind == "skip":
            wrong, compute = True, client.slice_exec * (1 - self.t.skip)
        elif cheat and kind == "forge" and last:
            wrong, compute = True, 0.0
        elif cheat and kind == "slow":
            compute = client.slice_exec * (1 - self.t.skip)
            self._slow.add(lease.id)
        if cheat and (wrong or kind == "slow"):
            self.f["cheated_slices"] += 1
        self._lease_wrong[lease.id] = wrong
        self._lease_compute[lease.id] = compute

    def _checked_in(self, client: SimClient, job: SimJob, lease: Lease, work: int, seconds: float) -> None:
        wrong = self._lease_wrong.pop(lease.id, False)
        compute = self._lease_compute.pop(lease.id, seconds)
        slow = lease.id in self._slow
        self._slow.discard(lease.id)
        if self._open_lease.get(job.id) == lease.id:
            del self._open_lease[job.id]
        if lease.id in self.stale:
            # its parent state was dropped by a rollback: refused (rules.state_refusal), unpaid
            self.stale.discard(lease.id)
            self.f["refused_stale"] += 1
            client.busy, client.job, client.slice_call, client.lease = False, None, None, None
            client.lost_seconds += self.clock.seconds() - client.slice_start
            self._lease_expired(job, lease)
            self._ask(client)
            return
        if slow:
            # the real state after fewer steps: paid for the slice's time, that much behind
            work = max(1, int(work * (1 - self.t.skip)))
        before_done, before_paid = job.done, job.paid
        final = job.done + work >= job.length
        owner = self.books.jobs[job.id].owner
        self._owner_of_job[job.id] = owner
        worker = self.workers[client.id]
        # the market's rules accept and pay (sim.books); the client asks again inside
        super()._checked_in(client, job, lease, work, seconds)
        if job.done == before_done:  # rejected: late
            return
        paid = job.paid - before_paid
        self.f["slices"] += 1
        self.f["slice_seconds"] += seconds
        self.f["compute_seconds"] += compute
        self.f["slice_ops"] += compute * client.speed
        if self.clock.seconds() >= self.steady_after:
            self.f["steady_slice_seconds"] += seconds
            self.f["steady_slice_ops"] += compute * client.speed
        worker.slices += 1
        chain = self.chains.setdefault(job.id, [State(0, None, 0, False)])
        state = State(chain[-1].seq + 1, client.id, job.done, wrong)
        state.lease, state.payee, state.price, state.paid = lease.id, self.owner_of[client.id], lease.price, paid
        state.ms = int(seconds * 1000)
        chain.append(state)
        self.history.setdefault(job.id, []).append(state)
        if wrong or slow:
            worker.cheats += 1
            if worker.first_cheat_at is None:
                worker.first_cheat_at = self.clock.seconds()
        kind = v.CheckKind.RESULT if final else v.CheckKind.SLICE
        if final and wrong:
            self.f["forged_results"] += 1
        reason = v.why_verify(kind, worker.verified, self._rng_sample.random(), self.t.settings)
        if reason is not None:
            self._open_check(kind, job, worker, state, work, seconds, not wrong, reason)
        elif final:
            self.f["results_unverified"] += 1

    def _open_check(
        self,
        kind: str,
        job: SimJob,
        worker: Worker,
        state: State,
        work: int,
        seconds: float,
        right: bool,
        reason: str,
    ) -> None:
        check = v.Check(
            next(self._check_ids),
            kind,
            job.id,
            self._owner_of_job.get(job.id),
            worker.client.id,
            self.owner_of[worker.client.id],
            INTERPRETER,
            v.CheckStatus.WAITING,
            self.clock.seconds(),
        )
        cap = v.max_steps(seconds, worker.client.speed, self.t.settings.margin)
        self.open_checks[check.id] = CheckRun(check, state, work, cap, right, reason)
        self.f["checks"] += 1
        if kind == v.CheckKind.RESULT:
            self.f["checks_result"] += 1

    def run(self) -> RunResult:
        result = super().run()
        for run in list(self.open_checks.values()):
            if run.check.kind == v.CheckKind.RESULT:
                self.f["results_unverified"] += 1
        result.trust = self
        return result


# the figures trust_metrics adds to a run's metrics (results.csv columns, plot metrics)
TRUST_METRICS = (
    "cheater_clients",
    "cheated_slices",
    "detection_rate",
    "caught_slice_share",
    "slices_to_detection_p50",
    "slices_to_detection_p90",
    "cheats_to_detection_p50",
    "seconds_to_detection_p50",
    "checks",
    "replays",
    "disputes",
    "unverifiable_share",
    "verify_compute_share",
    "verify_share_made_up",
    "verify_share_result",
    "verify_share_watch",
    "verify_share_sampled",
    "verify_ops_share",
    "verify_ops_made_up",
    "verify_ops_result",
    "verify_ops_watch",
    "verify_ops_sampled",
    "verify_compute_share_steady",
    "verify_ops_share_steady",
    "verifier_speed_ratio",
    "cheat_paid",
    "cheat_reversed",
    "owner_loss_net",
    "owner_loss_share",
    "owner_loss_outstanding",
    "dropped_paid",
    "refused_stale",
    "replay_fees",
    "replay_fee_share",
    "honest_suspects",
    "forged_results",
    "forged_final",
    "wrong_final",
    "wrong_final_open_check",
    "results_verified",
    "results_unverified",
    "honest_earnings_per_hour",
    "cheater_earnings_per_hour",
    "cheat_gain_per_hour",
    "cheat_gain_ratio",
)

# a cheater counts towards the detection rate once it has had this long to be caught
DETECTION_HORIZON = 3600.0


def trust_metrics(result: RunResult) -> dict[str, Any]:
    """The trust figures of a run made by ``TrustSimulation`` (docs/sim.md lists what each means)."""
    sim = result.trust
    assert isinstance(sim, TrustSimulation)
    f, end = sim.f, result.scenario.duration
    cheaters = [w for w in sim.workers.values() if w.cheater and w.cheats]
    eligible = [w for w in cheaters if w.first_cheat_at is not None and w.first_cheat_at <= end - DETECTION_HORIZON]
    caught = [w for w in cheaters if w.suspect and w.caught_after is not None]
    after = sorted(w.caught_after for w in caught if w.caught_after is not None)
    seconds = sorted(
        w.caught_at - w.first_cheat_at for w in caught if w.caught_at is not None and w.first_cheat_at is not None
    )
    honest = sorted((w.client.speed, w.client.earnings) for w in sim.workers.values() if not w.cheater)
    machines: dict[int, tuple[float, int]] = {}
    for w in sim.workers.values():
        if w.cheater:
            _, earned = machines.get(w.machine, (0.0, 0))
            machines[w.machine] = (w.client.speed, earned + w.client.earnings)
    hours = end / 3600
    # the fastest pooled client gets the dearest job, so earnings follow speed: each cheating machine
    # is compared with the honest clients nearest to it in speed
    peers = [_peer_earnings(honest, speed) for speed, _ in machines.values()]
    honest_rate = sum(peers) / len(peers) / hours if peers else float("nan")
    cheater_rate = sum(e for _, e in machines.values()) / len(machines) / hours if machines else float("nan")
    spend = sum(j.paid for j in result.jobs)
    wrong = f["cheated_slices"]
    states = [s for chain in sim.history.values() for s in chain]
    made_up = [s for s in states if s.wrong]
    cheat_paid = sum(s.paid for s in states if s.client is not None and sim.workers[s.client].cheater)
    cheat_reversed = sum(s.taken_back for s in states if s.client is not None and sim.workers[s.client].cheater)
    # a made-up state's payment is lost for good only once its maker was caught and not all came back;
    # one by a cheater not (yet) caught when the run ends is outstanding
    lost = sum(s.paid - s.taken_back for s in made_up if s.client is not None and sim.workers[s.client].suspect)
    outstanding = sum(
        s.paid - s.taken_back for s in made_up if s.client is not None and not sim.workers[s.client].suspect
    )
    dropped = sum(s.paid - s.taken_back for s in states if s.dropped and not s.wrong)
    compute = f["slice_seconds"] + f["replay_compute"]
    ops = f["slice_ops"] + f["replay_ops"]
    slice_compute = f["compute_seconds"] - f["replay_compute"]
    steady = f["steady_slice_seconds"] + f["steady_replay_compute"]
    steady_ops = f["steady_slice_ops"] + f["steady_replay_ops"]
    return {
        "cheater_clients": len([w for w in sim.workers.values() if w.cheater]),
        "cheated_slices": wrong,
        "detection_rate": len([w for w in eligible if w.suspect]) / len(eligible) if eligible else float("nan"),
        "caught_slice_share": len([s for s in made_up if s.reversed]) / len(made_up) if made_up else float("nan"),
        "slices_to_detection_p50": _quantile(after, 0.5),
        "slices_to_detection_p90": _quantile(after, 0.9),
        "cheats_to_detection_p50": _quantile(
            sorted(w.caught_cheats for w in caught if w.caught_cheats is not None), 0.5
        ),
        "seconds_to_detection_p50": _quantile(seconds, 0.5),
        "checks": f["checks"],
        "replays": f["replays"],
        "disputes": f["disputes"],
        "unverifiable_share": f["checks_unverifiable"] / f["checks"] if f["checks"] else 0.0,
        "verify_compute_share": f["replay_compute"] / compute if compute else 0.0,
        **{
            f"verify_share_{part}": f[f"replay_compute_{part}"] / compute if compute else 0.0
            for part in ("made_up", "result", "watch", "sampled")
        },
        **{
            name: f[f"replay_ops{part}"] / ops if ops else 0.0
            for name, part in (
                ("verify_ops_share", ""),
                ("verify_ops_made_up", "_made_up"),
                ("verify_ops_result", "_result"),
                ("verify_ops_watch", "_watch"),
                ("verify_ops_sampled", "_sampled"),
            )
        },
        "verify_compute_share_steady": f["steady_replay_compute"] / steady if steady else 0.0,
        "verify_ops_share_steady": f["steady_replay_ops"] / steady_ops if steady_ops else 0.0,
        # the verifiers' mean speed against the workers' (by slice): below 1, seconds overstate the cost
        "verifier_speed_ratio": (f["replay_verifier_speed"] / f["replays"]) / (f["slice_ops"] / slice_compute)
        if f["replays"] and slice_compute and f["slice_ops"]
        else float("nan"),
        "cheat_paid": cheat_paid,
        "cheat_reversed": cheat_reversed,
        "owner_loss_net": lost,
        "owner_loss_share": lost / spend if spend else 0.0,
        "owner_loss_outstanding": outstanding,
        "dropped_paid": dropped,
        "refused_stale": f["refused_stale"],
        "replay_fees": f["replay_fees"],
        "replay_fee_share": f["replay_fees"] / spend if spend else 0.0,
        "honest_suspects": f["honest_suspects"],
        "forged_results": f["forged_results"],
        "forged_final": f["forged_final"],
        "wrong_final": f["wrong_final"],
        "wrong_final_open_check": f["wrong_final_open_check"],
        "results_verified": f["results_verified"],
        "results_unverified": f["results_unverified"],
        "honest_earnings_per_hour": honest_rate,
        "cheater_earnings_per_hour": cheater_rate,
        "cheat_gain_per_hour": cheater_rate - honest_rate,
        "cheat_gain_ratio": cheater_rate / honest_rate - 1 if honest_rate else float("nan"),
    }


PEERS = 5  # honest clients a cheating machine's earnings are compared with


def _peer_earnings(honest: list[tuple[float, int]], speed: float) -> float:
    """The mean earnings of the ``PEERS`` honest clients nearest in speed to ``speed``."""
    if not honest:
        return float("nan")
    nearest = sorted(honest, key=lambda h: abs(h[0] - speed))[:PEERS]
    return sum(e for _, e in nearest) / len(nearest)


def _quantile(values: list[float] | list[int], q: float) -> float:
    if not values:
        return float("nan")
    return float(sorted(values)[min(len(values) - 1, int(q * len(values)))])


def _made(chain: list[State], client: int) -> bool:
    return any(s.client == client and not s.verified for s in chain)


def simulate(scenario: Scenario, record_windows: bool = False, keep_books: bool = False) -> RunResult:
    """Run one scenario: with cheaters and replays when it has a ``[trust]`` table."""
    if scenario.trust is None:
        return engine.simulate(scenario, record_windows, keep_books)
    with fewer_collections():
        return TrustSimulation(scenario, record_windows, keep_books).run()
