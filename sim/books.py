"""The simulated market's books: accounts, jobs, leases and the ledger, in memory.

Every decision here is ``market.core.rules``'s, the very rules ``market.store.jobs`` executes in
SQL: which jobs a window may match and which it holds (``plan_window``), what a lease reserves,
whether a check-in is in time and how long it is paid for, what each slice pays (``settle``, with
the job's carry below a cent: ``money.carried_payment``), three strikes, and what an expired lease
leaves. The books only keep the state those rules read and write, as the store's tables do. ``tests/test_sim_parity.py``
drives the same events through these books and through the real store and compares every
ledger entry.

What the books do not keep by default, to stay small over a million slices: closed leases and the
ledger itself (``keep_history=True`` keeps both, for tests and short runs).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from market.core import caps, ledger, rules
from market.core.errors import NotFound
from market.core.rules import JobKind, JobStatus, LeaseStatus, Outcome, SliceStatus, Verdict

__all__ = ["Books", "BookJob", "Lease", "Posting"]

# bound once: an Enum member looked up on its class costs ~75 ns, and a run closes millions of leases
_READY, _HELD, _RUNNING = JobStatus.READY, JobStatus.HELD, JobStatus.RUNNING
_OUT, _ACCEPTED, _REJECTED = LeaseStatus.OUT, LeaseStatus.ACCEPTED, LeaseStatus.REJECTED
_OK = SliceStatus.OK
_REPEAT, _REJECT = Verdict.REPEAT, Verdict.REJECT


class BookJob:
    """What the books know of a job: what the store's ``jobs`` row holds for the rules."""

    __slots__ = (
        "id",
        "owner",
        "price",
        "kind",
        "seconds",
        "window",
        "status",
        "outcome",
        "finished_at",
        "open",
        "statuses",
        "cap",
        "spent",
    )

    def __init__(self, id: int, owner: int | None, price: int, kind: str, seconds: float | None) -> None:
        self.id, self.owner, self.price, self.kind, self.seconds = id, owner, price, kind, seconds
        self.window = rules.WindowJob(id, owner, price, seconds)  # as window planning sees it
        self.status: str = _READY
        self.outcome: str | None = None
        self.finished_at: float | None = None
        self.open = 0  # leases out
        self.statuses: dict[str, int] | None = None  # how many of its leases closed with each slice status
        self.cap: int | None = None  # its spending cap (core.caps), None for none
        self.spent = 0  # what its slices paid plus what its open leases reserved (core.caps)


class Lease:
    """A job's state checked out to a client, as the store's ``leases`` row holds it."""

    __slots__ = (
        "id",
        "job_id",
        "client_id",
        "payee",
        "checked_out_at",
        "granted",
        "deadline",
        "reserved",
        "price",
        "status",
        "checked_in_at",
        "slice_status",
        "paid",
        "accepted_ms",
    )

    def __init__(
        self,
        id: int,
        job_id: int,
        client_id: int,
        payee: int,
        checked_out_at: float,
        granted: float,
        deadline: float,
        reserved: int,
        price: int = 0,
    ) -> None:
        self.id, self.job_id, self.client_id, self.payee = id, job_id, client_id, payee
        self.checked_out_at, self.granted, self.deadline, self.reserved = checked_out_at, granted, deadline, reserved
        self.price = price  # the job's price when it was leased: what the slice is paid at
        self.status: str = _OUT
        self.checked_in_at: float | None = None
        self.slice_status: str | None = None
        self.paid = 0
        self.accepted_ms = 0


Posting = tuple[ledger.Entry, "int | None", float]  # (entry, lease id, when)


class Books:
    """Accounts, jobs, leases and (optionally) the ledger of a simulated market.

    ``grace`` is the transfer allowance added to every lease's slice for its deadline.
    """

    def __init__(self, grace: float, keep_history: bool = False) -> None:
        self.grace = grace
        self.balances: dict[int, int] = {}
        self.carries: dict[int, int] = {}  # job id -> what its slices owe below a cent (the jobs' ``carry``)
        self.reserved: dict[int, int] = {}
        self.jobs: dict[int, BookJob] = {}
        self.leases: dict[int, Lease] = {}  # open ones; closed ones too with keep_history
        self.ledger: list[Posting] | None = [] if keep_history else None
        self._client_owner: dict[int, int] = {}
        self._held: dict[int | None, set[int]] = {}  # owner -> its held jobs
        self._account_ids = itertools.count(1)
        self._lease_ids = itertools.count(1)
        self._keep = keep_history

    # -- accounts, clients, jobs ---------------------------------------------------------------

    def open_account(self, balance: int = 0) -> int:
        """A new account holding ``balance`` cents (its starting grant); returns its id."""
        account = next(self._account_ids)
        self.balances[account] = 0
        self.reserved[account] = 0
        if balance:
            self._credit(account, balance, 0.0)
        return account

    def grant(self, account: int, amount: int, now: float) -> None:
        """Credits arrive (an explicit grant); the account's held jobs go back to the ready list to
        be checked again (``rules.unheld``), as ``market.store.jobs.release_held`` does."""
        self._credit(account, amount, now)
        for job_id in self._held.pop(account, ()):
            job = self.jobs[job_id]
            job.status = rules.unheld(job.status)

    def _credit(self, account: int, amount: int, now: float) -> None:
        entry = ledger.grant(account, amount, "grant")
        ledger.apply(self.balances, entry)
        if self.ledger is not None:
            self.ledger.append((entry, None, now))

    def available(self, account: int) -> int:
        """An owner's money a window may count on: balance minus what open leases reserved."""
        return self.balances[account] - self.reserved[account]

    def add_client(self, client_id: int, owner: int) -> None:
        self._client_owner[client_id] = owner

    def client_owner(self, client_id: int) -> int:
        """The account a client's slices are paid to."""
        return self._client_owner[client_id]

    def add_job(
        self, job_id: int, owner: int | None, price: int, kind: str = JobKind.JOB, seconds: float | None = None
    ) -> BookJob:
        """A submitted job with its state #0: on the ready list (a test job is leased as it is)."""
        job = self.jobs[job_id] = BookJob(job_id, owner, price, kind, seconds)
        self.carries[job_id] = 0
        return job

    def set_cap(self, job_id: int, cap: int | None) -> None:
        """Set (or clear) a job's spending cap; a held job is checked again, as
        ``market.store.caps.set_job_cap`` does."""
        job = self.jobs[job_id]
        job.cap = cap
        job.window = job.window._replace(caps=() if cap is None else ((_JOB_CAP, job_id),))
        if job.status == _HELD:
            job.status = rules.unheld(job.status)
            self._held.get(job.owner, set()).discard(job_id)

    def forget_job(self, job_id: int) -> None:
        """Drop an ended job that has no lease out (to keep long runs small)."""
        job = self.jobs.get(job_id)
        if job is not None and rules.is_over(job.status) and not job.open:
            del self.jobs[job_id]
            self.carries.pop(job_id, None)

    # -- windows -------------------------------------------------------------------------------

    def plan_window(self, top: Iterable[rules.WindowJob], wanted: int, longest: float) -> rules.WindowPlan:
        """``rules.plan_window`` over the top of the ready list (``BookJob.window``, in ready-list
        order); the jobs it holds are held."""
        plan = rules.plan_window(top, _Available(self), wanted, longest, _Caps(self))
        for job_id in plan.held:
            job = self.jobs[job_id]
            if job.status == _READY:
                job.status = _HELD
                self._held.setdefault(job.owner, set()).add(job_id)
        return plan

    def checkout(self, job_id: int, client_id: int, granted: float, now: float) -> Lease | None:
        """Lease the job to a client for ``granted`` seconds (a task: its own time), reserving what the
        slice may cost; None if the job cannot be leased (``rules.can_lease``)."""
        job = self.jobs[job_id]
        if not rules.can_lease(job.status, job.kind):
            return None
        seconds = rules.lease_seconds(job.seconds, granted)
        reserved = rules.reservation(job.kind, job.price, seconds)
        lease = Lease(
            next(self._lease_ids),
            job_id,
            client_id,
            self._client_owner[client_id],
            now,
            seconds,
            rules.lease_deadline(now, seconds, self.grace),
            reserved,
            job.price,
        )
        self.leases[lease.id] = lease
        if reserved and job.owner is not None:
            self.reserved[job.owner] += reserved
        job.spent += reserved  # until the lease closes: then what it paid instead
        job.status = _RUNNING
        job.open += 1
        return lease

    # -- check-ins -----------------------------------------------------------------------------

    def lease(self, lease_id: int) -> Lease:
        lease = self.leases.get(lease_id)
        if lease is None:
            raise NotFound(f"no checked-out state {lease_id}")
        return lease

    def checkin(self, lease_id: int, at: float, slice_status: str = _OK) -> dict[str, Any]:
        """The ``state`` call: accepted and paid in time, rejected late (the job keeps its state)."""
        lease = self.lease(lease_id)
        job = self.jobs[lease.job_id]
        verdict = rules.judge_checkin(lease.status, lease.deadline, job.status, at)
        if verdict is _REPEAT:
            return rules.repeat_answer(lease.id, lease.status, lease.paid, lease.accepted_ms)
        if verdict is _REJECT:
            return self._reject(lease, job, at, slice_status)
        ms = rules.accepted_ms(lease.checked_out_at, lease.granted, at)
        paid = self._pay(lease, job, ms, at)
        self._close(lease, job, _ACCEPTED, at, slice_status, paid, ms)
        if job.status == _RUNNING:
            job.status = rules.after_accepted_slice(job.kind)
        return rules.answer(lease.id, _ACCEPTED, paid, ms)

    def finish(self, lease_id: int, at: float, outcome: str = Outcome.FINISHED) -> dict[str, Any]:
        """The ``result`` call: the job ended during this lease; its last slice is paid."""
        lease = self.lease(lease_id)
        job = self.jobs[lease.job_id]
        verdict = rules.judge_checkin(lease.status, lease.deadline, job.status, at)
        if verdict is _REPEAT:
            return rules.repeat_answer(lease.id, lease.status, lease.paid, lease.accepted_ms)
        if verdict is _REJECT:
            return self._reject(lease, job, at, outcome)
        ms = rules.accepted_ms(lease.checked_out_at, lease.granted, at)
        paid = self._pay(lease, job, ms, at)
        self._close(lease, job, LeaseStatus.FINISHED, at, outcome, paid, ms)
        self._change(job, rules.JobChange(JobStatus.FINISHED, str(outcome)), at)
        return rules.answer(lease.id, LeaseStatus.FINISHED, paid, ms)

    def fail(self, lease_id: int, at: float, slice_status: str) -> dict[str, Any]:
        """The ``fail`` call: the slice produced nothing; three strikes may end the job."""
        lease = self.lease(lease_id)
        job = self.jobs[lease.job_id]
        if lease.status != _OUT:
            return rules.repeat_answer(lease.id, lease.status, lease.paid, lease.accepted_ms)
        answer = self._reject(lease, job, at, slice_status)
        failures = job.statuses.get(slice_status, 0) if job.statuses else 0
        self._change(job, rules.after_failure(job.kind, slice_status, failures), at)
        return answer

    def expire(self, lease_id: int, now: float) -> bool:
        """The reaper expires this lease at ``now`` (the caller decides it is overdue); False if it
        was already closed."""
        lease = self.leases.get(lease_id)
        if lease is None or lease.status != _OUT:
            return False
        job = self.jobs[lease.job_id]
        self._close(lease, job, LeaseStatus.EXPIRED, None, None, 0, 0)
        self._change(job, rules.after_expiry(job.status, job.kind, job.open), now)
        return True

    def expire_leases(self, now: float) -> list[int]:
        """The reaper: expire every open lease past its deadline (``rules.overdue``)."""
        overdue = [
            lease.id for lease in self.leases.values() if lease.status == _OUT and rules.overdue(lease.deadline, now)
        ]
        for lease_id in overdue:
            self.expire(lease_id, now)
        return overdue

    # -- internals -----------------------------------------------------------------------------

    def _pay(self, lease: Lease, job: BookJob, ms: int, at: float) -> int:
        # rules.settle for one slice
        slice_ = rules.Slice(lease.id, job.id, job.kind, lease.price, job.owner, lease.payee, ms, lease.reserved)
        entry = rules.pay(slice_, self.balances, self.carries)
        if entry is None:
            return 0
        if self.ledger is not None:
            self.ledger.append((entry, lease.id, at))
        return entry.amount

    def _reject(self, lease: Lease, job: BookJob, at: float, slice_status: str) -> dict[str, Any]:
        self._close(lease, job, _REJECTED, at, slice_status, 0, 0)
        self._change(job, rules.released(job.status, job.kind, job.open), at)
        return rules.answer(lease.id, _REJECTED)

    def _close(
        self,
        lease: Lease,
        job: BookJob,
        status: str,
        at: float | None,
        slice_status: str | None,
        paid: int,
        ms: int,
    ) -> None:
        lease.status, lease.checked_in_at, lease.slice_status = status, at, slice_status
        lease.paid, lease.accepted_ms = paid, ms
        job.spent += paid - lease.reserved
        job.open -= 1
        if slice_status is not None:
            if job.statuses is None:
                job.statuses = {}
            job.statuses[slice_status] = job.statuses.get(slice_status, 0) + 1
        if lease.reserved and job.owner is not None:
            self.reserved[job.owner] -= lease.reserved
        if not self._keep:
            del self.leases[lease.id]

    @staticmethod
    def _change(job: BookJob, change: rules.JobChange | None, now: float) -> None:
        if change is None:
            return
        job.status = change.status
        if change.outcome is not None:
            job.outcome, job.finished_at = change.outcome, now

    def audit(self) -> dict[str, Any]:
        """Conservation: balances equal the ledger's grants (when kept), none is negative, and
        each owner's reservation is what its open leases reserved."""
        promised: dict[int, int] = dict.fromkeys(self.reserved, 0)
        for lease in self.leases.values():
            owner = self.jobs[lease.job_id].owner if lease.job_id in self.jobs else None
            if lease.status == _OUT and owner is not None:
                promised[owner] += lease.reserved
        out: dict[str, Any] = {
            "total": sum(self.balances.values()),
            "negative": sorted(a for a, b in self.balances.items() if b < 0),
            "reservations": promised == self.reserved,
        }
        if self.ledger is not None:
            out["granted"] = sum(e.amount for e, _, _ in self.ledger if e.kind == "grant")
        return out


_JOB_CAP = "job"


class _Caps(Mapping):
    """The jobs' spending caps (``core.caps.Cap``), keyed like ``WindowJob.caps``, computed when
    window planning asks for one."""

    __slots__ = ("_books",)

    def __init__(self, books: Books) -> None:
        self._books = books

    def __getitem__(self, key: Any) -> caps.Cap:
        job = self._books.jobs.get(key[1]) if key[0] == _JOB_CAP else None
        if job is None or job.cap is None:
            raise KeyError(key)
        return caps.Cap(caps.JOB, job.cap, job.spent)

    def __iter__(self) -> Iterator[Any]:
        return ((_JOB_CAP, j.id) for j in self._books.jobs.values() if j.cap is not None)

    def __len__(self) -> int:
        return sum(1 for j in self._books.jobs.values() if j.cap is not None)


class _Available(Mapping):
    """Each owner's available money, computed when window planning asks for it."""

    __slots__ = ("_books",)

    def __init__(self, books: Books) -> None:
        self._books = books

    def __getitem__(self, account: Any) -> int:
        books = self._books
        return books.balances[account] - books.reserved[account]  # Books.available

    def __iter__(self) -> Iterator[int]:
        return iter(self._books.balances)

    def __len__(self) -> int:
        return len(self._books.balances)
