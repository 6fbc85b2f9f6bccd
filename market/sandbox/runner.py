"""Run a job in the sandbox under Twisted (``run``) or synchronously (``run_sync``)."""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Sequence
from typing import Any

from twisted.internet import defer, error, protocol

from .cgroup import CgroupError, JobCgroups, enter_command
from .command import STATUS_FD, BindError, Layers, build_command
from .limits import Limits
from .outcome import Outcome, classify, parse_status
from .probe import Probe, SandboxLevel, probe
from .staging import Staging, StagingError, default_staging
from .users import UserError, job_user_for
from .watchdog import MemoryWatchdog

__all__ = ["run", "run_sync", "start", "Execution", "STDERR_BYTES"]

STDERR_BYTES = 64 * 1024
CGROUP_RUNNER_BYTES = 32 * 1024 * 1024
STATUS_BYTES = 64 * 1024  # the runner writes a few hundred bytes per step
WRAPPER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
_RANK = {SandboxLevel.NONE: 0, SandboxLevel.DEGRADED: 1, SandboxLevel.FULL: 2}

Level = Probe | str | None


class _Refused(Exception):
    pass


def prepare(
    steps: Sequence[Sequence[str]],
    *,
    limits: Limits,
    binds: Sequence[tuple[str, str]],
    user: str | None,
    level: Level,
    staging: Staging | None,
    status_fd: int | None,
    stop_on_failure: bool = True,
    job_usr: bool = True,
    extra_env: dict | None = None,
    single_process: bool = False,
) -> tuple[list[str], str | None]:
    """The full argv for ``steps`` and the run's cgroup (None without the cgroup layer),
    or raise _Refused with the reason in plain words.

    ``level``: a Probe to use as is, or the minimum acceptable level ('full',
    'degraded'); None accepts anything but 'none'. The caller must pass the cgroup
    to :func:`finish_cgroup` once the sandbox has ended. ``single_process``: each step
    loads the no-fork seccomp filter (with the seccomp layer), so it stays one process.
    """
    if not steps or any(not step for step in steps):
        raise _Refused("nothing to run: every step needs a program")
    try:
        job_user = job_user_for(user)
        found = level if isinstance(level, Probe) else probe(user)
        wanted = level if isinstance(level, str) else SandboxLevel.DEGRADED
        if wanted not in _RANK:
            raise _Refused(f"unknown sandbox level {wanted!r}: use 'full' or 'degraded'")
        if _RANK[found.level] < max(1, _RANK[wanted]):
            reasons = "; ".join(f"{k}: {v}" for k, v in found.missing.items())
            raise _Refused(f"sandbox level is {found.level!r}, need {wanted!r} ({reasons})")
        staging = staging or default_staging()
        seccomp = found.has("seccomp")
        layers = Layers(
            landlock=found.has("landlock"),
            seccomp_filter=staging.filter_path() if seccomp else None,
            nofork_filter=staging.nofork_filter_path() if seccomp and single_process else None,
            job_usr=job_usr,
            extra_env=dict(extra_env or {}),
        )
        argv = build_command(
            steps,
            limits=limits,
            user=job_user,
            binds=binds,
            inner_path=staging.inner_path(),
            layers=layers,
            stop_on_failure=stop_on_failure,
            status_fd=status_fd,
        )
        if not found.has("cgroup"):
            return argv, None
        # The whole job: its memory, its tmpfs pages (charged to it too) and the runner.
        path = JobCgroups(found.cgroup_base).create(
            limits.memory_bytes + limits.disk_bytes + CGROUP_RUNNER_BYTES, int(limits.processes) + 2
        )  # + bwrap's monitor and the runner
        return enter_command(path) + argv, path
    except (UserError, BindError, StagingError, CgroupError) as exc:
        raise _Refused(str(exc)) from None


def finish_cgroup(path: str | None) -> bool:
    """Remove a run's cgroup (killing leftovers); True if the kernel OOM-killed in it."""
    if path is None:
        return False
    oom = JobCgroups.oom_killed(path)
    JobCgroups.remove(path)
    return oom


class _Capped:
    """A byte buffer that keeps at most ``cap`` bytes and says when more arrived.

    ``keep_tail``: keep the first half of the cap and the LAST half of what arrived (a
    program's last words, e.g. a traceback after a flood of prints), rather than the first."""

    def __init__(self, cap: int, keep_tail: bool = False) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.overflowed = False
        self.tail_cap = cap - cap // 2 if keep_tail else 0
        self.tail = b""

    def add(self, data: bytes) -> bool:
        """Keep what fits; return True once more than ``cap`` bytes have arrived."""
        head_cap = self.cap - self.tail_cap
        room = head_cap - self.size
        if len(data) > room:
            self.overflowed = True
            if self.tail_cap:
                self.tail = (self.tail + data[max(room, 0) :])[-self.tail_cap :]
            data = data[: max(room, 0)]
        if data:
            self.parts.append(data)
            self.size += len(data)
        return self.overflowed

    def value(self) -> bytes:
        if self.tail:
            return b"".join(self.parts) + b"\n[...]\n" + self.tail
        return b"".join(self.parts)


class _SandboxProtocol(protocol.ProcessProtocol):
    def __init__(self, execution: Execution) -> None:
        self.execution = execution

    def connectionMade(self) -> None:
        self.execution._connected(self.transport)

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.execution._data(fd, data)

    def processEnded(self, reason: Any) -> None:
        self.execution._ended(reason.value)


class Execution:
    """One running sandbox. ``result`` fires with the Outcome; ``ended`` fires once the
    sandbox process has been reaped (after an abort, ``result`` fires first).

    Without a cgroup, a :class:`MemoryWatchdog` samples the sandbox's process tree and kills
    it ('memory') once its processes together hold more than ``limits.memory_mb``;
    ``memory_peak_kb`` is the most it saw (0 with a cgroup, which the kernel enforces)."""

    def __init__(self, reactor: Any, limits: Limits, stderr_bytes: int = STDERR_BYTES) -> None:
        self.reactor = reactor
        self.limits = limits
        self.result: defer.Deferred = defer.Deferred(lambda _: self.abort())
        self.ended: defer.Deferred = defer.Deferred()
        self._stdout = _Capped(int(limits.output_bytes))
        # the end of stderr is where a dying program says why: keep the first and last halves
        self._stderr = _Capped(stderr_bytes, keep_tail=True)
        self._status = _Capped(STATUS_BYTES)
        self._killed: str | None = None
        self._transport: Any = None
        self._timer: Any = None
        self._started = reactor.seconds()
        self.cgroup: str | None = None
        self.watchdog: MemoryWatchdog | None = None
        self._over_memory = False  # set from the watchdog's thread before it kills

    @property
    def memory_peak_kb(self) -> int:
        return self.watchdog.peak_kb if self.watchdog is not None else 0

    def watch_memory(self, pid: int) -> None:
        """Start the total-memory watchdog on the tree below ``pid`` (the bwrap process)."""
        self.watchdog = MemoryWatchdog(pid, self.limits.memory_bytes // 1024, self._memory_exceeded).start()

    def _memory_exceeded(self, kb: int) -> None:
        # In the watchdog's thread: kill now (the reactor may be busy); the pid cannot have been
        # reused, because it is our child and only the reactor reaps it after ``_ended``.
        self._over_memory = True
        pid = self._transport.pid if self._transport is not None else None
        if pid:
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        self.reactor.callFromThread(self._kill, "memory")

    def abort(self) -> None:
        """Kill the sandbox now; ``result`` fires at once with status 'abort'."""
        if self.result.called:
            return
        self._kill("abort")
        self._finish(
            classify(
                killed="abort",
                records=parse_status(self._status.value()),
                stdout=self._stdout.value(),
                stderr=self._stderr.value(),
                limits=self.limits,
                wall=self._elapsed(),
                exit_code=None,
                exit_signal=None,
            )
        )

    def _elapsed(self) -> float:
        return round(self.reactor.seconds() - self._started, 6)

    def _connected(self, transport: Any) -> None:
        self._transport = transport
        self._timer = self.reactor.callLater(self.limits.wall_seconds, self._kill, "timeout")

    def _kill(self, why: str) -> None:
        if self._killed is None:
            self._killed = why
        if self._transport is not None and self._transport.pid is not None:
            # bwrap runs with --die-with-parent/--as-pid-1: killing it kills the runner
            # (pid 1 of the job's pid namespace), and the kernel then kills the rest.
            try:
                self._transport.signalProcess("KILL")
            except error.ProcessExitedAlready:
                pass

    def _data(self, fd: int, data: bytes) -> None:
        if fd == 1:
            if self._stdout.add(data) and self._killed is None:
                self._kill("overflow")
        elif fd == 2:
            self._stderr.add(data)
        elif fd == STATUS_FD:
            self._status.add(data)

    def _ended(self, value: Any) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.watchdog is not None:
            self.watchdog.stop()
        oom_killed = finish_cgroup(self.cgroup)
        if not self.result.called:
            self._finish(
                classify(
                    killed="memory" if self._over_memory and self._killed is None else self._killed,
                    oom_killed=oom_killed,
                    records=parse_status(self._status.value()),
                    stdout=self._stdout.value(),
                    stderr=self._stderr.value(),
                    limits=self.limits,
                    wall=self._elapsed(),
                    exit_code=getattr(value, "exitCode", None),
                    exit_signal=getattr(value, "signal", None),
                )
            )
        self.ended.callback(None)

    def _finish(self, outcome: Outcome) -> None:
        self.result.callback(outcome)


def start(
    reactor: Any,
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    limits: Limits = Limits(),
    binds: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    level: Level = None,
    staging: Staging | None = None,
    steps: Sequence[Sequence[str]] | None = None,
    stop_on_failure: bool = True,
    stderr_bytes: int = STDERR_BYTES,
    job_usr: bool = True,
    extra_env: dict | None = None,
    single_process: bool = False,
) -> Execution:
    """Start a sandboxed run and return its :class:`Execution` handle.

    ``steps`` (several argvs run one after another in the same sandbox) replaces ``argv``
    when given. ``job_usr=False`` hides the host's /usr from the job (needs Landlock);
    ``extra_env`` adds to the job's environment. ``single_process``: the job may not fork
    (seccomp; a market job). A refusal still returns an Execution whose ``result`` has fired.
    """
    execution = Execution(reactor, limits, stderr_bytes)
    try:
        full, execution.cgroup = prepare(
            steps if steps is not None else [argv],
            limits=limits,
            binds=binds,
            user=user,
            level=level,
            staging=staging,
            status_fd=STATUS_FD,
            stop_on_failure=stop_on_failure,
            job_usr=job_usr,
            extra_env=extra_env,
            single_process=single_process,
        )
    except _Refused as exc:
        execution._finish(Outcome("refused", message=str(exc)))
        execution.ended.callback(None)
        return execution
    executable = shutil.which(full[0], path=WRAPPER_ENV["PATH"]) or full[0]
    try:
        reactor.spawnProcess(
            _SandboxProtocol(execution),
            executable,
            full,
            env=dict(WRAPPER_ENV),
            path="/",
            childFDs={0: "w", 1: "r", 2: "r", STATUS_FD: "r"},
        )
    except OSError as exc:
        finish_cgroup(execution.cgroup)
        execution._finish(Outcome("crash", message=f"cannot start {full[0]}: {exc}"))
        execution.ended.callback(None)
        return execution
    transport = execution._transport
    if execution.cgroup is None and transport.pid:
        execution.watch_memory(transport.pid)
    if stdin:
        transport.write(stdin)
    transport.closeStdin()
    return execution


def run(
    reactor: Any,
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    limits: Limits = Limits(),
    binds: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    level: Level = None,
    staging: Staging | None = None,
) -> defer.Deferred:
    """Run ``argv`` in the sandbox; the Deferred fires with an :class:`Outcome`.

    ``binds`` are (host_path, sandbox_path) pairs mounted read-only. ``user`` is the
    unprivileged account to run as (required when the worker is root). ``level`` is a
    Probe or the minimum acceptable level. Cancelling the Deferred kills the sandbox at
    once and fires it with status 'abort'. Problems before launch give 'refused'.
    """
    return start(reactor, argv, stdin=stdin, limits=limits, binds=binds, user=user, level=level, staging=staging).result


def run_sync(
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    limits: Limits = Limits(),
    binds: Sequence[tuple[str, str]] = (),
    user: str | None = None,
    level: Level = None,
    staging: Staging | None = None,
    stderr_bytes: int = STDERR_BYTES,
) -> Outcome:
    """Blocking twin of :func:`run` (subprocess + selectors) for the CLI and benchmarks."""
    started = time.monotonic()
    status_r, status_w = os.pipe()
    try:
        try:
            full, cgroup = prepare(
                [argv], limits=limits, binds=binds, user=user, level=level, staging=staging, status_fd=status_w
            )
        except _Refused as exc:
            os.close(status_r)
            return Outcome("refused", message=str(exc))
        try:
            proc = subprocess.Popen(
                full,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(status_w,),
                env=dict(WRAPPER_ENV),
                cwd="/",
            )
        except OSError as exc:
            finish_cgroup(cgroup)
            os.close(status_r)
            return Outcome("crash", message=f"cannot start {full[0]}: {exc}")
    finally:
        os.close(status_w)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None  # all three are PIPEs
    out, err, status = _Capped(int(limits.output_bytes)), _Capped(stderr_bytes), _Capped(STATUS_BYTES)
    buffers = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, status_r: status}
    killed = None
    try:
        if stdin:
            try:
                proc.stdin.write(stdin)  # small inputs only: a pipe holds 64 KiB
            except BrokenPipeError:
                pass
        proc.stdin.close()
        deadline = started + limits.wall_seconds
        with selectors.DefaultSelector() as sel:
            for fd in buffers:
                sel.register(fd, selectors.EVENT_READ)
            while sel.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    killed = killed or "timeout"
                    proc.kill()
                    break
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 65536)
                    if not data:
                        sel.unregister(key.fd)
                    elif buffers[key.fd].add(data) and key.fd == proc.stdout.fileno():
                        killed = killed or "overflow"
                        proc.kill()
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
        os.close(status_r)
    rc = proc.returncode
    return classify(
        killed=killed,
        oom_killed=finish_cgroup(cgroup),
        records=parse_status(status.value()),
        stdout=out.value(),
        stderr=err.value(),
        limits=limits,
        wall=round(time.monotonic() - started, 6),
        exit_code=rc if rc >= 0 else None,
        exit_signal=-rc if rc < 0 else None,
    )
