"""Resumable jobs: freeze a running Python job as plain data, resume it anywhere.

Public API (the dispatcher, worker, CLI and server use exactly these names):

* :func:`validate` - check a job module, raising :class:`JobRefused`;
* :func:`start` - state #0 of a job, as an envelope (nothing of the job runs);
* :func:`prepare` - the same work once, before the job has an id: a :class:`PreparedJob`
  whose :meth:`~PreparedJob.state` stamps state #0 for job id N without redoing it;
* :func:`run_slice` - thaw, run for a time slice, freeze: a :class:`SliceOutcome`;
* :func:`replay_slice` / :func:`replay_result` - verification by replay from a parent state
  (:class:`ReplayOutcome`; see :mod:`market.tasklet.replay`);
* :func:`decode_result` - a result as data, without executing anything (within a budget);
* :func:`render_result` - a result's JSON text within a budget of values and characters, read
  straight from the bytes (a result of a few bytes may stand for 2**40 values: it is refused);

This package imports nothing outside itself and the standard library: the
worker runs it inside the sandbox with only this directory mounted.
"""

from __future__ import annotations

from . import codec
from .codec import CodecError, OverBudget, PlainInstance
from .compiler import compile_job
from .envelope import EnvelopeError, Header, make_envelope, open_envelope, read_header
from .replay import ReplayOutcome, replay_result, replay_slice
from .runner import SliceOutcome, run_slice, start
from .validator import ALLOWED_MODULES, JobRefused

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Optional, Tuple

__all__ = [
    "validate",
    "start",
    "prepare",
    "PreparedJob",
    "run_slice",
    "replay_slice",
    "replay_result",
    "ReplayOutcome",
    "decode_result",
    "render_result",
    "forget_compiled",
    "OverBudget",
    "SliceOutcome",
    "JobRefused",
    "EnvelopeError",
    "CodecError",
    "PlainInstance",
    "Header",
    "read_header",
    "open_envelope",
    "ALLOWED_MODULES",
]


def validate(source: str, entry: str) -> None:
    """Raise :class:`JobRefused` (problems: ``[(lineno, reason)]``) if the job
    module is outside the resumable subset or has no function ``entry``."""
    compile_job(source, entry)


def forget_compiled() -> None:
    """Drop the compiled jobs this process keeps for its next slices.  A
    server's helper process checks one stranger's module after another:
    keeping them would only hold its memory."""
    from . import compiler

    compiler._CACHE.clear()


def decode_result(data: bytes, max_nodes: Optional[int] = None) -> Any:
    """Decode a job's result as data; job-class instances come back as
    :class:`PlainInstance` dicts.  Never imports or executes anything.

    ``max_nodes`` bounds the values built (:class:`OverBudget` past it).  To
    *show* a result use :func:`render_result`: a decoded value's ``repr`` or
    JSON walks every shared reference where it appears.
    """
    return codec.decode(data, classes=None, max_nodes=max_nodes)


def render_result(
    data: bytes, max_chars: int, max_nodes: int, indent: Optional[int] = None, as_text: bool = True
) -> Tuple[str, bool]:
    """(text, complete): a result as JSON text (with ``as_text``, a string
    result as itself), at most ``max_chars`` characters of it; ``complete`` is
    False when cut.

    Raises :class:`OverBudget` when the result, with every shared reference
    expanded where it appears, holds more than ``max_nodes`` values (checked
    on the bytes before anything is written), :class:`CodecError` when it is
    malformed.  Time and memory are bounded by the budgets and the length of
    ``data``.
    """
    return codec.render(data, max_chars, max_nodes, indent=indent, as_text=as_text)


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

    @property
    def header(self) -> Header:
        """State #0's header, without a job id."""
        return self._header

    @property
    def payload(self) -> bytes:
        """State #0's encoded payload: with :attr:`header`, all it takes to make the job again."""
        return self._payload

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
