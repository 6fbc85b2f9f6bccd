"""pythia-style tasks: a `.task` JSON + a task filesystem with a `control` file, run to
completion in the sandbox under time/memory/disk/output limits (issue 9 core)."""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from twisted.internet import defer
from twisted.logger import Logger

from .environments import EnvironmentError_, Environments
from .limits import Caps, Limits, clamp
from .outcome import Outcome
from .runner import start
from .staging import Staging, default_staging
from .taskfs import MAX_UNPACKED_BYTES, FilesystemError, unpack

__all__ = [
    "Task",
    "TaskError",
    "TaskOutcome",
    "TASK_STATUSES",
    "parse_task",
    "load_task",
    "read_control",
    "run_task",
    "default_environments",
]

TASK_STATUSES = ("success", "timeout", "overflow", "abort", "crash", "error")
TASK_DIR = "/task"
# pythia's limits say nothing about processes or files; these bound a fork bomb and an
# fd leak while leaving room for shell pipelines. The task's memory is its processes' total
# (pythia's "main memory"): a cgroup, or the worker's watchdog, holds the sum to it.
TASK_PROCESSES = 32
TASK_FILES = 256
CONTROL_MAX_BYTES = 64 * 1024

log = Logger()


class TaskError(ValueError):
    """The task description or its filesystem is malformed; the message says how."""


@dataclass(frozen=True)
class Task:
    """A validated `.task` description.

    time   -- seconds (wall and CPU)         memory -- MB: each process's address space,
                                                        and all its processes' memory together
    disk   -- percent of ``memory`` usable as tmpfs for /tmp and /work
    output -- bytes of stdout kept; more is 'overflow'
    """

    environment: str
    taskfs: str
    time: float
    memory: int
    disk: int
    output: int

    def limits(self) -> Limits:
        """The sandbox limits this task asks for."""
        return Limits(
            wall_seconds=self.time,
            cpu_seconds=self.time,
            memory_mb=self.memory,
            output_bytes=self.output,
            disk_mb=self.disk_mb,
            processes=TASK_PROCESSES,
            files=TASK_FILES,
        )

    @property
    def disk_mb(self) -> int:
        return max(1, math.ceil(self.memory * self.disk / 100))


@dataclass(frozen=True)
class TaskOutcome:
    """pythia's result: status (TASK_STATUSES), output (stdout text), and details.

    ``clamped``: one note per limit the worker lowered to its own (``"memory 4096 MB -> 512
    MB"``); they are also at the end of ``message``, which the task's owner sees."""

    status: str
    output: str = ""
    exit_code: int | None = None
    message: str = ""
    wall_seconds: float = 0.0
    raw: bytes = b""
    sandbox: Outcome | None = None
    clamped: tuple[str, ...] = ()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_task(data: str | bytes | Mapping[str, Any], environments: Environments | None = None) -> Task:
    """Validate a task description (JSON text or an already-decoded object).

    Raises :class:`TaskError` naming the offending key and value. When
    ``environments`` is given an unknown environment is refused here too.
    """
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise TaskError(f"task is not valid JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise TaskError(f"task must be a JSON object, got {type(data).__name__}")
    unknown = set(data) - {"environment", "taskfs", "limits"}
    if unknown:
        raise TaskError(f"unknown task key(s): {', '.join(sorted(unknown))} (expected environment, taskfs, limits)")
    for key in ("environment", "taskfs"):
        if not isinstance(data.get(key), str) or not data.get(key):
            raise TaskError(f"{key} must be a non-empty string, got {data.get(key)!r}")
    limits = data.get("limits")
    if not isinstance(limits, Mapping):
        raise TaskError(f"limits must be an object with time, memory, disk and output, got {limits!r}")
    unknown = set(limits) - {"time", "memory", "disk", "output"}
    if unknown:
        raise TaskError(f"unknown limits key(s): {', '.join(sorted(unknown))} (expected time, memory, disk, output)")
    missing = [k for k in ("time", "memory", "disk", "output") if k not in limits]
    if missing:
        raise TaskError(f"limits.{missing[0]} is missing")
    time_, memory, disk, output = (limits[k] for k in ("time", "memory", "disk", "output"))
    if not _number(time_) or time_ <= 0:
        raise TaskError(f"limits.time must be a positive number of seconds, got {time_!r}")
    if not _number(memory) or memory != int(memory) or memory < 4:
        raise TaskError(f"limits.memory must be a whole number of MB, at least 4, got {memory!r}")
    if not _number(disk) or disk != int(disk) or not 0 < disk <= 100:
        raise TaskError(f"limits.disk must be a whole percentage of the memory limit between 1 and 100, got {disk!r}")
    if not _number(output) or output != int(output) or output < 0:
        raise TaskError(f"limits.output must be a whole number of characters >= 0, got {output!r}")
    task = Task(data["environment"], data["taskfs"], float(time_), int(memory), int(disk), int(output))
    if environments is not None and not environments.exists(task.environment):
        raise TaskError(f"unknown environment {task.environment!r}; available: {', '.join(environments.names())}")
    return task


def load_task(path: str, environments: Environments | None = None) -> tuple[Task, str]:
    """Read a `.task` file; return the task and its taskfs path resolved against the
    directory of the `.task` file (as pythia does for 'hello-world.sfs')."""
    try:
        with open(path, "rb") as f:
            task = parse_task(f.read(), environments)
    except OSError as exc:
        raise TaskError(f"cannot read task file {path!r}: {exc.strerror}") from None
    return task, os.path.join(os.path.dirname(os.path.abspath(path)), task.taskfs)


def read_control(taskdir: str) -> list[list[str]]:
    """The steps listed in ``taskdir/control``: one command per non-empty, non-# line.

    A line is split like a shell would split words (no expansion). Paths relative to
    the task (``hello.sh``, ``bin/run``) are taken under /task.
    """
    path = os.path.join(taskdir, "control")
    if os.path.islink(path) or not os.path.isfile(path):
        raise TaskError("task filesystem has no control file (it is the one mandatory file)")
    with open(path, "rb") as f:
        text = f.read(CONTROL_MAX_BYTES + 1)
    if len(text) > CONTROL_MAX_BYTES:
        raise TaskError(f"control file is larger than {CONTROL_MAX_BYTES} bytes")
    steps = []
    for number, line in enumerate(text.decode("utf-8", "replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise TaskError(f"control line {number}: {exc}") from None
        if not words[0].startswith("/") and ("/" in words[0] or os.path.exists(os.path.join(taskdir, words[0]))):
            words[0] = f"{TASK_DIR}/{words[0]}"
        steps.append(words)
    if not steps:
        raise TaskError("control file lists no executable")
    return steps


_environments: Environments | None = None


def default_environments(extra_dirs: tuple[str, ...] = ()) -> Environments:
    """Shipped environments plus $MARKET_ENVIRONMENTS_DIR (or ``extra_dirs``)."""
    global _environments
    if extra_dirs:
        return Environments(default_staging(), extra_dirs)
    if _environments is None:
        env_dir = os.environ.get("MARKET_ENVIRONMENTS_DIR")
        _environments = Environments(default_staging(), (env_dir,) if env_dir else ())
    return _environments


class _TaskCommon(TypedDict):
    """What a TaskOutcome takes from the sandbox's Outcome, whatever the task's status."""

    output: str
    raw: bytes
    exit_code: int | None
    wall_seconds: float
    sandbox: Outcome


def _to_task_outcome(outcome: Outcome) -> TaskOutcome:
    text = outcome.stdout.decode("utf-8", "replace")
    common: _TaskCommon = {
        "output": text,
        "raw": outcome.stdout,
        "exit_code": outcome.exit_code,
        "wall_seconds": outcome.wall_seconds,
        "sandbox": outcome,
    }
    if outcome.status in ("timeout", "overflow", "abort"):
        return TaskOutcome(outcome.status, message=outcome.message, **common)
    if outcome.status == "ok" and outcome.exit_code == 0:
        return TaskOutcome("success", **common)
    if outcome.status == "ok":
        step = outcome.steps[-1].get("step", 0) if outcome.steps else 0
        return TaskOutcome("crash", message=f"control step {step + 1} exited with status {outcome.exit_code}", **common)
    return TaskOutcome("crash", message=outcome.message or outcome.status, **common)


def with_notes(outcome: TaskOutcome, notes: tuple[str, ...]) -> TaskOutcome:
    """The outcome with the limits the worker lowered named in its message."""
    if not notes:
        return outcome
    note = "this worker lowered the task's limits to its own: " + "; ".join(notes)
    message = f"{outcome.message} ({note})" if outcome.message else note
    return replace(outcome, message=message, clamped=notes)


def _prepare(
    task: Task, taskfs: str, environments: Environments, staging: Staging, max_bytes: int = MAX_UNPACKED_BYTES
) -> tuple[Any, str, list[list[str]]]:
    """Build the environment and unpack the task filesystem (blocking: run in a thread)."""
    environment = environments.get(task.environment)
    taskdir = unpack(taskfs, staging.ensure_dir("tasks"), max_bytes)
    try:
        return environment, taskdir, read_control(taskdir)
    except BaseException:
        shutil.rmtree(taskdir, ignore_errors=True)
        raise


def run_task(
    reactor: Any,
    task: Task | Mapping[str, Any] | str | bytes,
    taskfs_path: str | None = None,
    input: bytes | None = None,
    user: str | None = None,
    envdir: None | str | Environments = None,
    staging: Staging | None = None,
    caps: Caps | None = None,
) -> defer.Deferred[TaskOutcome]:
    """Run a task; the Deferred fires with a :class:`TaskOutcome`, never fails.

    ``caps``: the worker's own limits; every limit the task asks for is lowered to them (see
    :func:`market.sandbox.limits.clamp`), logged, and named in the outcome's message, and a
    task filesystem that would unpack to more than ``caps.disk_mb`` is refused before
    unpacking. ``task`` is a Task or a raw description (validated here: problems give 'error').
    ``taskfs_path`` overrides ``task.taskfs`` (a directory, .zip, .tar(.gz) or .sfs),
    mounted read-only at /task. ``input`` is the steps' shared stdin. ``envdir`` is an
    operator environments directory (or an Environments). Unpacking happens in the
    reactor's thread pool. Cancelling the Deferred kills the task at once (or stops it
    from starting) and fires it with 'abort'.
    """
    from twisted.internet import threads

    staging = staging or default_staging()
    if isinstance(envdir, Environments):
        environments = envdir
    elif envdir:
        environments = Environments(staging, (envdir,))
    else:
        environments = default_environments()
    try:
        if not isinstance(task, Task):
            task = parse_task(task, environments)
        elif not environments.exists(task.environment):
            raise TaskError(f"unknown environment {task.environment!r}; available: {', '.join(environments.names())}")
    except TaskError as exc:
        return defer.succeed(TaskOutcome("error", message=str(exc)))
    limits = task.limits()
    notes: tuple[str, ...] = ()
    if caps is not None:
        limits, notes = clamp(limits, caps)
        if notes:
            log.info("task limits lowered to this worker's: {notes}", notes="; ".join(notes))
    max_bytes = caps.disk_mb << 20 if caps is not None else MAX_UNPACKED_BYTES

    state: dict = {"execution": None, "cancelled": False}

    def cancel(d: defer.Deferred[TaskOutcome]) -> None:
        state["cancelled"] = True
        if state["execution"] is not None:
            state["execution"].abort()  # fires ``result`` through the chain below
        else:
            d.callback(TaskOutcome("abort", message="cancelled before the task started"))

    result: defer.Deferred[TaskOutcome] = defer.Deferred(cancel)

    def launch(prepared: tuple[Any, str, list[list[str]]]) -> None:
        environment, taskdir, steps = prepared
        if state["cancelled"]:
            shutil.rmtree(taskdir, ignore_errors=True)
            return
        execution = start(
            reactor,
            [],
            steps=steps,
            stdin=input or b"",
            limits=limits,
            binds=[*environment.binds, (taskdir, TASK_DIR)],
            user=user,
            staging=staging,
            job_usr=environment.host_usr,
            extra_env={"PATH": environment.path},
        )
        state["execution"] = execution
        # The unpacked tree stays until the sandbox is gone, even after an abort.
        execution.ended.addBoth(lambda _: shutil.rmtree(taskdir, ignore_errors=True))
        execution.result.addCallback(_to_task_outcome).addCallback(with_notes, notes).chainDeferred(result)

    def failed(failure: Any) -> None:
        failure.trap(TaskError, EnvironmentError_, FilesystemError)
        if not result.called:
            result.callback(with_notes(TaskOutcome("error", message=str(failure.value)), notes))

    pool = reactor.getThreadPool()
    prepared = threads.deferToThreadPool(
        reactor, pool, _prepare, task, taskfs_path or task.taskfs, environments, staging, max_bytes
    )

    def crashed(failure: Any) -> None:
        if not result.called:
            result.callback(TaskOutcome("crash", message=f"task set-up failed: {failure.getErrorMessage()}"))

    prepared.addCallback(launch).addErrback(failed).addErrback(crashed)
    return result
