"""The market's rules, on plain values: what a window, a check-in, a failure or an expiry decides.

Nothing here reads a clock or a database: time is always a parameter and every input is a plain
value, so the store (``market.store.jobs``, which reads rows, asks these rules and writes what
they decide), the simulator (``sim.books``) and the property tests run the very same rules.

The statuses are defined here, once, beside the rules that move between them. They are
``StrEnum`` members, so they compare equal to the strings the database stores and the report
publishes; where a value leaves the process (XML-RPC cannot marshal a ``str`` subclass) write
``.value`` or go through :func:`answer`.

Statuses::

  job:    new (no state yet) -> ready <-> running -> finished | cancelled;
          ready -> held (its owner cannot pay a slice) -> ready (after a grant or a new price)
  state:  committed (the job's current state) | superseded (an earlier committed state)
  lease:  out -> accepted (checked in in time) | rejected (late, refused or failed)
              | expired (reaped after its deadline) | finished (the job's last slice)

A lease is the paper's "job state checked out": which state, to which client, when, its granted
slice and its deadline. Its id is XML-RPC's ``stateid``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping
from enum import StrEnum
from typing import Any, NamedTuple

from market.core import caps as _caps
from market.core import ledger, money

__all__ = [
    "JobKind",
    "JobStatus",
    "LeaseStatus",
    "StateStatus",
    "SliceStatus",
    "Outcome",
    "Verdict",
    "COMPETING_KINDS",
    "OVER",
    "RESULT_OUTCOMES",
    "STRIKE_STATUSES",
    "STRIKES",
    "NOFREEZE_STRIKES",
    "billed_failure",
    "JobChange",
    "WindowJob",
    "WindowPlan",
    "Slice",
    "Settlement",
    "is_over",
    "can_lease",
    "lease_is_wanted",
    "task_seconds",
    "lease_seconds",
    "lease_deadline",
    "overdue",
    "accepted_ms",
    "judge_checkin",
    "StateFacts",
    "state_refusal",
    "answer",
    "repeat_answer",
    "after_accepted_slice",
    "released",
    "after_expiry",
    "after_failure",
    "unheld",
    "slice_cost",
    "reservation",
    "window_reach",
    "plan_window",
    "payment_memo",
    "settle",
    "pay",
]


# -- statuses ----------------------------------------------------------------------------------


class JobKind(StrEnum):
    """What a job is: a resumable Python job, a sandboxed task, or a probe (test job)."""

    JOB = "job"
    TASK = "task"
    TEST = "test"  # measures one client's speed; never on the ready list, never paid


class JobStatus(StrEnum):
    NEW = "new"  # submitted, no state yet
    READY = "ready"  # on the ready list at its committed state
    RUNNING = "running"  # leased to a client
    HELD = "held"  # its owner cannot pay a slice; visible, not dispatched
    FINISHED = "finished"
    CANCELLED = "cancelled"


class LeaseStatus(StrEnum):
    OUT = "out"  # checked out, the client is running it
    ACCEPTED = "accepted"  # checked in before the deadline: state committed, slice paid
    REJECTED = "rejected"  # late, on a job that is over, or the slice failed
    EXPIRED = "expired"  # the reaper found it past its deadline
    FINISHED = "finished"  # the job's last slice: its result is stored and the slice paid
    # Published by the report (and its XSD) for a status this release does not know; the store
    # never writes it.
    FAILED = "failed"


class StateStatus(StrEnum):
    COMMITTED = "committed"
    SUPERSEDED = "superseded"


class SliceStatus(StrEnum):
    """How a slice ended, as the worker's sandbox reports it (``state`` and ``fail``)."""

    OK = "ok"
    TIMEOUT = "timeout"
    OVERFLOW = "overflow"
    MEMORY = "memory"
    CRASH = "crash"
    REFUSED = "refused"
    ABORT = "abort"
    # the job reached no freeze point within its slice (one long built-in call): it ran the whole
    # slice and nothing could be saved, by its own doing — billed, and it ends after a few
    NOFREEZE = "nofreeze"


class Outcome(StrEnum):
    """How a job ended (the jobs' ``outcome``). A job ended by failures ends with the failing
    slice's :class:`SliceStatus` instead."""

    FINISHED = "finished"
    ERROR = "error"
    SUCCESS = "success"  # a task's
    TIMEOUT = "timeout"
    OVERFLOW = "overflow"
    ABORT = "abort"  # also what a cancelled job ends with
    CRASH = "crash"
    MEMORY = "memory"
    NOFREEZE = "nofreeze"  # ended by the no-freeze-point rule (``after_failure``)
    UNFINISHED = "unfinished"  # a test job whose one lease ended without a result
    EXPIRED = "expired"  # a test job whose lease expired


# what a worker's ``result`` may report, in the order the RPC's error message lists them
RESULT_OUTCOMES = (
    Outcome.FINISHED,
    Outcome.ERROR,
    Outcome.SUCCESS,
    Outcome.TIMEOUT,
    Outcome.OVERFLOW,
    Outcome.ABORT,
    Outcome.CRASH,
    Outcome.MEMORY,
)
COMPETING_KINDS = (JobKind.JOB, JobKind.TASK)  # the kinds on the ready list
OVER = frozenset({JobStatus.FINISHED, JobStatus.CANCELLED})
# failures that are the job's fault once they repeat: three strikes and the job ends with them
STRIKE_STATUSES = frozenset({SliceStatus.MEMORY, SliceStatus.REFUSED, SliceStatus.CRASH})
STRIKES = 3

#: bytes of one chunk of a state stored or sent in chunks (``store.statechunks``; the worker's
#: ``state_put``/``state_get``): a state over one chunk travels as chunks of exactly this size,
#: the last one shorter
STATE_CHUNK = 1024 * 1024
# slices that reached no freeze point before the job ends 'nofreeze' (the market's
# ``nofreeze-strikes`` setting; this is its default)
NOFREEZE_STRIKES = 3


# The members the hot paths compare with, bound once: looking a member up on its Enum class costs
# ~75 ns, and the simulator asks these rules millions of times.
_TEST = JobKind.TEST
_READY, _RUNNING, _FINISHED = JobStatus.READY, JobStatus.RUNNING, JobStatus.FINISHED
_OUT = LeaseStatus.OUT


class Verdict(StrEnum):
    """What a check-in (``state``, ``result``) on a lease gets."""

    ACCEPT = "accept"  # in time: commit, pay, close the lease
    REJECT = "reject"  # late, or the job is over: the job keeps its committed state
    REPEAT = "repeat"  # the lease is already closed: answer as before, pay nothing twice


_ACCEPT, _REJECT, _REPEAT = Verdict.ACCEPT, Verdict.REJECT, Verdict.REPEAT


class JobChange(NamedTuple):
    """What a job becomes: its new status and, when it ends, its outcome."""

    status: JobStatus
    outcome: str | None = None


# -- jobs ----------------------------------------------------------------------------------------


def is_over(status: str) -> bool:
    """A finished or cancelled job: no new price, no new lease, its result can be read."""
    return status in OVER


def can_lease(status: str, kind: str) -> bool:
    """Only a ready job is leased; a test job is leased as it is (it never joins the ready list)."""
    return status == _READY or kind == _TEST


def lease_is_wanted(lease_status: str, job_status: str) -> bool:
    """For a worker's polling: the lease is open and its job still runs (not cancelled, not over)."""
    return lease_status == _OUT and job_status == _RUNNING


def unheld(status: str) -> str:
    """A held job goes back to the ready list (after a grant or a new price) to be checked again."""
    return JobStatus.READY if status == JobStatus.HELD else status


# -- leases ----------------------------------------------------------------------------------------


def task_seconds(spec: str | None) -> float | None:
    """A task's own time limit (``limits.time`` of its JSON spec), or None for a plain job."""
    if not spec:
        return None
    try:
        return float(json.loads(spec)["limits"]["time"])
    except (ValueError, KeyError, TypeError):
        return None


def lease_seconds(own_seconds: float | None, granted: float) -> float:
    """A lease's slice: a task runs for its own time limit, a job for the client's granted slice."""
    return own_seconds or granted


def lease_deadline(checked_out_at: float, seconds: float, grace: float) -> float:
    """When a lease checked out at ``checked_out_at`` for ``seconds`` must be back: the slice plus
    the transfer allowance ``grace``."""
    return checked_out_at + seconds + grace


def overdue(deadline: float, at: float) -> bool:
    """Past the deadline: a check-in at ``at`` is late, and the reaper may expire the lease.
    Arriving exactly at the deadline is in time."""
    return at > deadline


def accepted_ms(checked_out_at: float, granted_seconds: float, at: float) -> int:
    """The execution time a check-in at ``at`` is paid for: measured by the server from checkout
    to check-in (transfer included: the worker's machine was the market's), capped at the
    granted slice, in whole milliseconds."""
    seconds = at - checked_out_at
    if seconds > granted_seconds:
        seconds = granted_seconds
    if seconds < 0.0:
        seconds = 0.0
    return int(seconds * 1000)


def judge_checkin(lease_status: str, deadline: float, job_status: str, at: float) -> Verdict:
    """What a check-in arriving at ``at`` on this lease gets."""
    if lease_status != _OUT:
        return _REPEAT
    if at > deadline or job_status in OVER:  # overdue(deadline, at)
        return _REJECT
    return _ACCEPT


class StateFacts(NamedTuple):
    """What a checked-in state's envelope says of itself (its header) and its payload's hash; or,
    the same fields, what its lease expects of it."""

    job_id: int | None
    source_sha256: str
    entry: str
    parent: str  # hex digest of the state it was made from
    seq: int
    payload_sha256: str | None


def state_refusal(lease_id: int, expected: StateFacts, got: StateFacts) -> str | None:
    """Why a state checked in on a lease that expects ``expected`` (the lease's job, its source and
    entry, the leased state's digest as parent, the next sequence number, and the leased state's
    payload hash, which the new one must NOT equal) is refused; None if it follows from the lease.

    The header is written by the worker and its checksum is no signature: this binds a state to
    its lease, it does not prove the work (replay does; docs/trust.md)."""
    after = "; nothing was stored or paid, and the lease stays open until its deadline"
    if got.job_id != expected.job_id:
        named = "no job" if got.job_id is None else f"job {got.job_id}"
        return (
            f"state refused: lease {lease_id} is for job {expected.job_id} but this state names {named}"
            f" — check in the state made from the one this lease gave you{after}"
        )
    if got.source_sha256 != expected.source_sha256 or got.entry != expected.entry:
        return (
            f"state refused: this state was made from another module or entry than job {expected.job_id}'s"
            f" — run the leased state with the module the lease gave you{after}"
        )
    if got.parent != expected.parent:
        return (
            f"state refused: this state was not made from the state lease {lease_id} checked out (its"
            f" parent is {got.parent[:12] or 'none'}..., the leased state is {expected.parent[:12]}...)"
            f" — run the leased state and check in what it produces{after}"
        )
    if got.seq != expected.seq:
        return (
            f"state refused: sequence number {got.seq}, lease {lease_id} expects {expected.seq}"
            f" — check in the state made from the leased one{after}"
        )
    if expected.payload_sha256 is not None and got.payload_sha256 == expected.payload_sha256:
        return (
            f"state refused: this state's payload is the leased state's, unchanged — a slice that did no"
            f" work is not paid; run the leased state, or call fail if it could not run{after}"
        )
    return None


def answer(lease_id: int, status: str, paid: int = 0, accepted: int = 0, duplicate: bool = False) -> dict[str, Any]:
    """What a check-in, a result or a failure answers (plain values: it goes out over XML-RPC)."""
    return {
        "stateid": lease_id,
        "status": str(status),
        "paid": int(paid),
        "duplicate": duplicate,
        "accepted_ms": int(accepted),
    }


def repeat_answer(lease_id: int, status: str, paid: int | None, accepted: int | None) -> dict[str, Any]:
    """A repeat of a check-in on a closed lease answers what the lease recorded, marked duplicate."""
    return answer(lease_id, status, paid or 0, accepted or 0, duplicate=True)


def after_accepted_slice(kind: str) -> JobStatus:
    """A running job whose slice was accepted goes back on the ready list; a test job is measured
    in one lease and is finished."""
    return _FINISHED if kind == _TEST else _READY


def released(job_status: str, kind: str, open_leases: int) -> JobChange | None:
    """A lease of this job closed without a new state (rejected or expired): what the job becomes,
    or None when it stays as it is (not running, or another lease is still out)."""
    if job_status != JobStatus.RUNNING:
        return None
    if kind == JobKind.TEST:
        # a test job is measured in one lease; one that did not finish just measured nothing
        return JobChange(JobStatus.FINISHED, Outcome.UNFINISHED)
    if open_leases:
        return None
    return JobChange(JobStatus.READY)


def after_expiry(job_status: str, kind: str, open_leases: int) -> JobChange | None:
    """An expired lease's job goes back to ready at its committed state; a test job ends 'expired'."""
    if kind == JobKind.TEST:
        return JobChange(JobStatus.FINISHED, Outcome.EXPIRED)
    return released(job_status, kind, open_leases)


def after_failure(
    kind: str, slice_status: str, failures: int, nofreeze_strikes: int = NOFREEZE_STRIKES
) -> JobChange | None:
    """The three-strikes rule, after a failed slice's lease was rejected: ``failures`` counts this
    job's slices that ended with ``slice_status``, this one included.

    A test job ends at its first failure. A job that failed with the same crash, memory or refused
    status ``STRIKES`` times ends with that outcome: it is then the job's fault, not the workers'.
    A job whose slices reached no freeze point ``nofreeze_strikes`` times ends 'nofreeze': it would
    only run out every slice again. Otherwise None: the job stays where the rejection left it.
    """
    if kind == JobKind.TEST or (slice_status in STRIKE_STATUSES and failures >= STRIKES):
        return JobChange(JobStatus.FINISHED, str(slice_status))
    if slice_status == SliceStatus.NOFREEZE and failures >= nofreeze_strikes:
        return JobChange(JobStatus.FINISHED, Outcome.NOFREEZE)
    return None


def billed_failure(kind: str, slice_status: str) -> bool:
    """Whether a failed slice is still paid for, like an accepted one: a slice that reached no
    freeze point ran the job's own code for the whole slice on the worker's machine, and nothing
    could be saved by the job's doing, not the worker's. Other failures are not paid (the worker
    may be at fault), and a test job is never paid."""
    return slice_status == SliceStatus.NOFREEZE and kind != JobKind.TEST


# -- windows -------------------------------------------------------------------------------------


class WindowJob(NamedTuple):
    """A job near the top of the ready list, as window planning sees it."""

    id: int
    owner: int | None
    price: int  # cents per second
    seconds: float | None = None  # its own slice (a task's time limit), or None
    caps: tuple[Any, ...] = ()  # keys of the spending caps over it (``plan_window``'s ``caps``)


class WindowPlan(NamedTuple):
    """Which jobs a window may match (in ready-list order) and which it holds: ``held`` all of
    them, ``capped`` those held by a spending cap, with the cap (its figures in ``caps.reason``)."""

    candidates: list[WindowJob]
    held: list[int]
    capped: dict[int, _caps.Cap] | None = None


def slice_cost(price: int, seconds: float) -> int:
    """What ``seconds`` of execution at ``price`` cents per second cost (``money.payment``)."""
    return money.payment(price, int(seconds * 1000))


def reservation(kind: str, price: int, seconds: float) -> int:
    """The money a lease of ``seconds`` reserves on its owner's account until it closes, so that
    every accepted slice can be paid, with the cent its job's carry may add (``pay``): the exact
    cost rounded up; a test job costs nothing."""
    return 0 if kind == _TEST else money.payment_ceiling(price, int(seconds * 1000))


def window_reach(clients: int) -> int:
    """How far down the ready list a window of ``clients`` looks: twice as far, and a few more, so
    that held jobs do not starve it."""
    return 2 * clients + 8


def plan_window(
    top: Iterable[WindowJob],
    available: Mapping[int | None, int],
    wanted: int,
    longest: float,
    caps: Mapping[Any, _caps.Cap] | None = None,
) -> WindowPlan:
    """Window planning: walk the top of the ready list in order and keep the jobs whose owner can
    pay a slice, until ``wanted`` (the pooled clients) are found; the ones passed over are held.

    ``available`` is each owner's money (balance minus what open leases reserved). A job's slice
    is its own (a task's) or, since the match is not made yet, ``longest`` of the clients' granted
    slices; what a candidate may cost is set aside from its owner's money for the jobs after it.
    ``top`` is consumed lazily and not beyond the ``wanted``-th candidate.

    Spending caps (``market.core.caps``): ``caps`` maps each key a job names in ``WindowJob.caps``
    to its cap; a job whose slice reservation would pass any of them is held (``capped``), and a
    candidate's reservation counts against its caps for the jobs after it — so no lease reserves
    beyond what a cap leaves.
    """
    payment = money.payment_ceiling  # what the lease will reserve (``reservation``)
    left: dict[int | None, int] = {}
    used: dict[Any, int] = {}  # cap key -> what this window's candidates reserve under it
    candidates: list[WindowJob] = []
    held: list[int] = []
    capped: dict[int, _caps.Cap] = {}
    if wanted <= 0:
        return WindowPlan(candidates, held, capped)
    for job in top:
        owner = job.owner
        have = left.get(owner)
        if have is None:
            have = int(available[owner])
        need = payment(job.price, int((job.seconds or longest) * 1000))
        over = None
        for k in job.caps:
            cap = caps.get(k) if caps is not None else None  # read lazily: ``caps`` may compute it
            if cap is not None:
                cap = cap._replace(spent=cap.spent + used.get(k, 0))
                if not _caps.fits(cap, need):
                    over = cap
                    break
        if over is not None:
            capped[job.id] = over
            held.append(job.id)
            continue
        if have < need:
            left[owner] = have
            held.append(job.id)
            continue
        left[owner] = have - need
        for k in job.caps:
            used[k] = used.get(k, 0) + need
        candidates.append(job)
        if len(candidates) >= wanted:
            break
    return WindowPlan(candidates, held, capped)


# -- settlement ----------------------------------------------------------------------------------


class Slice(NamedTuple):
    """An accepted slice to pay for."""

    lease_id: int
    job_id: int
    kind: str
    price: int  # cents per second: the lease's, fixed when it was made (a new price is the next lease's)
    owner: int | None  # the job's owner (None for a test job)
    payee: int  # the client's owner
    accepted_ms: int
    reserved: int | None = None  # what the lease reserved: no slice pays more (None: no cap)


class Settlement(NamedTuple):
    paid: dict[int, int]  # lease id -> cents paid
    postings: list[tuple[ledger.Entry, int]]  # (ledger entry, lease id), in the slices' order


def payment_memo(job_id: int, lease_id: int) -> str:
    return f"job {job_id} slice {lease_id}"


def settle(
    slices: Iterable[Slice], balances: MutableMapping[int, int], carries: MutableMapping[int, int] | None = None
) -> Settlement:
    """Pay for accepted slices, one after the other (``pay``): ``Settlement(paid, postings)``.

    ``balances`` (account id -> cents, for every owner and payee involved) is updated in place to
    what the payments leave: the store passes the balances it locked, the simulator its books;
    ``carries`` (job id -> thousandths of a cent) likewise for the jobs whose slices carry.
    """
    paid: dict[int, int] = {}
    postings: list[tuple[ledger.Entry, int]] = []
    for s in slices:
        entry = pay(s, balances, carries)
        if entry is None:
            paid[s.lease_id] = 0
        else:
            postings.append((entry, s.lease_id))
            paid[s.lease_id] = entry.amount
    return Settlement(paid, postings)


def pay(
    s: Slice, balances: MutableMapping[int, int], carries: MutableMapping[int, int] | None = None
) -> ledger.Entry | None:
    """One accepted slice's payment: its owner pays ``money.payment(price, accepted_ms)`` to the
    client's owner, as a ledger entry checked by ``market.core.ledger`` and applied to
    ``balances``; None when the slice costs nothing.

    With ``carries`` holding the slice's job (job id -> thousandths of a cent), the slice pays
    its exact cost plus what the job's earlier slices left below a cent, in whole cents, and
    carries the rest on (``money.carried_payment``): a job's slices pay its exact cost rounded
    down once, not once per slice. The whole cents a shortfall leaves unpaid are not carried.

    The price is the lease's (the job's price when it was leased), and no slice pays more than its
    lease reserved. Test jobs are free; running your own job on your own machine costs nothing. A lease reserved
    its money at checkout, so a shortfall only follows an operator's correction: then the worker's
    owner gets what is there rather than nothing for honest work. No payment overdraws its payer.
    """
    owner, payee = s.owner, s.payee
    if s.kind == _TEST or owner is None or owner == payee:
        return None
    if carries is not None and s.job_id in carries:
        amount, carries[s.job_id] = money.carried_payment(s.price, s.accepted_ms, carries[s.job_id])
    else:
        amount = money.payment(s.price, s.accepted_ms)
    if s.reserved is not None and amount > s.reserved:
        amount = s.reserved
    if amount <= 0:
        return None
    have = balances[owner]
    if have < amount:
        if have <= 0:
            return None
        amount = have
    entry = ledger.Entry(owner, payee, amount, "payment", payment_memo(s.job_id, s.lease_id))
    ledger.apply(balances, entry)
    return entry
