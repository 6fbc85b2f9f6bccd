"""The worker's sandbox: run untrusted jobs and pythia-style tasks under hard limits.

Layers (see docs/sandbox.md): setpriv → prlimit → bwrap → inner.py (Landlock, seccomp)
→ job. Probe once with :func:`probe`; run with :func:`run` (Twisted) or :func:`run_sync`.
"""

from .limits import Limits, LimitsError
from .outcome import STATUSES, Outcome
from .probe import Probe, SandboxLevel, clear_probe_cache, probe
from .runner import Execution, run, run_sync, start
from .task import TASK_STATUSES, Task, TaskError, TaskOutcome, load_task, parse_task, read_control, run_task
from .users import JobUser, JobUserPool, UserError, job_user_for, resolve_user

__all__ = [
    "Limits",
    "LimitsError",
    "Outcome",
    "STATUSES",
    "Probe",
    "SandboxLevel",
    "probe",
    "clear_probe_cache",
    "Execution",
    "run",
    "run_sync",
    "start",
    "JobUser",
    "JobUserPool",
    "UserError",
    "job_user_for",
    "resolve_user",
    "Task",
    "TaskError",
    "TaskOutcome",
    "TASK_STATUSES",
    "parse_task",
    "load_task",
    "read_control",
    "run_task",
]
