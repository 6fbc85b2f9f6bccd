"""Resumable jobs: freeze a running Python job as plain data, resume it anywhere.

Public API (the dispatcher, worker, CLI and server use exactly these names):

* :func:`validate` - check a job module, raising :class:`JobRefused`;
* :func:`start` - state #0 of a job, as an envelope (nothing of the job runs);
* :func:`prepare` - the same work once, before the job has an id: a :class:`PreparedJob`
  whose :meth:`~PreparedJob.state` stamps state #0 for job id N without redoing it;
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
from .envelope import EnvelopeError, Header, make_envelope, open_envelope, read_header
from .probe import PROBE_ENTRY, PROBE_SOURCE, probe_arguments, probe_expected, probe_operations
from .runner import SliceOutcome, run_slice, start
from .validator import ALLOWED_MODULES, JobRefused

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Optional

__all__ = [
    "validate",
    "start",
    "prepare",
    "PreparedJob",
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


class PreparedJob:
    """A job validated, compiled and frozen into its state #0 before it has a job id.

    :meth:`state` stamps the id into the envelope's header: the same bytes as
    ``start(source, entry, args, kwargs, job_id=N)``, without validating,
    compiling or freezing again (only the header and its checksum are new).
    """

    __slots__ = ("source", "entry", "source_sha256", "_header", "_payload")

    def __init__(self, source: str, entry: str, header: Header, payload: bytes) -> None:
        self.source = source
        self.entry = entry
        self.source_sha256 = header.source_sha256
        self._header = header
        self._payload = payload

    def state(self, job_id: Optional[int] = None) -> bytes:
        """State #0 as an envelope whose header carries ``job_id``."""
        return make_envelope(self._header._replace(job_id=job_id), self._payload)

    def __repr__(self) -> str:
        return "PreparedJob(entry=%r, source_sha256=%r, %d bytes)" % (
            self.entry,
            self.source_sha256[:12],
            len(self._payload),
        )


def prepare(source: str, entry: str, args: list, kwargs: dict) -> PreparedJob:
    """Validate and compile the job, check and freeze its arguments: :func:`start`'s
    work, once, for a job that gets its id later.  Raises :class:`JobRefused`."""
    header, payload = open_envelope(start(source, entry, args, kwargs), source)
    return PreparedJob(source, entry, header, payload)
