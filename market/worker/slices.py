"""Running one lease's slice: in the sandbox (normally) or, with --insecure-no-sandbox, directly.

The job runtime (``market.tasklet``) runs inside the sandbox under Debian's /usr/bin/python3 with
only a staged, read-only copy of the ``market.tasklet`` package bound in. It speaks the framed
protocol of ``market.tasklet.slicemain`` on stdin/stdout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from market.sandbox.limits import Caps
from market.sandbox.runner import STDERR_BYTES
from market.sandbox.watchdog import descendants
from market.tasklet.slicemain import NOFREEZE_DUMP_AFTER

if TYPE_CHECKING:
    from twisted.internet import defer

    from market.sandbox.runner import Execution

__all__ = ["SliceReport", "SliceRunner", "classify", "descendants", "signal_tree", "stage_runtime", "FREEZE_GRACE"]

SANDBOX_ROOT = "/opt/market"
# SIGUSR1 = "freeze now" (graceful stop): it fires the runtime's own slice-timer signal early, so
# the job suspends at its next back-edge exactly as at the end of a slice.
LAUNCH = (
    "import os, signal, sys; sys.path.insert(0, %r); "
    "signal.signal(signal.SIGUSR1, lambda *a: os.kill(os.getpid(), signal.SIGALRM)); "
    "from market.tasklet.slicemain import main; sys.exit(main())"
)
# How long after its slice a job may take to reach a freeze point and freeze before the sandbox
# is killed; a slice killed then reached none: it is reported as 'nofreeze' (billed, and after a
# few such slices the market ends the job). The runtime dumps its stack before this.
FREEZE_GRACE = NOFREEZE_DUMP_AFTER + 3.0
# a job frame in faulthandler's dump: '  File "<job>", line 12 in work'
_JOB_FRAME = re.compile(rb'File "<job>", line (\d+) in (\w+)')


@dataclass
class SliceReport:
    """What one slice produced, classified as the worker reports it."""

    status: str  # ok | finished | nofreeze | timeout | overflow | memory | crash | refused | abort
    envelope: bytes | None = None
    result: bytes | None = None
    error: str | None = None
    progress: float | None = None
    message: str = ""
    wall: float = 0.0
    #: the runtime's stats; a replay's: {"replay": True, "matched": bool, "steps": int}
    stats: dict[str, Any] | None = None
    #: what the job printed (stdout and stderr: the runtime sends the job's stdout to stderr), at
    #: most the sandbox's stderr cap; sent as ``info {log}`` with ``state``/``result``
    log: bytes = b""


def stage_runtime(staging, python: str = "/usr/bin/python3") -> str:
    """Copy market/tasklet into the staging dir (world-readable, root-owned); return the bind source.

    The copy is named by a hash of its sources, so concurrent workers share it and never see it
    half-written (built aside, then renamed). It is byte-compiled with the sandbox's interpreter:
    the job user cannot write ``__pycache__`` there, and compiling on every slice cost ~100 ms.
    """
    import hashlib
    import subprocess

    import market.tasklet as pkg

    source = os.path.dirname(pkg.__file__)
    digest = hashlib.sha256(python.encode())
    for name in sorted(os.listdir(source)):
        if name.endswith(".py"):
            with open(os.path.join(source, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
    final = os.path.join(staging.ensure_dir("runtime"), digest.hexdigest()[:16])
    if os.path.isdir(final):
        return final
    tmp = f"{final}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "market"))
    with open(os.path.join(tmp, "market", "__init__.py"), "w"):
        pass
    shutil.copytree(
        source, os.path.join(tmp, "market", "tasklet"), ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    subprocess.run(
        [python, "-I", "-m", "compileall", "-q", tmp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    for dirpath, _dirnames, filenames in os.walk(tmp):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            os.chmod(os.path.join(dirpath, name), 0o644)
    try:
        os.rename(tmp, final)
    except OSError:  # another worker staged the same runtime first
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def signal_tree(pid: int | None, sig: int) -> None:
    if not pid:
        return
    for child in descendants(pid):
        try:
            os.kill(child, sig)
        except OSError:
            pass


def classify(sandbox_status: str, stdout: bytes, message: str, wall: float) -> SliceReport:
    """Turn a sandbox Outcome (+ the runtime's framed answer) into a SliceReport."""
    from market.tasklet import slicemain

    if sandbox_status == "crash" and stdout.startswith(b"MKSR"):
        try:
            slicemain.decode_response(stdout)
        except Exception as e:  # the runtime refused the state or the job before running it
            return SliceReport("refused", message=str(e), wall=wall)
    if sandbox_status == "ok":
        try:
            out = slicemain.decode_response(stdout)
        except Exception as e:  # the runtime's answer is damaged: the slice produced nothing usable
            return SliceReport("crash", message=f"unreadable answer from the job runtime: {e}", wall=wall)
        if out.finished:
            return SliceReport("finished", result=out.result, error=out.error, progress=1.0, wall=wall, stats=out.stats)
        return SliceReport("ok", envelope=out.envelope, progress=out.progress, wall=wall, stats=out.stats)
    return SliceReport(sandbox_status, message=message or sandbox_status, wall=wall)


def nofreeze_message(stderr: bytes, source: str, seconds: float) -> str:
    """Why a slice was killed without freezing, for the job's owner: the job's line it was stuck
    on (from the runtime's stack dump, when there is one) and what to do about it."""
    where = ""
    frames = _JOB_FRAME.findall(stderr[-16384:])
    if frames:
        line, function = int(frames[0][0]), frames[0][1].decode()  # innermost first
        lines = source.splitlines()
        text = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        where = f" It was inside one long call at line {line} in {function}()" + (f": {text[:120]}." if text else ".")
    return (
        f"the job reached no freeze point within its slice of {seconds:g} s (and {FREEZE_GRACE:g} s more)."
        f"{where} A job can only freeze at a loop iteration or a call of one of its own functions: split"
        " long built-in calls (sum, sorted, pow, a huge str or list operation) into a loop over smaller pieces"
    )


class SliceRunner:
    """Starts slices; knows how to freeze the running one early (SIGUSR1 to the runtime)."""

    def __init__(
        self,
        reactor,
        *,
        user: str | None,
        level: Any,
        insecure: bool,
        memory_mb: int,
        python: str = "/usr/bin/python3",
        caps: Caps | None = None,
    ):
        self.reactor = reactor
        self.user = user
        self.level = level
        self.insecure = insecure
        self.memory_mb = memory_mb
        self.caps = caps or Caps(memory_mb=memory_mb)
        self.python = python
        self._execution: Execution | None = None
        self._pid: int | None = None
        from market.sandbox.staging import default_staging

        # staged even without a sandbox: the job user must be able to read the runtime
        self._bind = stage_runtime(default_staging(), python)

    def freeze_now(self) -> None:
        """Ask the running slice to freeze at its next back-edge (graceful stop)."""
        pid = self._pid
        if pid is None and self._execution is not None and self._execution._transport is not None:
            pid = self._execution._transport.pid
        signal_tree(pid, signal.SIGUSR1)

    def pids(self) -> list[int]:
        ex = self._execution
        if ex is not None and ex._transport is not None and ex._transport.pid:
            return descendants(ex._transport.pid)
        return [self._pid] if self._pid else []

    def run(self, envelope: bytes, source: str, seconds: float, job_id: int | None):
        """-> Deferred[SliceReport] for one slice of at most ``seconds``."""
        from market.tasklet import slicemain

        return self._launch(slicemain.encode_request(envelope, source, seconds, None, job_id), source, seconds)

    def run_replay(self, envelope: bytes, source: str, replay: dict[str, Any], seconds: float, job_id: int | None):
        """-> Deferred[SliceReport] for a replay lease (its ``replay`` struct): the state it reached
        (``stats["matched"]``, ``stats["steps"]``) or the result; killed after ``seconds`` (the lease's
        time less the upload margin) like a slice that never froze: a replay has no clock of its own."""
        from market.tasklet import slicemain

        return self._launch(slicemain.encode_replay_request(envelope, source, replay, job_id), source, seconds)

    def _launch(self, request: bytes, source: str, seconds: float):
        if self.insecure:
            return self._run_unsandboxed(request, seconds)
        from market.sandbox import Limits, start

        # A job is one process (the no-fork seccomp filter), so its RLIMIT_AS is its memory; the
        # worker's watchdog (or cgroup) holds the whole sandbox to the same figure.
        limits = Limits(
            wall_seconds=seconds + FREEZE_GRACE,
            cpu_seconds=seconds + FREEZE_GRACE,
            memory_mb=min(self.memory_mb, self.caps.memory_mb),
            output_bytes=self.caps.output_bytes,
            disk_mb=min(16, self.caps.disk_mb),
            processes=64,
            files=64,
        )
        self._execution = start(
            self.reactor,
            [self.python, "-I", "-S", "-c", LAUNCH % SANDBOX_ROOT],
            stdin=request,
            limits=limits,
            binds=[(self._bind, SANDBOX_ROOT)],
            user=self.user,
            level=self.level,
            extra_env={"PYTHONHASHSEED": "0"},
            single_process=True,
        )

        def done(outcome):
            self._execution = None
            if outcome.status == "timeout":
                # killed at slice + FREEZE_GRACE: the job never froze (wall or CPU limit alike)
                return SliceReport(
                    "nofreeze", message=nofreeze_message(outcome.stderr, source, seconds), wall=outcome.wall_seconds
                )
            report = classify(
                outcome.status,
                outcome.stdout,
                outcome.message or outcome.stderr.decode("utf-8", "replace")[-2000:],
                outcome.wall_seconds,
            )
            report.log = outcome.stderr
            return report

        return self._execution.result.addCallback(done)

    def _run_unsandboxed(self, request: bytes, seconds: float):
        from twisted.internet import defer, protocol

        d: defer.Deferred[SliceReport] = defer.Deferred()
        runner = self

        class P(protocol.ProcessProtocol):
            def __init__(self):
                self.out, self.err, self.size = [], [], 0

            def connectionMade(self):
                # a process transport; calls through IProcessTransport only check with mypy-zope
                transport: Any = self.transport
                transport.write(request)
                transport.closeStdin()

            def outReceived(self, data):
                self.out.append(data)

            def errReceived(self, data):
                # the newest STDERR_BYTES only, as in the sandbox: a job may print without end
                self.err.append(data)
                self.size += len(data)
                while self.size > STDERR_BYTES and len(self.err) > 1:
                    self.size -= len(self.err.pop(0))
                if self.size > STDERR_BYTES:
                    self.err[0] = self.err[0][-STDERR_BYTES:]
                    self.size = len(self.err[0])

            def processEnded(self, reason):
                runner._pid = None
                code = getattr(reason.value, "exitCode", None)
                status = "ok" if code == 0 else "crash"
                err = b"".join(self.err)
                report = classify(status, b"".join(self.out), err.decode("utf-8", "replace")[-2000:], 0.0)
                report.log = err
                d.callback(report)

        proto = P()
        argv = [self.python, "-I", "-S", "-c", LAUNCH % self._bind]
        if self.user and os.geteuid() == 0:
            # no sandbox, but still never as root
            from market.sandbox.users import resolve_user

            u = resolve_user(self.user)
            argv = ["setpriv", f"--reuid={u.uid}", f"--regid={u.gid}", "--clear-groups", *argv]
        transport = self.reactor.spawnProcess(
            proto,
            argv[0] if argv[0].startswith("/") else "/usr/bin/" + argv[0],
            argv,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
            path="/",
        )
        self._pid = transport.pid
        return d
