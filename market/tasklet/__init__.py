"""Resumable jobs: freeze a running Python job as plain data, resume it anywhere.

Public API (the dispatcher, worker, CLI and server use exactly these names):

* :func:`validate` - check a job module, raising :class:`JobRefused`;
* :func:`start` - state #0 of a job, as an envelope (nothing of the job runs);
* :func:`run_slice` - thaw, run for a time slice, freeze: a :class:`SliceOutcome`;
* :func:`decode_result` - show a result without executing anything;
* :data:`PROBE_SOURCE`, :func:`probe_arguments`, :func:`probe_expected`,
  :func:`probe_operations` - the speed-test job.

This package imports nothing outside itself and the standard library: the
worker runs it inside the sandbox with only this directory mounted.
"""

from __future__ import annotations

from . import codec
from .codec import CodecError, PlainInstance
from .compiler import compile_job
from .envelope import EnvelopeError, Header, open_envelope, read_header
from .probe import PROBE_ENTRY, PROBE_SOURCE, probe_arguments, probe_expected, probe_operations
from .runner import SliceOutcome, run_slice, start
from .validator import ALLOWED_MODULES, JobRefused

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any

__all__ = [
    "validate",
    "start",
    "run_slice",
    "decode_result",
    "SliceOutcome",
    "JobRefused",
    "EnvelopeError",
    "CodecError",
    "PlainInstance",
    "Header",
    "read_header",
    "open_envelope",
    "PROBE_SOURCE",
    "PROBE_ENTRY",
    "probe_arguments",
    "probe_expected",
    "probe_operations",
    "ALLOWED_MODULES",
]


def validate(source: str, entry: str) -> None:
    """Raise :class:`JobRefused` (problems: ``[(lineno, reason)]``) if the job
    module is outside the resumable subset or has no function ``entry``."""
    compile_job(source, entry)


def decode_result(data: bytes) -> Any:
    """Decode a job's result for display; job-class instances come back as
    :class:`PlainInstance` dicts.  Never imports or executes anything."""
    return codec.decode(data, classes=None)
