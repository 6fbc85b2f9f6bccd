"""What a sandboxed run ended as, and the rules that decide it (pure, no I/O)."""

from __future__ import annotations

import json
import signal as _signal
from dataclasses import dataclass, field
from typing import TypedDict

from .limits import Limits

__all__ = ["Outcome", "STATUSES", "parse_status", "classify"]

STATUSES = ("ok", "timeout", "overflow", "memory", "crash", "refused", "abort")

# Messages a job prints when an allocation fails under RLIMIT_AS.
MEMORY_SIGNS = (
    b"MemoryError",
    b"Cannot allocate memory",
    b"out of memory",
    b"std::bad_alloc",
    b"memory exhausted",
    b"Out of memory",
)


@dataclass(frozen=True)
class Outcome:
    """The result of one sandboxed run.

    status       -- one of STATUSES
    exit_code    -- exit status of the (last) job step, None if it was killed
    signal       -- the signal that killed the (last) job step, if any
    stdout       -- at most ``Limits.output_bytes`` bytes
    stderr       -- at most the runner's stderr cap (64 KiB by default)
    wall_seconds -- elapsed time from spawn to end (or to abort)
    cpu_seconds  -- user+system time of all job processes (rusage of reaped children);
                    None when the sandbox was killed before it could report
    message      -- why, in plain words, for refused/crash/memory/timeout
    steps        -- per-step records from the in-sandbox runner
    """

    status: str
    exit_code: int | None = None
    signal: int | None = None
    stdout: bytes = b""
    stderr: bytes = b""
    wall_seconds: float = 0.0
    cpu_seconds: float | None = None
    message: str = ""
    steps: tuple[dict, ...] = field(default_factory=tuple)


class _Common(TypedDict):
    """What every Outcome of one run shares, whatever it ended as."""

    stdout: bytes
    stderr: bytes
    wall_seconds: float
    cpu_seconds: float | None
    steps: tuple[dict, ...]


def parse_status(data: bytes) -> list[dict]:
    """Decode the runner's JSON-lines status channel, ignoring a torn last line."""
    records = []
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def _signame(sig: int) -> str:
    try:
        return _signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def classify(
    *,
    killed: str | None,
    records: list[dict],
    stdout: bytes,
    stderr: bytes,
    limits: Limits,
    wall: float,
    exit_code: int | None,
    exit_signal: int | None,
    oom_killed: bool = False,
) -> Outcome:
    """Decide the outcome of a finished sandbox.

    killed      -- 'timeout', 'overflow', 'abort' or 'memory' (the total-memory watchdog)
                   when the worker killed the sandbox
    records     -- status records from inner.py
    exit_code / exit_signal -- how the outermost process (bwrap) ended

    oom_killed  -- the run's cgroup recorded an OOM kill (memory.events): 'memory'

    Memory heuristics when there is no cgroup to ask: a step that failed and whose
    stderr shows an allocation failure (Python's MemoryError, ENOMEM text, bad_alloc)
    or that died of SIGKILL we did not send while under its CPU limit (the kernel's
    OOM killer) is 'memory'. A step killed by SIGXCPU, or SIGKILL at its CPU limit,
    is 'timeout'.
    """
    steps = tuple(r for r in records if "step" in r)
    done = next((r for r in records if r.get("done")), None)
    cpu = done.get("cpu") if done else (sum(r.get("cpu", 0.0) for r in steps) or None)
    common: _Common = {"stdout": stdout, "stderr": stderr, "wall_seconds": wall, "cpu_seconds": cpu, "steps": steps}
    last = steps[-1] if steps else None
    code = last.get("exit") if last else None
    sig = last.get("signal") if last else None
    if killed == "abort":
        return Outcome("abort", code, sig, message="cancelled", **common)
    if killed == "overflow":
        return Outcome("overflow", code, sig, message=f"output exceeded {limits.output_bytes} bytes", **common)
    if killed == "timeout":
        return Outcome("timeout", code, sig, message=f"wall time limit of {limits.wall_seconds:g} s reached", **common)
    if killed == "memory":
        return Outcome(
            "memory",
            code,
            sig,
            message=f"out of memory: the processes together used more than the {limits.memory_mb} MB limit",
            **common,
        )
    if oom_killed:
        return Outcome(
            "memory",
            code,
            sig,
            message=f"the job's cgroup ran out of memory ({limits.memory_mb} MB + {limits.disk_mb} MB disk)",
            **common,
        )
    exec_errors = [r["exec_error"] for r in steps if "exec_error" in r]
    if exec_errors:
        return Outcome("crash", 127, None, message=exec_errors[-1], **common)
    if done is None or last is None:
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        why = lines[-1] if lines else (f"exit status {exit_code}" if exit_signal is None else _signame(exit_signal))
        return Outcome("crash", exit_code, exit_signal, message=f"sandbox failed: {why}", **common)
    step_cpu = last.get("cpu", 0.0)
    if sig == _signal.SIGXCPU or (sig == _signal.SIGKILL and step_cpu >= limits.cpu_seconds):
        return Outcome("timeout", code, sig, message=f"CPU time limit of {limits.cpu_seconds:g} s reached", **common)
    failed = sig is not None or code != 0
    if failed and any(sign in stderr[-4096:] for sign in MEMORY_SIGNS):
        return Outcome("memory", code, sig, message=f"memory limit of {limits.memory_mb} MB reached", **common)
    if sig == _signal.SIGKILL:
        return Outcome("memory", code, sig, message="killed by SIGKILL (likely out of memory)", **common)
    if sig is not None:
        return Outcome("crash", code, sig, message=f"killed by {_signame(sig)}", **common)
    return Outcome("ok", code, None, **common)
