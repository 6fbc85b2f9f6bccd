"""Resource limits for one sandboxed run: one value object, validated once."""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["Limits", "LimitsError"]


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
