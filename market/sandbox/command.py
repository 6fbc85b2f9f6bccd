"""Build the exec-in-place chain: setpriv → prlimit → bwrap → python3 inner.py → job.

Twisted's spawnProcess has no preexec_fn, so each layer is a program that sets one
thing up and execs the next. Pure function of its inputs: easy to print and test.
"""

from __future__ import annotations

import marshal
import math
import os
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass, field

from .limits import Limits
from .users import JobUser

__all__ = ["Layers", "BindError", "build_command", "SANDBOX_PYTHON", "STATUS_FD", "JOB_ENV"]

SANDBOX_PYTHON = "/usr/bin/python3"  # Debian's; readable by any user, unlike pyenv under /root
INNER_PATH = "/.sandbox/inner.py"
FILTER_PATH = "/.sandbox/filter.bpf"
NOFORK_FILTER_PATH = "/.sandbox/nofork.bpf"
STATUS_FD = 3
WORK_DIR = "/work"
# The runner itself (python3 + ctypes + json) needs ~20 MB of address space; it lives
# under the outer RLIMIT_AS, and lowers RLIMIT_AS to the job's limit for each step.
RUNNER_AS_HEADROOM = 64 * 1024 * 1024
JOB_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORK_DIR,
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
}
RESERVED = ("/", "/usr", "/proc", "/dev", "/.sandbox", "/lib", "/lib64", "/work")
# Everything in the sandbox runs at this niceness (the runner sets it; a job cannot lower it
# again): the volunteer's own work comes first, and so do the worker's threads — above all the
# memory watchdog, which must see a tree of processes allocating on every core in time to stop it.
JOB_NICE = 10


class BindError(ValueError):
    """A requested bind would overlay part of the sandbox's own layout."""


@dataclass(frozen=True)
class Layers:
    """Which optional layers to apply inside the sandbox."""

    landlock: bool = False
    seccomp_filter: str | None = None  # host path of the BPF blob
    # host path of the blob each step loads on top before exec: no fork, no new process (a
    # market job is one process, so RLIMIT_AS is its whole memory); None lets steps fork (tasks)
    nofork_filter: str | None = None
    # Jobs may use the host's /usr. False hides it with Landlock (the runner, already
    # started from it, no longer needs it), e.g. for the busybox environment.
    job_usr: bool = True
    extra_env: dict[str, str] = field(default_factory=dict)


def check_binds(binds: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Validate (host_path, sandbox_path) pairs; return them normalised."""
    checked = []
    for host, inside in binds:
        if not os.path.isabs(host) or not posixpath.isabs(inside):
            raise BindError(f"bind paths must be absolute, got {host!r} -> {inside!r}")
        inside = posixpath.normpath(inside)
        if any(inside == r or (r != "/" and inside.startswith(r + "/")) for r in RESERVED):
            raise BindError(f"cannot bind onto {inside!r}: it belongs to the sandbox layout")
        if not os.path.exists(host):
            raise BindError(f"bind source {host!r} does not exist")
        checked.append((os.path.abspath(host), inside))
    return checked


def build_command(
    steps: Sequence[Sequence[str]],
    *,
    limits: Limits,
    user: JobUser,
    binds: Sequence[tuple[str, str]],
    inner_path: str,
    layers: Layers = Layers(),
    stop_on_failure: bool = True,
    status_fd: int | None = STATUS_FD,
) -> list[str]:
    """The argv that runs ``steps`` one after another in one sandbox.

    The runner reports on fd ``status_fd`` (None: no reports); the caller must give the
    child a writable pipe there.
    """
    binds = check_binds(binds)
    argv: list[str] = []
    if user.switch:
        # No ambient groups (root's supplementary groups would follow otherwise).
        argv += ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--no-new-privs", "--"]
    cpu = max(1, math.ceil(limits.cpu_seconds))
    argv += [
        "prlimit",
        f"--cpu={cpu}:{cpu + 1}",
        f"--as={limits.memory_bytes + RUNNER_AS_HEADROOM}",
        f"--fsize={limits.disk_bytes}",
        f"--nofile={int(limits.files)}",
        f"--nproc={int(limits.processes)}",
        "--core=0",
        "--",
    ]
    argv += [
        "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--as-pid-1",
        "--new-session",
        "--clearenv",
        "--hostname",
        "sandbox",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
    ]
    if not any(inside == "/bin" for _, inside in binds):
        argv += ["--symlink", "usr/bin", "/bin"]
    argv += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        # One tmpfs for /tmp and the work dir: the disk limit is one budget.
        "--size",
        str(limits.disk_bytes),
        "--perms",
        "1777",
        "--tmpfs",
        "/tmp",
        "--dir",
        "/tmp/work",
        "--symlink",
        "/tmp/work",
        WORK_DIR,
        "--ro-bind",
        inner_path,
        INNER_PATH,
    ]
    if layers.seccomp_filter:
        argv += ["--ro-bind", layers.seccomp_filter, FILTER_PATH]
        if layers.nofork_filter:
            argv += ["--ro-bind", layers.nofork_filter, NOFORK_FILTER_PATH]
    for host, inside in binds:
        argv += ["--ro-bind", host, inside]
    argv += ["--remount-ro", "/", "--chdir", "/tmp/work"]
    landlock = None
    if layers.landlock:
        landlock = {"/proc": "ro", "/dev": "dev", "/tmp": "rw"}
        if layers.job_usr:
            landlock["/usr"] = "rx"
        for _, inside in binds:
            landlock[inside] = "rx"
    config = {
        "steps": [list(step) for step in steps],
        "env": {**JOB_ENV, **layers.extra_env},
        "cwd": WORK_DIR,
        "memory_bytes": limits.memory_bytes,
        "status_fd": status_fd,
        "landlock": landlock,
        "landlock_required": bool(layers.landlock),
        "seccomp": FILTER_PATH if layers.seccomp_filter else None,
        "seccomp_step": NOFORK_FILTER_PATH if layers.seccomp_filter and layers.nofork_filter else None,
        "stop_on_failure": stop_on_failure,
        "nice": JOB_NICE,
    }
    # marshal (version 4, plain data only) is stable across Python 3.4+ and needs no
    # import in the sandbox; hex keeps argv free of NUL bytes.
    argv += ["--", SANDBOX_PYTHON, "-I", "-S", INNER_PATH, marshal.dumps(config, 4).hex()]
    return argv
