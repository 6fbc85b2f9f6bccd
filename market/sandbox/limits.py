"""Resource limits for one sandboxed run: one value object, validated once."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["Limits", "LimitsError", "Caps", "clamp"]


class LimitsError(ValueError):
    """A limit has a value the sandbox cannot honour."""


@dataclass(frozen=True)
class Limits:
    """Hard limits for one run in the sandbox.

    wall_seconds  -- elapsed time before the whole sandbox is killed (``timeout``)
    cpu_seconds   -- RLIMIT_CPU of each process (SIGXCPU, then SIGKILL one second later)
    memory_mb     -- RLIMIT_AS of each job process (address space, not resident memory)
    output_bytes  -- stdout bytes kept; one more byte kills the sandbox (``overflow``)
    disk_mb       -- size of the tmpfs holding /tmp and /work, and RLIMIT_FSIZE
    processes     -- RLIMIT_NPROC (counted per user namespace, so per sandbox)
    files         -- RLIMIT_NOFILE (open descriptors per process)
    """

    wall_seconds: float = 10.0
    cpu_seconds: float = 10.0
    memory_mb: int = 256
    output_bytes: int = 1 << 20
    disk_mb: int = 64
    processes: int = 64
    files: int = 64

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # bool is an int subclass; True as a limit is always a caller bug.
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise LimitsError(f"{f.name} must be a number, got {value!r}")
            if f.type in ("int",) and not float(value).is_integer():
                raise LimitsError(f"{f.name} must be a whole number, got {value!r}")
            if value != value or value in (float("inf"), float("-inf")):
                raise LimitsError(f"{f.name} must be finite, got {value!r}")
        if self.wall_seconds <= 0:
            raise LimitsError(f"wall_seconds must be positive, got {self.wall_seconds!r}")
        if self.cpu_seconds <= 0:
            raise LimitsError(f"cpu_seconds must be positive, got {self.cpu_seconds!r}")
        if self.memory_mb < 4:
            raise LimitsError(f"memory_mb must be at least 4, got {self.memory_mb!r}")
        if self.output_bytes < 0:
            raise LimitsError(f"output_bytes must be >= 0, got {self.output_bytes!r}")
        if self.disk_mb < 1:
            raise LimitsError(f"disk_mb must be at least 1, got {self.disk_mb!r}")
        # The in-sandbox runner is one process and a job needs at least one more.
        if self.processes < 2:
            raise LimitsError(f"processes must be at least 2, got {self.processes!r}")
        # stdin/stdout/stderr plus the interpreter's own few descriptors.
        if self.files < 8:
            raise LimitsError(f"files must be at least 8, got {self.files!r}")

    @property
    def memory_bytes(self) -> int:
        return int(self.memory_mb) * 1024 * 1024

    @property
    def disk_bytes(self) -> int:
        return int(self.disk_mb) * 1024 * 1024


@dataclass(frozen=True)
class Caps:
    """The most this worker gives any one job or task: the volunteer's own limits
    (``twistd worker --memory --slice --disk --output``). What a stranger asks for is
    lowered to these by :func:`clamp`, never raised."""

    memory_mb: int = 512
    seconds: float = 60.0
    disk_mb: int = 256
    output_bytes: int = 48 << 20  # the market accepts 64 MiB of XML-RPC: 48 MiB of base64 data

    def __post_init__(self) -> None:
        # the same rules as Limits: a cap the sandbox could not honour is refused at start
        Limits(
            wall_seconds=self.seconds,
            cpu_seconds=self.seconds,
            memory_mb=self.memory_mb,
            output_bytes=self.output_bytes,
            disk_mb=self.disk_mb,
        )


def clamp(limits: Limits, caps: Caps) -> tuple[Limits, tuple[str, ...]]:
    """``limits`` with every value lowered to at most ``caps``, and one note in plain words for
    each value that was lowered (``"memory 4096 MB -> 512 MB"``), for the log and the outcome."""
    notes = []
    values: dict[str, Any] = {}
    for name, cap, unit, label in (
        ("memory_mb", caps.memory_mb, "MB", "memory"),
        ("wall_seconds", caps.seconds, "s", "time"),
        ("disk_mb", caps.disk_mb, "MB", "disk"),
        ("output_bytes", caps.output_bytes, "bytes", "output"),
    ):
        asked = getattr(limits, name)
        if asked > cap:
            values[name] = cap
            notes.append(f"{label} {_show(asked)} {unit} -> {_show(cap)} {unit}")
    if limits.cpu_seconds > caps.seconds:
        values["cpu_seconds"] = caps.seconds
    if not values:
        return limits, ()
    from dataclasses import replace

    return replace(limits, **values), tuple(notes)


def _show(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) and not value.is_integer() else str(int(value))
