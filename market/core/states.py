"""What a job's state means to its member: one model, in plain words, for the web, the CLI,
XML-RPC, the feed and the report.

The store keeps a job's ``status`` (:class:`market.core.rules.JobStatus`) and, once it ended, its
``outcome``; a job ended by a failure is stored ``finished`` with the failing outcome (``error``,
``memory``, ``refused``...). Shown raw that reads "finished (refused)", in green. Here it becomes
a :class:`JobState`: the status people read (``failed`` for such a job), a reason in plain words,
whether it failed, its error and the line of the member's module the error names, and the
verification flag of the trust rules (docs/trust.md). The stored statuses, and the report's XSD
status values, do not change: the words are computed from them, here, once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from market.core import money
from market.core.rules import JobKind, JobStatus, Outcome, SliceStatus

__all__ = [
    "JobState",
    "job_state",
    "state_of",
    "verification_of",
    "public",
    "held_reason",
    "error_line",
    "FAILED",
    "SUCCESSFUL",
]

#: the status word of a job that ended without its result (never stored: shown)
FAILED = "failed"
#: outcomes of a job that ended with its result
SUCCESSFUL = frozenset({Outcome.FINISHED, Outcome.SUCCESS})

# why a job ended without its result, by its outcome
_FAILURES = {
    Outcome.ERROR: "the job raised an error",
    Outcome.TIMEOUT: "the task ran out of its time limit",
    Outcome.OVERFLOW: "the job's state grew over the size limit",
    Outcome.ABORT: "the job was aborted",
    Outcome.CRASH: "the job crashed the sandbox three times",
    Outcome.MEMORY: "the job ran out of memory three times",
    SliceStatus.REFUSED: "the sandbox refused the job three times",
    Outcome.NOFREEZE: "the job reached no freeze point within its slices (a long built-in call)",
    Outcome.UNFINISHED: "the test job did not finish in its one lease",
    Outcome.EXPIRED: "the test job's lease expired",
}
_WAITING = {
    JobStatus.NEW: "submitted; its initial state has not arrived yet",
    JobStatus.READY: "waiting for a worker",
    JobStatus.RUNNING: "running on a worker",
}
# the line of the member's module an error names: the runtime's '<job>' frames, or 'line N:'
_LINE = re.compile(r'File "<job>", line (\d+)|\bline (\d+)\b')


class JobState(NamedTuple):
    """A job's state as members read it."""

    status: str  # new | ready | running | held | finished | failed | cancelled
    reason: str  # why, in plain words
    failed: bool  # ended without its result
    error: str | None  # the error, when it failed with one
    error_line: int | None  # the module's line the error names (its last such line)
    verification: str | None  # verified | unverified, for a finished job's result


def error_line(error: str | None) -> int | None:
    """The line of the member's module ``error`` names last (the innermost frame), or None."""
    if not error:
        return None
    lines = [int(a or b) for a, b in _LINE.findall(error)]
    return lines[-1] if lines else None


def held_reason(available: int | None = None, price: int | None = None, slice_seconds: float | None = None) -> str:
    """Why a job is held: its owner's money (``available``: the balance less what open leases
    reserved, in cents) is below one slice at its price (cents per second). Without the figures,
    the rule alone."""
    if available is None or price is None:
        return "the account's balance is below the cost of one slice at this price; it runs again when funds arrive"
    words = (
        f"the account has {money.format_cents(max(available, 0))} credits available,"
        f" below the cost of one slice at {money.format_cents(price)} per second"
    )
    if slice_seconds:
        cost = money.payment(price, int(slice_seconds * 1000))
        words += f" ({money.format_cents(cost)} credits for a {slice_seconds:g} s slice)"
    return words + "; it runs again when funds arrive"


def job_state(
    status: str,
    outcome: str | None = None,
    error: str | None = None,
    verification: str | None = None,
    held: str | None = None,
) -> JobState:
    """The member's view of a job stored with ``status`` and ``outcome``; ``held`` is the reason to
    give a held job (:func:`held_reason`), its generic form when None."""
    if status == JobStatus.CANCELLED:
        return JobState(JobStatus.CANCELLED.value, "cancelled by its owner", False, None, None, None)
    if status == JobStatus.HELD:
        return JobState(JobStatus.HELD.value, held or held_reason(), False, None, None, None)
    if status == JobStatus.FINISHED:
        if outcome is None or outcome in SUCCESSFUL:
            reason = "finished with its result"
            if verification == "unverified":
                reason += " (unverified: not yet replayed by another member's worker)"
            return JobState(JobStatus.FINISHED.value, reason, False, None, None, verification)
        reason = _FAILURES.get(outcome, f"the job ended: {outcome}")  # type: ignore[call-overload]
        return JobState(FAILED, reason, True, error, error_line(error), None)
    return JobState(str(status), _WAITING.get(status, str(status)), False, None, None, None)  # type: ignore[call-overload]


def verification_of(row: Mapping[str, Any]) -> str | None:
    """A job row's verification flag: as stored, else ``unverified`` for a plain job that
    finished with its result (a result is final only once verified by replay), else None."""
    if row.get("verification"):
        return str(row["verification"])
    if row.get("outcome") == Outcome.FINISHED and row.get("kind", JobKind.JOB) == JobKind.JOB:
        return "unverified"
    return None


def state_of(row: Mapping[str, Any]) -> JobState:
    """:func:`job_state` of a job row (``status``, ``outcome``, ``error``, ``verification``,
    ``kind``; ``price`` and ``available`` — its owner's balance less reservations — give a held
    job its figures; ``hold_reason``, when set, is why a spending cap holds it)."""
    held = None
    if row.get("status") == JobStatus.HELD and row.get("hold_reason"):
        held = str(row["hold_reason"])  # held by a spending cap (``core.caps.reason``)
    elif row.get("status") == JobStatus.HELD and row.get("available") is not None and row.get("price") is not None:
        held = held_reason(int(row["available"]), int(row["price"]))
    return job_state(row["status"], row.get("outcome"), row.get("error"), verification_of(row), held)


def public(state: JobState) -> dict[str, Any]:
    """The new keys of XML-RPC's job structs (``status`` keeps the stored value): ``state`` the
    status word members read, ``reason``, ``failed``, ``error_line`` (None when the error names
    no line of the module)."""
    return {
        "state": state.status,
        "reason": state.reason,
        "failed": state.failed,
        "error_line": state.error_line,
    }
