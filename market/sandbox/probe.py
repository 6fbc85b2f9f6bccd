"""Find out, once, which sandbox layers work on this machine for a given job user."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import threading
from dataclasses import dataclass, field

from .users import JobUser, UserError, job_user_for

__all__ = ["SandboxLevel", "Probe", "probe", "clear_probe_cache"]

LAYERS = ("rlimits", "setpriv", "bwrap", "userns", "landlock", "seccomp", "cgroup")


class SandboxLevel:
    """'full': bwrap + Landlock + seccomp + rlimits. 'degraded': bwrap and rlimits but
    Landlock or seccomp missing. 'none': no usable bwrap or prlimit, jobs are refused."""

    FULL = "full"
    DEGRADED = "degraded"
    NONE = "none"


@dataclass(frozen=True)
class Probe:
    """Result of probing: the level, the layers present, and why the others are missing."""

    level: str
    present: tuple[str, ...]
    missing: dict[str, str] = field(default_factory=dict)
    landlock_abi: int = 0
    user: JobUser | None = None
    cgroup_base: str = ""  # the operator's delegated cgroup v2 directory, when usable

    def has(self, layer: str) -> bool:
        return layer in self.present

    def describe(self) -> str:
        """One line per layer, for logs and the CLI."""
        lines = [f"sandbox level: {self.level}"]
        for name in LAYERS:
            if name in self.present:
                extra = f" (ABI {self.landlock_abi})" if name == "landlock" else ""
                lines.append(f"  {name}: yes{extra}")
            elif name in self.missing:
                lines.append(f"  {name}: no — {self.missing[name]}")
        return "\n".join(lines)


_cache: dict[str | None, Probe] = {}
_lock = threading.Lock()


def clear_probe_cache() -> None:
    """Forget cached probes (tests, or after the operator installed something)."""
    with _lock:
        _cache.clear()


def probe(user: str | None = None) -> Probe:
    """Probe every layer for jobs run as ``user`` (see users.job_user_for). Cached.

    Costs one trial sandbox launch (~40 ms) the first time for each user.
    """
    with _lock:
        if user not in _cache:
            _cache[user] = _probe(user)
        return _cache[user]


def _probe(user_name: str | None) -> Probe:
    present = []
    missing: dict[str, str] = {}
    try:
        user: JobUser | None = job_user_for(user_name)
    except UserError as exc:
        user = None
        missing["setpriv"] = str(exc)

    if shutil.which("prlimit"):
        present.append("rlimits")
    else:
        missing["rlimits"] = "prlimit not found (Debian package util-linux)"
    if user is not None and user.switch:
        if shutil.which("setpriv"):
            present.append("setpriv")
        else:
            missing["setpriv"] = "setpriv not found (Debian package util-linux); needed as root"

    userns = _max_user_namespaces()
    if userns is None or userns > 0:
        present.append("userns")
    else:
        missing["userns"] = "user.max_user_namespaces is 0"

    if not shutil.which("bwrap"):
        missing["bwrap"] = "bwrap not found (Debian package bubblewrap)"
    elif user is None:
        missing["bwrap"] = "no usable job user"
    elif "rlimits" in present and (not user.switch or "setpriv" in present):
        ok, why = _trial(user)
        if ok:
            present.append("bwrap")
        else:
            missing["bwrap"] = why
    else:
        missing["bwrap"] = "not tried: prlimit/setpriv missing"

    abi = _landlock_abi()
    if abi >= 1:
        present.append("landlock")
        if abi < 4:
            missing["landlock-net"] = f"Landlock ABI {abi} < 4 cannot block TCP (seccomp does)"
    else:
        missing["landlock"] = "kernel has no Landlock (needs 5.13+ with lsm=landlock)"

    try:
        from .staging import default_staging

        default_staging().filter_path()
        if _kernel_seccomp():
            present.append("seccomp")
        else:
            missing["seccomp"] = "kernel lacks seccomp filter mode"
    except Exception as exc:  # any failure here only means: no seccomp layer
        missing["seccomp"] = str(exc)

    from .cgroup import from_environment

    cgroups, cgroup_why = from_environment()
    if cgroups is not None:
        present.append("cgroup")
    else:
        host = _cgroup_v2_problem()
        missing["cgroup"] = f"{host}; {cgroup_why}" if host else cgroup_why

    if "bwrap" not in present or "rlimits" not in present:
        level = SandboxLevel.NONE
    elif "landlock" in present and "seccomp" in present:
        level = SandboxLevel.FULL
    else:
        level = SandboxLevel.DEGRADED
    return Probe(level, tuple(present), missing, abi, user, cgroups.base if cgroups is not None else "")


def _max_user_namespaces() -> int | None:
    try:
        with open("/proc/sys/user/max_user_namespaces") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def _trial(user: JobUser) -> tuple[bool, str]:
    """Launch the real chain once with a trivial job; bwrap fails here if userns is off."""
    from .command import SANDBOX_PYTHON, build_command
    from .limits import Limits
    from .staging import default_staging

    if not os.access(SANDBOX_PYTHON, os.X_OK):
        return False, f"{SANDBOX_PYTHON} missing (Debian package python3)"
    try:
        argv = build_command(
            [[SANDBOX_PYTHON, "-S", "-c", "print('ok')"]],
            limits=Limits(),
            user=user,
            binds=[],
            inner_path=default_staging().inner_path(),
            status_fd=None,
        )
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"trial launch failed: {exc}"
    if proc.returncode == 0 and proc.stdout == b"ok\n":
        return True, ""
    err = proc.stderr.decode(errors="replace").strip().splitlines()
    return False, f"trial launch as {user.name} exited {proc.returncode}: " + (err[-1] if err else "no message")


def _landlock_abi() -> int:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), 1)))
    except (OSError, AttributeError):
        return 0


def _kernel_seccomp() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


def _cgroup_v2_problem(root: str = "/sys/fs/cgroup") -> str | None:
    """What the host's cgroup v2 lacks for per-job limits (None: nothing obvious)."""
    candidates = [root, os.path.join(root, "unified")]
    for base in candidates:
        controllers = os.path.join(base, "cgroup.controllers")
        if not os.path.exists(controllers):
            continue
        with open(controllers) as f:
            have = f.read().split()
        need = [c for c in ("memory", "pids") if c not in have]
        if need:
            return (
                f"cgroup v2 at {base} offers only [{' '.join(have) or 'nothing'}]; "
                f"missing {', '.join(need)} (hybrid v1/v2 host)"
            )
        if not os.access(os.path.join(base, "cgroup.subtree_control"), os.W_OK):
            return f"cgroup v2 at {base} is not delegated to uid {os.geteuid()}"
        return None
    return "no cgroup v2 hierarchy mounted"
