"""Verification by replay, on plain values: which slices are replayed, by whom, what a replay
proves, what a disagreement decides and what each outcome pays or takes back.

A worker's check-in is evidence, not truth (docs/trust.md). The market's jobs are deterministic
step machines: a slice from state S that produced S' is honest work exactly when another worker,
replaying from S, reaches a state whose payload hashes equal to S''s. This module is the policy;
the store records checks, the dispatcher hands out replay leases and compares hashes. Nothing here
reads a clock or draws a random number: the time and the draw (a float in [0, 1)) are parameters,
so ``sim`` and the property tests run the very same rules.

Words: a slice or result is *verified* (a replay agreed) or *unverified* (not replayed, or not
yet); a worker is *under watch* while fewer than ``watch_slices`` of its slices are verified, and
then every one of its slices is replayed; *suspect* (no paid leases) is what losing a dispute
makes a worker.

A check's life::

  waiting (no verifier has taken it) -> replaying (a replay lease is out) -> agreed | disputed
  disputed -> deciding (a trusted decider replays, with DECIDER_CAP_FACTOR x the cap) -> decided
  deciding -> disputed (the decider confirmed nobody: another decider, up to MAX_DECIDERS)
  waiting -> unverifiable (no independent worker asked within ``wait_seconds``)
  replaying -> waiting (the replay lease expired or was refused)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple

from market.core import ledger, money

__all__ = [
    "DEFAULT_FRACTION",
    "DEFAULT_WATCH_SLICES",
    "DEFAULT_WAIT_SECONDS",
    "DEFAULT_MARGIN",
    "MIN_STEPS",
    "MAX_STEPS",
    "Settings",
    "CheckKind",
    "CheckStatus",
    "OPEN_CHECKS",
    "Reason",
    "Standing",
    "Verifier",
    "Check",
    "StateRecord",
    "Payment",
    "NO_VERIFIER",
    "under_watch",
    "why_verify",
    "max_steps",
    "WATCH_SLICE_SHARE",
    "slice_seconds",
    "replay_seconds",
    "REPLAY_TIME_FACTOR",
    "can_verify",
    "pick_check",
    "MAX_OPEN_PER_WORKER",
    "IN_FLIGHT",
    "open_per_worker",
    "held",
    "deciding_workers",
    "expired",
    "ON_HOLD",
    "on_hold",
    "MOOT",
    "moot",
    "compare",
    "Verdict",
    "Replay",
    "Judgement",
    "DECIDER_CAP_FACTOR",
    "MAX_DECIDERS",
    "first_steps",
    "decider_steps",
    "judge",
    "rollback_seq",
    "reversals",
    "reversal_memo",
    "replay_ms",
    "waited_too_long",
    "DEFAULT_DISPUTE_SECONDS",
    "NO_DECIDER",
    "UNDECIDED",
    "dispute_given_up",
    "result_standing",
    "expected_fee",
    "fee_words",
]

# of the slices of workers not under watch. 2 %, not 5 %: every final result is replayed anyway
# (~5.7 % of a market's operations with jobs of ~20 slices, docs/trust.md), and each sampled percent
# adds ~1.25 % (a replay at 1.5x); at 5 % verification took 11.7 % of the operations (18 % of the
# seconds), at 2 % 8.5 %. New clients are caught by the watch, not by sampling.
DEFAULT_FRACTION = 0.02
DEFAULT_WATCH_SLICES = 10  # verified slices a worker needs before it is sampled
DEFAULT_WAIT_SECONDS = 60.0  # how long a check waits for an independent verifier
# A replay counts back-edges, so it runs slower than the slice it checks; and the worker's probe
# speed is a measurement. The cap on a replay's back-edges is the slice's seconds x the worker's
# speed x this margin: an honest S' is reached well within it, a made-up one never matches.
# 16, not 4: probe steps and a job's back-edges are not the same unit (a tight loop runs 2-3x more
# back-edges per second than probe steps, and a first probe reads ~2.6x low); at 4 a real worker's
# honest result went unmatched (tests/trust/test_verification.py, real workers of two owners).
DEFAULT_MARGIN = 16.0
MIN_STEPS = 10_000  # a slice of a job never measured still gets a useful replay
MAX_STEPS = 2_000_000_000


class Settings(NamedTuple):
    """The verification settings (``market.settings``: ``verify-fraction``, ``watch-slices``,
    ``verify-wait``, ``verify-margin``)."""

    fraction: float = DEFAULT_FRACTION
    watch_slices: int = DEFAULT_WATCH_SLICES
    wait_seconds: float = DEFAULT_WAIT_SECONDS
    margin: float = DEFAULT_MARGIN


class CheckKind(StrEnum):
    SLICE = "slice"  # a state S' made from its parent S
    RESULT = "result"  # a job's return value, made from its last state


class CheckStatus(StrEnum):
    WAITING = "waiting"
    REPLAYING = "replaying"
    AGREED = "agreed"
    DISPUTED = "disputed"
    DECIDING = "deciding"
    DECIDED = "decided"
    UNVERIFIABLE = "unverifiable"


OPEN_CHECKS = frozenset({CheckStatus.WAITING, CheckStatus.REPLAYING, CheckStatus.DISPUTED, CheckStatus.DECIDING})


class Reason(StrEnum):
    """Why a slice or result is replayed."""

    RESULT = "result"  # every final result
    WATCH = "watch"  # its worker is under watch
    SAMPLED = "sampled"  # the random draw fell within the fraction


class Standing(StrEnum):
    """A slice's or result's standing, as web, CLI, RPC and the report show it."""

    VERIFIED = "verified"
    UNVERIFIED = "unverified"


NO_VERIFIER = "no independent worker (an opted-in worker of another owner on {interpreter}) asked within {seconds:g} s"


def under_watch(verified_slices: int, watch_slices: int = DEFAULT_WATCH_SLICES) -> bool:
    """A worker is under watch until ``watch_slices`` of its slices have been verified."""
    return verified_slices < watch_slices


def why_verify(kind: str, worker_verified_slices: int, draw: float, settings: Settings = Settings()) -> Reason | None:
    """Whether a checked-in slice or result is replayed, and why; None when it is not.

    Every result is; every slice of a worker under watch is; any other slice is when ``draw``
    (uniform in [0, 1), drawn by the caller) falls below ``settings.fraction``.
    """
    if kind == CheckKind.RESULT:
        return Reason.RESULT
    if under_watch(worker_verified_slices, settings.watch_slices):
        return Reason.WATCH
    if draw < settings.fraction:
        return Reason.SAMPLED
    return None


def max_steps(slice_seconds: float, speed: float | None, margin: float = DEFAULT_MARGIN) -> int:
    """The cap on a replay's back-edges: the slice's seconds x the worker's probe speed (chain
    steps, one back-edge each, per second) x ``margin``, within [MIN_STEPS, MAX_STEPS]."""
    if not speed or speed <= 0 or slice_seconds <= 0:
        return MIN_STEPS
    return max(MIN_STEPS, min(MAX_STEPS, int(slice_seconds * speed * margin)))


#: the share of its negotiated slice a worker under watch is granted. Every slice of such a
#: worker is replayed, and a made-up one runs its replay to the cap (the slice's seconds x speed x
#: margin) and a decider's to 4x that: the cost of refuting a new cheater grows with its slices'
#: length, and so does what it is paid before it is caught. A new honest worker's record (its
#: ``watch_slices`` verified slices) costs that share of the replays too, and it leaves watch
#: sooner. (sim trust_liars, rejoining instant cheaters: see docs/trust.md.)
WATCH_SLICE_SHARE = 0.125


def slice_seconds(granted: float, verified_slices: int, min_seconds: float, settings: Settings = Settings()) -> float:
    """The slice a worker is leased: ``granted`` (negotiated), or ``WATCH_SLICE_SHARE`` of it
    while the worker is under watch, never below ``min_seconds`` (nor above ``granted``)."""
    if not under_watch(verified_slices, settings.watch_slices):
        return granted
    return min(granted, max(min_seconds, granted * WATCH_SLICE_SHARE))


#: how much longer than the slice it checks a replay lease may run: a replay counts every back-edge
#: and compares marks, measured at 1.1-4.4x the honest slice's CPU on the bench programs
#: (tests/bench/bench_replay.py) and ~12x on a tight `while` loop (every back-edge builds the
#: frame's locals); it is never paid beyond the slice's time
REPLAY_TIME_FACTOR = 24.0


def replay_seconds(checked_ms: int, min_seconds: float) -> float:
    """The time a replay lease grants: the checked slice's time x REPLAY_TIME_FACTOR, at least
    ``min_seconds``."""
    return max(min_seconds, REPLAY_TIME_FACTOR * checked_ms / 1000.0)


class Verifier(NamedTuple):
    """A worker asking for work that has opted in to verify. ``trusted``: it is not under watch
    (only a trusted worker decides a dispute, unless none took it within ``wait_seconds``)."""

    client: int
    owner: int
    interpreter: str
    suspect: bool = False
    trusted: bool = True


class Check(NamedTuple):
    """A slice or result waiting to be replayed, as the verifier's choice sees it."""

    id: int
    kind: str
    job_id: int
    job_owner: int | None
    worker: int  # the client that made the slice or result
    worker_owner: int
    interpreter: str  # the interpreter its parent state names (a replay must use the same)
    status: str
    created_at: float
    first_verifier: int | None = None  # the client whose replay disagreed, for a third
    first_verifier_owner: int | None = None
    #: every (client, owner) that has replayed it beyond the first verifier (earlier deciders)
    deciders: tuple[tuple[int, int], ...] = ()
    disputed_at: float | None = None  # when it became (or went back to) disputed
    #: since when it may be taken (``held`` behind its worker's other checks until then); None:
    #: since ``created_at``. The wait for an independent verifier (``expired``) counts from here.
    waiting_since: float | None = None


class Verdict(StrEnum):
    """What a replay reports beside the state it reached (``state``'s ``info {replay: ...}``)."""

    REACHED = "reached"  # it stopped at a state (the match, or where the job finished)
    CAPPED = "capped"  # it hit its step cap without reaching the target


def can_verify(
    verifier: Verifier, check: Check, at: float | None = None, wait_seconds: float = DEFAULT_WAIT_SECONDS
) -> bool:
    """Whether ``verifier`` may replay ``check``: an opted-in worker that is not suspect, on the
    interpreter the parent state names, of another owner than the worker's (and, for a dispute,
    than every verifier's so far). Neither the job's owner, whose own machine would vouch for its
    own job, nor any worker already in the check may verify it.

    A dispute is decided by a *trusted* worker (not under watch); a worker under watch may take
    one only when no trusted worker took it within ``wait_seconds`` of its dispute (a new market,
    where everyone is under watch, must still decide) — ``at`` is the time of asking."""
    if verifier.suspect or verifier.interpreter != check.interpreter:
        return False
    clients = {check.worker, check.first_verifier} | {c for c, _ in check.deciders}
    owners = {check.worker_owner, check.first_verifier_owner, check.job_owner} | {o for _, o in check.deciders}
    if verifier.client in clients or verifier.owner in owners:
        return False
    if check.status == CheckStatus.WAITING:
        return True
    if check.status != CheckStatus.DISPUTED:
        return False
    if verifier.trusted:
        return True
    since = check.disputed_at if check.disputed_at is not None else check.created_at
    return at is not None and waited_too_long(since, at, wait_seconds)


#: a worker's slice checks that may be out at once (replaying, disputed or being decided); its
#: other slice checks wait, *held*, until one closes. A made-up state never matches, so its replay
#: runs to the cap (margin x the slice's steps) and its dispute to a decider's 4x that: a cheater
#: under watch checks in a new made-up slice every slice while the first is refuted, and without
#: this every one of them was replayed to the cap at once (37.7 % of the market's compute with
#: rejoining instant cheaters, sim trust_liars). Held checks of a worker that loses need no
#: replay: its unverified work is undone (``rollback_seq``) and their checks go with it. Two, not
#: one: an honest worker under watch checks in a slice per slice time and its replay takes ~1.5-2
#: slice times, so one at a time would leave it under watch (every slice replayed) twice as long.
#: Results are never held (a job waits on its result, and every result is replayed).
MAX_OPEN_PER_WORKER = 2
#: the statuses in which a check counts against its worker's ``MAX_OPEN_PER_WORKER``
IN_FLIGHT = frozenset({CheckStatus.REPLAYING, CheckStatus.DISPUTED, CheckStatus.DECIDING})


def open_per_worker(checks: Iterable[Check]) -> dict[int, int]:
    """worker -> how many of its checks are in flight (``IN_FLIGHT``)."""
    out: dict[int, int] = {}
    for c in checks:
        if c.status in IN_FLIGHT:
            out[c.worker] = out.get(c.worker, 0) + 1
    return out


def deciding_workers(checks: Iterable[Check]) -> dict[int, int]:
    """worker -> the id of the check of its work that a decider replays or will replay first:
    the one being decided, else its oldest dispute."""
    out: dict[int, tuple[int, float, int]] = {}
    for c in checks:
        if c.status not in (CheckStatus.DISPUTED, CheckStatus.DECIDING):
            continue
        key = (0 if c.status == CheckStatus.DECIDING else 1, c.disputed_at or c.created_at, c.id)
        if c.worker not in out or key < out[c.worker]:
            out[c.worker] = key
    return {w: key[2] for w, key in out.items()}


def held(
    check: Check,
    in_flight: Mapping[int, int],
    limit: int = MAX_OPEN_PER_WORKER,
    deciding: Mapping[int, int] | None = None,
) -> bool:
    """Whether a check must wait for its worker's other checks: a waiting slice check while
    ``limit`` of them are in flight (``in_flight``: ``open_per_worker``; a result is never held);
    a dispute while another dispute of the same worker goes first (``deciding``:
    ``deciding_workers``) — a decider replays to 4x the cap, and one decision settles the
    worker: if it loses, its other disputes are ``moot``."""
    if check.status == CheckStatus.DISPUTED:
        return deciding is not None and deciding.get(check.worker, check.id) != check.id
    return (
        check.status == CheckStatus.WAITING
        and check.kind != CheckKind.RESULT
        and in_flight.get(check.worker, 0) >= limit
    )


def expired(
    checks: Iterable[Check],
    at: float,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    limit: int | None = MAX_OPEN_PER_WORKER,
) -> list[Check]:
    """The waiting checks to give up (``waited_too_long``): nobody took them within
    ``wait_seconds`` of ``waiting_since`` (or ``created_at``). A held check is not waiting for a
    verifier but for its worker's other checks, so it never expires; the caller sets its
    ``waiting_since`` when it is released (the time it was last seen held will do). ``limit``
    None: nothing is held (the caller does not hold checks), as ``waited_too_long`` alone."""
    checks = list(checks)
    in_flight = open_per_worker(checks)
    return [
        c
        for c in checks
        if c.status == CheckStatus.WAITING
        and (limit is None or not held(c, in_flight, limit))
        and waited_too_long(c.created_at if c.waiting_since is None else c.waiting_since, at, wait_seconds)
    ]


ON_HOLD = "a check of your work is disputed: no paid lease until a third worker has decided it"


def on_hold(worker: int, checks: Iterable[Check]) -> bool:
    """Whether ``worker`` is refused paid leases for now (``ON_HOLD``): a check of its work is
    disputed or being decided. A made-up state is disputed after its first replay; a worker that
    goes on checking in meanwhile makes more to undo (and, under watch, to replay). An honest
    worker is disputed only when a cap was too small or a verifier lied, and is held only until
    the decider reaches its state (about the slice's own steps); it may still replay others'
    work meanwhile. Nothing is taken from it: it is not suspect."""
    return any(c.worker == worker and c.status in (CheckStatus.DISPUTED, CheckStatus.DECIDING) for c in checks)


MOOT = "its worker lost a dispute: its unverified work is undone, nothing is left to verify"


def moot(check: Check, loser: int) -> bool:
    """Whether ``check`` is given up (unverifiable, note ``MOOT``) because ``loser`` lost a
    dispute: it checks ``loser``'s own work and no replay of it is out (waiting, or disputed with
    no decider at work). Losing already reversed every unverified payment of the loser and sent
    its jobs back before its first unverified state, so a replay could only show what is known.
    (A replay already out finishes and is paid; its outcome changes nothing.) Before this, sim's
    rejoining instant cheaters had 15 % of the market's compute spent by deciders on disputes of
    workers already suspect."""
    return check.worker == loser and check.status in (CheckStatus.WAITING, CheckStatus.DISPUTED)


def pick_check(
    verifier: Verifier,
    checks: Iterable[Check],
    at: float | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    limit: int | None = None,
) -> Check | None:
    """The check ``verifier`` should replay: disputes first (a job waits on them), then results,
    then the oldest; None when it may verify none of them. With a ``limit``
    (``MAX_OPEN_PER_WORKER``), ``checks`` must include the checks in flight (replaying, disputed,
    deciding): a worker's waiting slice checks are ``held`` while ``limit`` of its checks are,
    and its disputes but one; ``expired`` must then be given the same limit. (``sim`` and
    the store's ``take_check`` hold: docs/trust.md.)"""
    checks = list(checks)
    in_flight = open_per_worker(checks) if limit is not None else {}
    deciding = deciding_workers(checks) if limit is not None else None
    limit = MAX_OPEN_PER_WORKER if limit is None else limit
    order = {CheckStatus.DISPUTED: 0}
    best: Check | None = None
    best_key: tuple[int, int, float, int] | None = None
    for c in checks:
        if held(c, in_flight, limit, deciding) or not can_verify(verifier, c, at, wait_seconds):
            continue
        key = (order.get(CheckStatus(c.status), 1), 0 if c.kind == CheckKind.RESULT else 1, c.created_at, c.id)
        if best_key is None or key < best_key:
            best, best_key = c, key
    return best


def compare(target_sha256: str, reached_sha256: str) -> bool:
    """A replay agrees when the hash of what it reached equals the target's: the payload sha256
    for a slice, the sha256 of the result bytes for a result. The server hashes both; a
    verifier's word is never taken."""
    return bool(target_sha256) and target_sha256 == reached_sha256


#: a first replay runs with the check's step cap, a decider with this many times it: a cap too
#: small for an honest slice (a slow probe, a loop heavier than probe steps) sends the slice to a
#: decider that still reaches it instead of making honest parties disagree. (A first replay of a
#: quarter cap was tried: 1.25 caps to convict instead of 5, but real workers' honest slices went
#: unmatched at that cap, and with two owners no decider exists — tests/trust/test_verification.py.)
DECIDER_CAP_FACTOR = 4
#: deciders a dispute may take before it is given up undecided (nobody loses, nothing verified)
MAX_DECIDERS = 3


def first_steps(steps: int) -> int:
    """A first replay's step cap: the check's cap (``max_steps``)."""
    return max(1, int(steps))


def decider_steps(steps: int) -> int:
    """A decider's step cap: ``DECIDER_CAP_FACTOR`` x the check's, within ``MAX_STEPS``."""
    return max(1, min(MAX_STEPS, int(steps) * DECIDER_CAP_FACTOR))


class Replay(NamedTuple):
    """One replay of a check, as the judgement sees it: who ran it, the hash of what it reached
    (computed by the market), whether it said it hit its cap, and whether it was trusted (not
    under watch) when it replayed."""

    client: int
    reached: str
    capped: bool = False
    trusted: bool = True


class Judgement(NamedTuple):
    """Where a check stands after its latest replay. ``status``: agreed, disputed (another
    decider is needed), decided or unverifiable (undecided after ``MAX_DECIDERS``).
    ``worker_right``: the slice or result stands; ``losers``: clients that lost (become
    suspect); ``note``: why, in plain words."""

    status: CheckStatus
    worker_right: bool
    losers: tuple[int, ...]
    note: str = ""


def judge(target_sha256: str, worker: int, replays: Sequence[Replay], max_deciders: int = MAX_DECIDERS) -> Judgement:
    """Judge a check from its replays so far (the first verifier's, then the deciders', in order).

    Replay is deterministic, so honest parties reach equal hashes. A hash is *confirmed* when two
    parties hold it (the worker holds its target) and at least one of them is a trusted replay —
    or, when no decider so far is trusted (a market still bootstrapping), a decider under watch
    together with another party. Nobody loses on the word of a worker under watch alone.

    - The first replay agrees with the target: agreed.
    - A confirmed hash decides: the worker is right exactly when it is its target; every replay
      that reached another hash loses; so does the worker when it is not its target.
    - A replay that hit its cap (``capped``) holds no hash: it is no evidence of another state, and
      it never loses. Deciders replay with ``DECIDER_CAP_FACTOR`` x the cap; a trusted decider
      that also hits that larger cap makes the worker lose: its state is not reachable within 4x
      the cap its measured speed allows. (A cap claimed by a worker under watch convicts nobody:
      it is the cheapest lie there is.)
    - Nothing confirmed: another decider (disputed), until ``max_deciders`` deciders have
      replayed; then the check is given up (unverifiable): nobody loses, nothing is verified.
    """
    if not replays:
        return Judgement(CheckStatus.WAITING, False, ())
    first = replays[0]
    if not first.capped and compare(target_sha256, first.reached):
        return Judgement(CheckStatus.AGREED, True, ())
    deciders = replays[1:]
    if not deciders:
        why = "the first replay hit its step cap" if first.capped else "the first replay reached another state"
        return Judgement(CheckStatus.DISPUTED, False, (), why)
    confirmed = _confirmed(target_sha256, replays)
    if confirmed is not None:
        right = compare(target_sha256, confirmed)
        losers = [] if right else [worker]
        losers += [r.client for r in replays if not r.capped and r.reached != confirmed and r.client not in losers]
        note = "the worker was right" if right else "the worker was wrong"
        return Judgement(CheckStatus.DECIDED, right, tuple(losers), note)
    for d in deciders:
        if d.capped and d.trusted:  # a cap is the cheapest claim: only a trusted one convicts
            # a replay that stopped elsewhere without its cap (the job finished first) is no liar
            return Judgement(CheckStatus.DECIDED, False, (worker,), "the worker was wrong: a decider hit 4x the cap")
    if len(deciders) >= max_deciders:
        return Judgement(CheckStatus.UNVERIFIABLE, False, (), f"undecided: {len(deciders)} deciders confirmed no state")
    return Judgement(CheckStatus.DISPUTED, False, (), "the decider confirmed no state: another decider")


def _confirmed(target: str, replays: Sequence[Replay]) -> str | None:
    """The hash two parties hold with a trusted replay among them (or, when no decider is
    trusted, a decider among them), or None. The worker holds ``target``."""
    deciders = replays[1:]
    bootstrap = not any(d.trusted for d in deciders)
    holders: dict[str, list[tuple[Replay | None, bool]]] = {}
    if target:
        holders.setdefault(target, []).append((None, False))  # the worker: not a replay
    for i, r in enumerate(replays):
        if r.capped or not r.reached:
            continue
        holders.setdefault(r.reached, []).append((r, i > 0))
    for r in replays:  # in replay order: the earliest confirmation wins
        if r.capped or not r.reached:
            continue
        held = holders[r.reached]
        if len(held) < 2:
            continue
        if any(x is not None and x.trusted for x, _ in held) or (bootstrap and any(dec for _, dec in held)):
            return r.reached
    return None


class StateRecord(NamedTuple):
    """A committed (or superseded) state of a job, as the rollback sees it."""

    seq: int
    client: int | None  # the client whose slice made it (None for state #0, made at submission)
    verified: bool


def rollback_seq(states: Sequence[StateRecord], loser: int) -> int:
    """The sequence number the job goes back to when ``loser`` lost a dispute on it: the state
    before the earliest unverified state ``loser`` made. Everything after it descends from a state
    nobody vouched for, so it is dropped; a state ``loser`` made that a replay verified stands.
    The job's latest state's seq when the loser made nothing unverified (a lying verifier)."""
    if not states:
        return 0
    ordered = sorted(states, key=lambda s: s.seq)
    for s in ordered:
        if s.client == loser and not s.verified and s.seq > 0:
            return s.seq - 1
    return ordered[-1].seq


class Payment(NamedTuple):
    """A payment made for a lease of a job, as a reversal sees it."""

    lease_id: int
    job_id: int
    client: int  # the client the lease was made to
    payer: int  # the job's owner's account
    payee: int  # the client's owner's account
    amount: int
    verified: bool  # the slice it paid for was verified (or the replay agreed with a verified one)
    reversed: bool = False


def reversal_memo(job_id: int, lease_id: int) -> str:
    return f"reversal: job {job_id} slice {lease_id}"


def reversals(payments: Iterable[Payment], loser: int, balances: Mapping[int, int]) -> list[ledger.Entry]:
    """New ledger entries that take back ``loser``'s unverified payments for a job: the loser's
    owner pays each amount back to the job's owner (kind ``reversal``); payments stay as they
    were written. A reversal never overdraws its payer: when the loser's owner has spent the
    money, what is there is taken back (the report shows the rest as a loss)."""
    left = dict(balances)
    out: list[ledger.Entry] = []
    for p in payments:
        if p.client != loser or p.verified or p.reversed or p.amount <= 0 or p.payer == p.payee:
            continue
        have = left.get(p.payee, 0)
        amount = min(p.amount, have)
        if amount <= 0:
            continue
        left[p.payee] = have - amount
        left[p.payer] = left.get(p.payer, 0) + amount
        out.append(ledger.Entry(p.payee, p.payer, amount, "reversal", reversal_memo(p.job_id, p.lease_id)))
    return out


def replay_ms(measured_ms: int, checked_slice_ms: int) -> int:
    """The time a replay lease is paid for (at the job's lease price, like any slice): what the
    server measured, never more than the slice it checks was accepted for. So verification costs
    an owner at most the replayed fraction of the work, whatever the verifier's machine."""
    return max(0, min(measured_ms, checked_slice_ms))


def waited_too_long(created_at: float, at: float, wait_seconds: float) -> bool:
    """A check nobody took within ``wait_seconds`` is given up: the slice or result stays
    unverified (``NO_VERIFIER`` says why) — a market of one owner never blocks a result."""
    return at - created_at >= wait_seconds


#: how long a dispute waits for a decider before it is given up undecided (``dispute-timeout``):
#: a market where no trusted worker of a fresh owner on the interpreter ever asks must not keep a
#: check open forever (it holds its job's result back, and the disputed worker's pay: docs/trust.md)
DEFAULT_DISPUTE_SECONDS = 600.0
#: every note of a check given up undecided starts so (``judge``'s after MAX_DECIDERS, and this one)
UNDECIDED = "undecided"
NO_DECIDER = (
    UNDECIDED + ": no decider (a worker of an owner not yet in the check, on {interpreter}) replayed it"
    " within {seconds:g} s of its dispute"
)


def dispute_given_up(disputed_at: float | None, created_at: float, at: float, dispute_seconds: float) -> bool:
    """A dispute nobody decided within ``dispute_seconds`` of becoming disputed (``disputed_at``;
    ``created_at`` for a row without it) is given up as ``judge`` gives up one after MAX_DECIDERS
    deciders: nobody loses, nothing is verified (``NO_DECIDER`` says why)."""
    since = disputed_at if disputed_at is not None else created_at
    return waited_too_long(since, at, dispute_seconds)


def result_standing(check_status: str | None, worker_right: bool = False) -> Standing:
    """A result is verified only once a replay agreed with it, or a third worker decided for it
    (``worker_right``); unverified otherwise."""
    if check_status == CheckStatus.AGREED or (check_status == CheckStatus.DECIDED and worker_right):
        return Standing.VERIFIED
    return Standing.UNVERIFIED


def expected_fee(price: int, seconds: float, slices: int, settings: Settings = Settings()) -> int:
    """The expected verification fee, in cents, of a job expected to run ``slices`` slices of
    ``seconds`` at ``price``: its final slice is always replayed, each other slice with
    probability ``fraction`` (more when it lands on a worker under watch). Replays are paid like
    slices (``replay_ms``), so this is an estimate from below for new markets, and an upper bound
    on the sampled part."""
    per_slice = money.payment(price, int(seconds * 1000))
    others = max(0, slices - 1)
    return per_slice + int(per_slice * others * settings.fraction)


def fee_words(settings: Settings = Settings()) -> str:
    """The verification fee in one sentence, for the submit form, ``market submit`` and docs."""
    pct = f"{settings.fraction * 100:g} %"
    return (
        f"Verification fee: about {pct} of the job's cost, plus one final slice. Replays are paid "
        f"from your account at the job's lease price, never more than the slice they check: "
        f"{pct} of slices are replayed at random, every slice of a worker with fewer than "
        f"{settings.watch_slices} verified slices, and every final result."
    )
