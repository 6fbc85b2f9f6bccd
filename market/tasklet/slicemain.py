"""Run one slice in this process: ``python -m market.tasklet.slicemain``.

This is what the worker runs inside the sandbox (Debian's python3 or PyPy,
only this package directory mounted).  Framing, all lengths u32 big-endian:

request on stdin::

    b"MKSQ" | len + meta JSON | len + envelope | len + source (UTF-8)
    meta: {"seconds": float, "budget": int or null, "job_id": int or null}
      or, for verification by replay (market.tasklet.replay):
          {"mode": "replay", "steps": int, "job_id": int or null,
           "target": payload sha256 hex, "mark": str}      (a slice: replay_slice)
          {"mode": "replay", "steps": int, "job_id": int or null, "result": true}
                                                           (a final result: replay_result)

response on stdout::

    b"MKSR" | len + meta JSON | len + new envelope (empty if none) | len + result
    meta: {"status": "ok", "finished": bool, "error": str or null,
           "progress": float or null, "stats": {...},
           "has_envelope": bool, "has_result": bool}
       or {"status": "rejected", "message": str}   (bad state / refused job)

A replay's response is the same, with ``stats`` = {"replay": true, "matched": bool, "steps": int}.
A replay ignores SIGALRM: only its step cap stops it (a state cut short by a clock could only
fail the comparison and blame an honest worker); the worker's wall limit kills a replay too long.

Exit status: 0 for "ok", 2 for "rejected", 3 for a malformed request.
SIGALRM at any time means "freeze now": before the slice starts it makes the
slice stop at its first back-edge.  The
job's own ``print`` output goes to stderr so it cannot corrupt the response.

A job stuck in one long call reaches no back-edge, so it cannot freeze: if the
slice has not ended ``NOFREEZE_DUMP_AFTER`` seconds after its time, faulthandler
writes the stack (which line of the job) to stderr, from a thread of its own
that needs no Python code to run.  The worker kills the slice a little later and
reports it as ``nofreeze`` with that line.
"""

from __future__ import annotations

import json
import signal
import struct
import sys

from .envelope import EnvelopeError
from .replay import ReplayOutcome, replay_result, replay_slice
from .runner import SliceOutcome, request_stop, run_slice
from .validator import JobRefused

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Dict, List, Optional

__all__ = [
    "encode_request",
    "encode_replay_request",
    "decode_meta",
    "replay_response",
    "decode_request",
    "encode_response",
    "decode_response",
    "main",
    "NOFREEZE_DUMP_AFTER",
]

# seconds after the slice's end; the worker waits longer than this before it kills the slice
NOFREEZE_DUMP_AFTER = 2.0

_LEN = struct.Struct(">I")
_MAX_FRAME = 1 << 30
REQUEST_MAGIC, RESPONSE_MAGIC = b"MKSQ", b"MKSR"


class FrameError(ValueError):
    """A request or response that does not follow the framing."""


def _frames(magic: bytes, parts: List[bytes]) -> bytes:
    out = [magic]
    for p in parts:
        out.append(_LEN.pack(len(p)))
        out.append(p)
    return b"".join(out)


def _unframe(magic: bytes, data: bytes, count: int) -> List[bytes]:
    if data[:4] != magic:
        raise FrameError("bad magic %r" % data[:4])
    pos, parts = 4, []
    for _ in range(count):
        if pos + 4 > len(data):
            raise FrameError("truncated")
        (n,) = _LEN.unpack_from(data, pos)
        pos += 4
        if n > _MAX_FRAME or pos + n > len(data):
            raise FrameError("truncated or oversized frame")
        parts.append(data[pos : pos + n])
        pos += n
    if pos != len(data):
        raise FrameError("trailing bytes")
    return parts


def encode_request(
    envelope: bytes, source: str, seconds: float, budget: Optional[int] = None, job_id: Optional[int] = None
) -> bytes:
    """Bytes to send to slicemain's stdin."""
    meta = json.dumps({"seconds": float(seconds), "budget": budget, "job_id": job_id})
    return _frames(REQUEST_MAGIC, [meta.encode(), bytes(envelope), source.encode("utf-8")])


def encode_replay_request(envelope: bytes, source: str, replay: dict, job_id: Optional[int] = None) -> bytes:
    """Bytes to send to slicemain's stdin for a replay: ``replay`` is the lease's ``replay``
    struct (``{"target", "mark", "steps"}`` or ``{"result": true, "steps"}``)."""
    meta = {"mode": "replay", "seconds": 0.0, "budget": None, "job_id": job_id, "steps": int(replay["steps"])}
    if replay.get("result"):
        meta["result"] = True
    else:
        meta["target"], meta["mark"] = str(replay["target"]), str(replay["mark"])
    return _frames(REQUEST_MAGIC, [json.dumps(meta).encode(), bytes(envelope), source.encode("utf-8")])


def decode_meta(data: bytes):
    """(meta, envelope, source) from request bytes; a replay's meta checked."""
    meta_raw, envelope, source = _unframe(REQUEST_MAGIC, data, 3)
    try:
        meta = json.loads(meta_raw.decode("utf-8"))
        if type(meta) is not dict:
            raise ValueError("not an object")
        if meta.get("mode", "slice") not in ("slice", "replay"):
            raise ValueError("mode")
        if meta.get("mode") == "replay":
            if type(meta.get("steps")) is not int or meta["steps"] < 1:
                raise ValueError("steps")
            if not meta.get("result") and not (type(meta.get("target")) is str and type(meta.get("mark")) is str):
                raise ValueError("target and mark")
        return meta, envelope, source.decode("utf-8")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise FrameError("bad request meta: %s" % exc) from None


def decode_request(data: bytes):
    """(envelope, source, seconds, budget, job_id) from request bytes."""
    meta_raw, envelope, source = _unframe(REQUEST_MAGIC, data, 3)
    try:
        meta = json.loads(meta_raw.decode("utf-8"))
        seconds = float(meta["seconds"])
        budget, job_id = meta.get("budget"), meta.get("job_id")
        if budget is not None and type(budget) is not int:
            raise ValueError("budget")
        return envelope, source.decode("utf-8"), seconds, budget, job_id
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise FrameError("bad request meta: %s" % exc) from None


def encode_response(outcome: Optional[SliceOutcome], rejected: Optional[str] = None) -> bytes:
    """Response bytes for an outcome, or for a rejected state/job."""
    if rejected is not None:
        return _frames(RESPONSE_MAGIC, [json.dumps({"status": "rejected", "message": rejected}).encode(), b"", b""])
    if outcome is None:
        raise TypeError("encode_response() takes an outcome or a rejection message")
    meta = {
        "status": "ok",
        "finished": outcome.finished,
        "error": outcome.error,
        "progress": outcome.progress,
        "stats": outcome.stats,
        "has_envelope": outcome.envelope is not None,
        "has_result": outcome.result is not None,
    }
    return _frames(RESPONSE_MAGIC, [json.dumps(meta).encode(), outcome.envelope or b"", outcome.result or b""])


def replay_response(outcome: ReplayOutcome) -> SliceOutcome:
    """A replay's outcome in a slice's shape (what :func:`encode_response` writes)."""
    stats: Dict[str, Optional[float]] = {"replay": True, "matched": outcome.matched, "steps": outcome.steps}
    return SliceOutcome(outcome.envelope, outcome.finished, outcome.result, outcome.error, None, stats)


def decode_response(data: bytes) -> SliceOutcome:
    """The :class:`SliceOutcome` in a response; EnvelopeError if it was rejected."""
    meta_raw, envelope, result = _unframe(RESPONSE_MAGIC, data, 3)
    meta = json.loads(meta_raw.decode("utf-8"))
    if meta.get("status") != "ok":
        raise EnvelopeError(meta.get("message") or "slice rejected")
    return SliceOutcome(
        envelope if meta["has_envelope"] else None,
        bool(meta["finished"]),
        result if meta["has_result"] else None,
        meta["error"],
        meta["progress"],
        meta["stats"],
    )


def _watch_stuck(after: float):
    """Dump the stack to stderr if the slice is still running ``after`` seconds from now;
    returns the function that cancels it."""
    try:
        import faulthandler

        faulthandler.dump_traceback_later(after, exit=False)
    except (ImportError, AttributeError, RuntimeError, ValueError, OverflowError):
        return lambda: None
    return faulthandler.cancel_dump_traceback_later


def _replay(meta: dict, envelope: bytes, source: str) -> ReplayOutcome:
    job_id = meta.get("job_id")
    if meta.get("result"):
        return replay_result(envelope, source, max_steps=meta["steps"], job_id=job_id)
    return replay_slice(
        envelope,
        source,
        target_payload_sha256=meta["target"],
        target_mark=meta["mark"],
        max_steps=meta["steps"],
        job_id=job_id,
    )


def main(stdin=None, stdout=None) -> int:
    """Read one request, run one slice, write one response."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    if hasattr(signal, "SIGALRM"):
        # a "freeze now" that arrives before the slice starts must not kill us
        signal.signal(signal.SIGALRM, request_stop)
    try:
        data = stdin.read()
        meta, envelope, source = decode_meta(data)
        replay = meta.get("mode") == "replay"
        if not replay:
            envelope, source, seconds, budget, job_id = decode_request(data)
    except FrameError as exc:
        sys.stderr.write("slicemain: malformed request: %s\n" % exc)
        return 3
    if replay:
        if hasattr(signal, "SIGALRM"):
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
        watch = lambda: None  # noqa: E731 - the worker's wall limit bounds a replay
    else:
        watch = _watch_stuck(seconds + NOFREEZE_DUMP_AFTER)
    saved = sys.stdout
    sys.stdout = sys.stderr  # the job's print() must not corrupt the response
    try:
        if replay:
            outcome = replay_response(_replay(meta, envelope, source))
        else:
            outcome = run_slice(envelope, source, seconds, budget=budget, job_id=job_id)
        response, status = encode_response(outcome), 0
    except (EnvelopeError, JobRefused) as exc:
        response, status = encode_response(None, rejected=str(exc)), 2
    finally:
        sys.stdout = saved
        watch()
    stdout.write(response)
    stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
