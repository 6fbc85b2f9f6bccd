"""Per-run cgroup v2 limits (memory.max, pids.max), used only where they really work.

rlimits cap each process; a cgroup caps the whole job. The operator provides a delegated,
empty cgroup v2 directory with the memory and pids controllers (for example a systemd
unit with ``Delegate=yes``, or ``mkdir /sys/fs/cgroup/market-jobs`` on a pure v2 host
with ``+memory +pids`` in the parent's ``cgroup.subtree_control``) and names it in
``$MARKET_SANDBOX_CGROUP``. Each run gets a child ``run-<id>`` there. The probe tries the
whole cycle once; on failure (such as this project's v1/v2 hybrid VMs) jobs fall back to
rlimits alone.
"""

from __future__ import annotations

import os
import time
import uuid

__all__ = ["CgroupError", "JobCgroups", "from_environment", "ENV_VAR", "enter_command"]

ENV_VAR = "MARKET_SANDBOX_CGROUP"
NEEDED = ("memory", "pids")


class CgroupError(RuntimeError):
    """The cgroup directory cannot hold per-run limits."""


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def _write(path: str, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


class JobCgroups:
    """A delegated cgroup v2 directory under which each run gets its own child."""

    def __init__(self, base: str) -> None:
        self.base = os.path.abspath(base)

    def check(self) -> None:
        """Make sure children can get memory and pids limits (raises CgroupError)."""
        try:
            have = _read(os.path.join(self.base, "cgroup.controllers")).split()
        except OSError as exc:
            raise CgroupError(f"{self.base} is not a cgroup v2 directory: {exc.strerror}") from None
        missing = [c for c in NEEDED if c not in have]
        if missing:
            raise CgroupError(f"{self.base} offers [{' '.join(have)}], missing {', '.join(missing)}")
        enabled = _read(os.path.join(self.base, "cgroup.subtree_control")).split()
        if any(c not in enabled for c in NEEDED):
            try:
                _write(os.path.join(self.base, "cgroup.subtree_control"), "+memory +pids")
            except OSError as exc:
                raise CgroupError(
                    f"cannot enable memory and pids for children of {self.base}"
                    f" ({exc.strerror}); it must be delegated and hold no "
                    "processes itself"
                ) from None

    def create(self, memory_bytes: int, pids: int) -> str:
        """A new child cgroup with the limits set; returns its path."""
        path = os.path.join(self.base, f"run-{uuid.uuid4().hex[:12]}")
        try:
            os.mkdir(path)
            _write(os.path.join(path, "memory.max"), str(memory_bytes))
            _write(os.path.join(path, "pids.max"), str(pids))
            if os.path.exists(os.path.join(path, "memory.swap.max")):
                _write(os.path.join(path, "memory.swap.max"), "0")
            # One OOM kill takes the whole job, not a random process of it.
            if os.path.exists(os.path.join(path, "memory.oom.group")):
                _write(os.path.join(path, "memory.oom.group"), "1")
        except OSError as exc:
            self.remove(path)
            raise CgroupError(f"cannot set up {path}: {exc.strerror}") from None
        return path

    @staticmethod
    def oom_killed(path: str) -> bool:
        """Whether the kernel killed something in ``path`` for hitting memory.max."""
        try:
            for line in _read(os.path.join(path, "memory.events")).splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill" and int(value) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    @staticmethod
    def remove(path: str, timeout: float = 2.0) -> None:
        """Kill whatever is left in ``path`` and remove it (best effort)."""
        kill = os.path.join(path, "cgroup.kill")
        if os.path.exists(kill):
            try:
                _write(kill, "1")
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        while True:
            try:
                os.rmdir(path)
                return
            except FileNotFoundError:
                return
            except OSError:
                # Busy until the killed processes are gone; a fake tree is a plain dir.
                if not os.path.exists(os.path.join(path, "cgroup.procs")):
                    for entry in os.listdir(path):
                        os.unlink(os.path.join(path, entry))
                    continue
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)


def enter_command(path: str) -> list:
    """An exec-in-place prefix that moves itself into cgroup ``path``, then execs the rest."""
    return ["/bin/sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', path]


def from_environment() -> tuple[JobCgroups | None, str]:
    """The operator's cgroup, checked, or None with the reason it cannot be used."""
    base = os.environ.get(ENV_VAR)
    if not base:
        return None, (f"no delegated cgroup v2 directory configured (set {ENV_VAR}); using rlimits only")
    cgroups = JobCgroups(base)
    try:
        cgroups.check()
        trial = cgroups.create(64 << 20, 8)
        cgroups.remove(trial)
    except CgroupError as exc:
        return None, f"{exc}; using rlimits only"
    return cgroups, ""
