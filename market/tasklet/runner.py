"""Run one slice of a job: thaw, run until the slice ends, freeze.

The frozen state (codec-encoded plain data inside an envelope) is one of::

    {"kind": "call",   "args": [...], "kwargs": {...}, "progress": p}      # not started
    {"kind": "frames", "frames": [[fname, point, locals, iterators], ...],  # innermost first
     "globals": {...}, "progress": p}
    {"kind": "gen",    "args": [...], "kwargs": {...}, "started": bool,
     "resume": <last yielded state>, "globals": {...}, "progress": p}

``globals`` holds the module-level containers and instances (lists, dicts,
sets, job-class instances...) because jobs may mutate them; everything else at
module level is recomputed by re-running the module's top level each slice.
"""

from __future__ import annotations

import builtins
import collections
import operator
import signal
import sys
import threading
import time
import types

from . import codec, held, iterators
from .compiler import _CHUNK, JOB_FILENAME, CompiledJob, compile_job
from .envelope import (
    INTERPRETER,
    RUNTIME_VERSION,
    EnvelopeError,
    Header,
    digest,
    make_envelope,
    open_envelope,
    sha256_hex,
    source_hash,
)
from .jobrandom import JobRandom
from .refs import References

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import Any, Callable, Dict, List, NamedTuple, NoReturn, Optional, Tuple

    # a frame as the job's stack unwinds: (function, point, locals)
    _Unwound = Tuple[str, int, Dict[str, Any]]
    # a frame as the state holds it: [function, point, locals, {loop: position}]
    _FrozenFrame = List[Any]

__all__ = ["SliceOutcome", "start", "run_slice", "mark_of", "loop_positions", "short_locals"]

_MUTABLE = (
    list,
    dict,
    set,
    bytearray,
    collections.deque,
    collections.Counter,
    collections.OrderedDict,
    collections.defaultdict,
)


if TYPE_CHECKING:
    # What the checker sees: the same fields as the namedtuple below, with their types.

    class SliceOutcome(NamedTuple):
        envelope: Optional[bytes]
        finished: bool
        result: Optional[bytes]
        error: Optional[str]
        progress: Optional[float]
        stats: Dict[str, Optional[float]]

else:
    # A plain namedtuple: importing typing costs ~15 ms, paid on every slice in a fresh process.
    SliceOutcome = collections.namedtuple("SliceOutcome", "envelope finished result error progress stats")
SliceOutcome.__doc__ = """What one slice produced (see :func:`run_slice`): envelope (bytes or None), finished,
result (codec bytes or None), error (str or None), progress (float or None), stats (dict)."""


class _Suspend(BaseException):
    """Unwinds the job's stack; every frame adds (function, point, locals)."""

    def __init__(self) -> None:
        self.frames: List[_Unwound] = []
        self.pending: List[_FrozenFrame] = []  # frames of an earlier state not yet resumed


class _Raised:
    """Carries a callee's exception into its caller's continuation."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def _take(value):
    if type(value) is _Raised:
        raise value.exc
    return value


class _Control:
    """Per-slice runtime: the flag, the budget, progress, job id."""

    def __init__(self, ns: dict, budget: Optional[int], job_id, progress) -> None:
        self.ns = ns
        self.budget = budget
        self.back_edges = 0
        self.expired = False
        self.expired_at: Optional[Tuple[float, float]] = None  # (wall, CPU) when the slice ended
        self.atomic = True  # while the module's top level runs
        self.job_id = job_id
        self.progress = progress
        self.refs = References(ns, (), ())  # replaced by _namespace's, which knows the job
        self.job: Optional[CompiledJob] = None  # set by _run once compiled
        self.classes: Dict[str, type] = {}
        self.codec_version = codec.VERSION  # the codec version of the state thawed (see _run)

    at_yield: Optional[Callable[..., bool]] = None  # a replay's check of a generator job's state after each yield

    def pause(self, fname, point, local_vars):
        """An honest slice's stop (the flag is set): suspend here.  Budget mode counts in the
        check ``arm`` installs instead.  A negative point: a one-chunk range loop's check
        (``short_locals``)."""
        if self.atomic:
            return
        if point < 0:
            point = -point
            local_vars = short_locals(self.job, fname, point, local_vars, sys._getframe(1).f_code)
        s = _Suspend()
        s.frames.append((fname, point, local_vars))
        raise s

    @property
    def back_edges(self) -> int:
        """Back-edges counted (budget mode; a generator job: yields)."""
        return self._edges() if self._edges is not None else self._back_edges

    @back_edges.setter
    def back_edges(self, value: int) -> None:
        self._back_edges = value

    _back_edges = 0
    _edges: Optional[Callable[[], int]] = None  # the armed check's count, once armed

    def arm(self, ns: dict) -> None:
        """Budget mode only, once the job's state is thawed and just before it runs: install a
        back-edge check that counts and reads the frame's locals only where it suspends.

        While it runs, ``_tk_locals`` is a builtin that builds nothing (``globals``): the locals
        dict is built at the stop, once, in the frame's variable order, exactly as an honest slice
        stopped by the clock builds it (``locals()`` at every back-edge would keep the order the
        variables were first bound in, and the mark hashes the locals in dict order).  Before it
        suspends, the real ``locals`` is put back: the frames the suspension unwinds through
        append their locals.  A replay's control checks its target here too (``replay``).
        """
        if self.atomic:  # a generator job: its budget counts yields (_run_generator)
            return
        real_locals, budget, getframe = ns["_tk_locals"], self.budget or 1, sys._getframe
        count = self._back_edges

        def pause(fname, point, _unused):
            nonlocal count
            count += 1
            if count < budget:
                return
            frame = getframe(1)
            local_vars = frame.f_locals
            if point < 0:
                point = -point
                local_vars = short_locals(self.job, fname, point, local_vars, frame.f_code)
            ns["_tk_locals"] = real_locals
            s = _Suspend()
            s.frames.append((fname, point, local_vars))
            raise s

        self._edges = lambda: count
        ns["_tk_pause"] = pause
        ns["_tk_locals"] = globals

    def expire(self, *_ignored) -> None:
        if not self.expired:
            self.expired_at = (time.perf_counter(), time.process_time())
        self.expired = True
        self.ns["_tk_F"] = True

    def set_progress(self, fraction) -> None:
        # a job's arithmetic may overshoot (1.0000001, or done/total with a stale total): clamped,
        # never a reason to end a job that is otherwise fine; NaN says nothing and is ignored
        fraction = float(fraction)
        if fraction != fraction:
            return
        self.progress = min(1.0, max(0.0, fraction))

    def get_job_id(self):
        return self.job_id


def short_locals(
    job: Optional[CompiledJob], fname: str, point: int, local_vars: Dict[str, Any], code
) -> Dict[str, Any]:
    """The locals of a one-chunk range loop's check (compiler.chunked_for, its point passed
    negated) as the chunked loop has them at its first check: ``_tk_sK`` the offsets range,
    ``_tk_iK`` its iterator past offset 0, ``_tk_cK`` 0.  The check binds none of them (a budget
    run goes on after it); a copy of ``local_vars`` gets them, each in its place in the frame's
    order (a stale binding from an earlier chunked run of the loop: in its place; else where the
    frame's variable order puts it), so that an honest slice's mark and a replay's agree."""
    assert job is not None
    k = job.functions[fname].points[point].loops[-1]
    seq = range(0, len(local_vars["_tk_r%d" % k]), _CHUNK)
    it = iter(seq)
    synth = {"_tk_s%d" % k: seq, "_tk_i%d" % k: it, "_tk_c%d" % k: next(it)}
    missing = [n for n in synth if n not in local_vars]
    if not missing:
        out = dict(local_vars)
        out.update(synth)
        return out
    order = {n: i for i, n in enumerate(code.co_varnames)}
    end = len(order)
    pending = sorted(missing, key=lambda n: order.get(n, end))
    out = {}
    for name, v in local_vars.items():
        while pending and order.get(pending[0], end) < order.get(name, end):
            first = pending.pop(0)
            out[first] = synth[first]
        out[name] = synth.get(name, v)
    for name in pending:
        out[name] = synth[name]
    return out


_BIG = 1 << 62
_length_hint = operator.length_hint


def mark_of(job: Optional[CompiledJob], fname: str, point: int, local_vars: Dict[str, Any]) -> str:
    """A state's mark: the interpreter, the innermost frame's function and resume point and a
    hash of its cheap locals (ints, floats, strs, bools, None, loop positions), as its back-edge
    saw them, with the positions of its open loops: ``"cpython-3.11:work:3:12,4:5f0c..."``.

    Computed once when a slice freezes (its header's ``mark``), and at every back-edge of a
    replay that reaches the target's function and point: equal marks say "this may be the
    state", the payload's hash decides.  Containers are left out (too costly per back-edge); a
    huge int or a long str counts by its size and ends.
    """
    loops = loop_positions(job, fname, point, local_vars)
    return "%s:%s:%d:%s:%d:%s" % (INTERPRETER, fname, point, loops, int_tag(local_vars), locals_hash(local_vars))


def locals_hash(local_vars: Dict[str, Any]) -> str:
    """The last part of a mark (``mark_of``): 16 hex digits of the sha256 of the cheap locals, the
    part a replay computes last (where the function, point, loop positions and int tag agree)."""
    vals = []
    for name, v in local_vars.items():
        t = type(v)
        if t is int:
            if not -_BIG < v < _BIG:  # repr() of a huge int is slow (or refused)
                v = "I%d:%x" % (v.bit_length(), v & 0xFFFFFFFFFFFF)
        elif t is str:
            if len(v) > 64:
                v = "S%d:%s:%s" % (len(v), v[:24], v[-24:])
        elif t is float or t is bool or v is None:
            pass  # repr(float) is exact (the shortest string that reads back the same)
        elif name[:5] == "_tk_i":
            try:
                v = _length_hint(v)
            except Exception:  # an iterator whose length hint fails: its position is left out
                continue
        else:
            continue
        vals.append(name)
        vals.append(v)
    return sha256_hex(repr(vals).encode("utf-8", "surrogatepass"))[:16]


def int_tag(local_vars: Dict[str, Any]) -> int:
    """16 bits of the frame's int locals (in the frame's order): what a replay compares at every
    back-edge of the target's point before it hashes the cheap locals (``mark_of``), which costs
    tens of microseconds. Int hashes are not salted: the same in every process of an interpreter
    (a replay runs on the interpreter that made the state). 16 bits say little about the state."""
    h = 0
    for v in local_vars.values():
        if type(v) is int:
            h = ((h * 1000003) ^ hash(v)) & 0xFFFFFFFF
    return h & 0xFFFF


def loop_positions(job: Optional[CompiledJob], fname: str, point: int, local_vars: Dict[str, Any]) -> str:
    """The positions of the loops open at ``point`` ("12,3"): the part of a mark a replay checks
    first at each back-edge of the target's point (a few dict lookups), before the hash."""
    if job is None:
        return ""
    out = []
    for k in job.functions[fname].points[point].loops:
        try:
            out.append(str(_length_hint(local_vars["_tk_i%d" % k])))
        except Exception:  # no such iterator yet, or no length hint: a position left out
            out.append("?")
    return ",".join(out)


def _namespace(job: CompiledJob, ctl: _Control) -> dict:
    ns: Dict[str, Any] = {}
    iterators.bind(ns)
    held.bind()
    ctl.refs = References(ns, job.class_names, job.modules)
    ns.update(
        {
            "__name__": "__job__",
            "__builtins__": builtins,
            "_tk_itertools": iterators.ITERTOOLS,
            "_tk_F": False,
            "_tk_pause": ctl.pause,
            "_tk_locals": builtins.locals,
            "_tk_iter": builtins.iter,
            "_tk_Suspend": _Suspend,
            "_tk_take": _take,
            "_tk_thaw_iter": lambda desc: iterators.thaw_loop(desc, ns),
            "_tk_range": builtins.range,
            "_tk_len": builtins.len,
            "_tk_next": builtins.next,
            "_tk_never": False,  # a one-chunk loop's check: compiler.chunked_for
            "progress": ctl.set_progress,
            "job_id": ctl.get_job_id,
            "_tk_lambda": ctl.refs.register,
        }
    )
    if "random" in job.modules:  # seeded before the top level runs: deterministic per job
        ns["_tk_random"] = JobRandom(ctl.job_id or 0)
    ctl.ns = ns
    exec(job.code, ns)
    return ns


def _classes(job: CompiledJob, ns: dict) -> Dict[str, type]:
    classes = {name: ns[name] for name in job.class_names if isinstance(ns.get(name), type)}
    classes.update(iterators.SHIMS)  # reserved names: no job class can take them
    classes.update(held.HELD_CLASSES)
    return classes


_stop_requested = False


def request_stop(*_ignored) -> None:
    """Ask the current (or the next) slice to freeze as soon as it can.

    Safe from a signal handler: slicemain installs it for SIGALRM before
    anything else, so an early "freeze now" is not lost (nor fatal).
    """
    global _stop_requested
    _stop_requested = True


def _arm_timer(seconds: Optional[float], ctl: _Control):
    """Set the flag when the slice ends; returns the disarm function."""
    global _stop_requested
    if seconds is None:  # a replay: its budget stops it, never the clock
        return lambda: None
    if seconds <= 0 or _stop_requested:
        _stop_requested = False  # consumed by this slice
        ctl.expire()
        return lambda: None
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGALRM, ctl.expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)

        def disarm():
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

        return disarm
    timer = threading.Timer(seconds, ctl.expire)
    timer.daemon = True
    timer.start()
    return timer.cancel


def _describe_error(exc: BaseException) -> str:
    line, func = None, None
    import traceback  # only when a job fails

    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        if frame.f_code.co_filename == JOB_FILENAME:
            line, func = lineno, frame.f_code.co_name
    where = " (line %d in %s)" % (line, func) if line is not None else ""
    if isinstance(exc, MemoryError):
        where += _memory_limit_words()
    return "%s: %s%s" % (type(exc).__name__, exc, where)


def _memory_limit_words() -> str:
    """A MemoryError's missing half: the limit it hit (the sandbox's RLIMIT_AS, the worker's
    ``--memory``), so the owner knows the job outgrew it rather than a bug in the market."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, OSError, ValueError, AttributeError):
        return ""
    if limit == resource.RLIM_INFINITY or limit <= 0:
        return ""
    return " - the job used all the memory this worker gives a slice (%d MB)" % (limit // (1024 * 1024))


def start(source: str, entry: str, args: list, kwargs: dict, job_id: Optional[int] = None) -> bytes:
    """Validate the job and build its state #0 (nothing of the job runs)."""
    job = compile_job(source, entry)
    args, kwargs = list(args or []), dict(kwargs or {})
    job.check_arguments(args, kwargs)
    state: Dict[str, object] = {
        "kind": "gen" if job.is_generator else "call",
        "args": args,
        "kwargs": kwargs,
        "progress": None,
    }
    if job.is_generator:
        state.update(started=False, resume=None, globals={})
    try:
        payload = codec.encode(state, version=codec.STATE_VERSION)
    except codec.CodecError as exc:
        from .validator import JobRefused

        raise JobRefused([(0, "arguments must be plain data: %s" % exc)]) from None
    header = Header(
        source_hash(source), entry, 0, RUNTIME_VERSION, codec.name_of_version(codec.STATE_VERSION), 0, job_id
    )
    return make_envelope(header, payload)


def _check_state(state, job: CompiledJob) -> None:
    """Refuse a decoded state that this job could not have produced."""

    def bad(why: str) -> NoReturn:
        raise EnvelopeError("state does not fit this job: %s" % why)

    if type(state) is not dict or state.get("kind") not in ("call", "frames", "gen"):
        bad("unknown state kind")
    kind = state["kind"]
    if (kind == "gen") != job.is_generator:
        bad("generator state for a plain job or the reverse")
    if kind == "gen" and type(state.get("started")) is not bool:
        bad("generator flag")
    if kind in ("call", "gen"):
        if type(state.get("args")) is not list or type(state.get("kwargs")) is not dict:
            bad("arguments")
        if not all(type(k) is str for k in state["kwargs"]):
            bad("keyword names")
    if kind in ("frames", "gen"):
        g = state.get("globals")
        if type(g) is not dict or not set(g) <= job.global_names:
            bad("module globals")
    if kind == "frames":
        frames = state.get("frames")
        if type(frames) is not list or not frames:
            bad("no frames")
        for fr in frames:
            if type(fr) is not list or len(fr) != 4:
                bad("frame layout")
            fname, point, local_vars, iters = fr
            info = job.functions.get(fname) if type(fname) is str else None
            if info is None or type(point) is not int or point not in info.points:
                bad("unknown resume point")
            if type(local_vars) is not dict or not set(local_vars) <= (info.user_names | info.temps):
                bad("unknown local variables in %s" % fname)
            loops = info.points[point].loops
            if type(iters) is not dict or set(iters) != set(loops):
                bad("loop positions in %s" % fname)
            for d in iters.values():
                if not iterators.valid(d):
                    bad("loop position")
            for v in local_vars.values():
                if type(v).__name__ == "_tk_held" and not held.valid(v):
                    bad("held value in %s" % fname)
        for fr in frames[1:]:
            if job.functions[fr[0]].points[fr[1]].kind != "call":
                bad("an outer frame is not at a call")
    p = state.get("progress")
    if p is not None and type(p) is not float:
        bad("progress")


def _resume(job: CompiledJob, ns: dict, frames) -> Any:
    value, raised = None, None
    for i, (fname, point, local_vars, iters) in enumerate(frames):
        local_vars = held.unwrap_locals(local_vars)
        k = types.FunctionType(job.continuation_code(fname, point), ns, fname)
        try:
            value = k(local_vars, iters, _Raised(raised) if raised is not None else value)
            raised = None
        except _Suspend as s:
            s.pending = frames[i + 1 :]
            raise
        except Exception as exc:  # delivered to the caller's frame
            raised = exc
    if raised is not None:
        raise raised
    return value


def _freeze_frames(job: CompiledJob, s: _Suspend, ns: dict, name_of=None):
    frames = []
    memo: Dict[int, Any] = {}
    cleaned = []
    for fname, point, local_vars in s.frames:
        info = job.functions[fname]
        pi = info.points[point]
        keep = info.user_names.union(pi.live)
        # sorted: the same frame reached through a thaw or straight on encodes the same bytes
        clean = {k: local_vars[k] for k in sorted(local_vars) if k in keep}
        for k in info.nested.keys() & clean.keys():
            clean[k] = freeze_nested(clean[k])
        if name_of is not None:  # bound methods, iterators, exceptions, matches: held.py
            clean = held.wrap_locals(clean, memo, ns, name_of)
        cleaned.append(clean)
    if name_of is not None:
        held.refresh_pending(s.pending, memo, ns, name_of)
    for (fname, point, local_vars), clean in zip(s.frames, cleaned):
        pi = job.functions[fname].points[point]
        iters = {k: iterators.freeze_loop(local_vars["_tk_s%d" % k], local_vars["_tk_i%d" % k], ns) for k in pi.loops}
        frames.append([fname, point, clean, iters])
    return frames + list(s.pending)


def freeze_nested(fn) -> Any:
    """A nested function held in a frozen frame: its defaults ``(defaults, kwdefaults)``.

    The rest of it is its def (the thaw runs it again in the resumed frame, closing over that
    frame's variables: compiler._ContinuationBuilder.remake); the validator lets the object live
    only in the frame whose def made it."""
    return (fn.__defaults__, fn.__kwdefaults__)


def run_slice(
    envelope: bytes, source: str, seconds: float, *, budget: Optional[int] = None, job_id=None
) -> SliceOutcome:
    """Thaw the state in ``envelope``, run it for ``seconds``, freeze it again.

    ``budget`` forces a suspension after that many back-edges (loop
    iterations and job-function entries; for generator jobs: yields).  A
    tight call-free loop over range() counts one back-edge per chunk of 256
    iterations (the compiler checks it once per chunk: see chunked_for), so
    the budget and the timer can only stop it between chunks.
    Raises EnvelopeError (nothing of the job ran) or JobRefused.
    """
    return _run(envelope, source, seconds, budget, job_id, _Control)


def _run(
    envelope: bytes, source: str, seconds: Optional[float], budget: Optional[int], job_id, control, replay=None
) -> SliceOutcome:
    """run_slice's work with a control class of the caller's (the replay's checks each back-edge's
    mark); ``seconds`` None: no timer (the budget stops it); ``replay``: a replay's compile
    (compiler.ReplayMode), never an honest slice's."""
    t0 = time.perf_counter()
    header, payload = open_envelope(envelope, source)
    job = compile_job(source, header.entry, replay)
    if job_id is None:
        job_id = header.job_id
    ctl = control({}, budget if budget is None else max(1, int(budget)), job_id, None)
    ctl.job = job
    stats = {
        "wall_seconds": 0.0,
        "suspensions": 0,
        "back_edges": None,
        "frames": 0,
        "resumed_frames": 0,
        "stop_latency": None,
        "stop_latency_cpu": None,
    }

    def outcome(env=None, finished=False, result=None, error=None):
        stats["wall_seconds"] = time.perf_counter() - t0
        if budget is not None:
            stats["back_edges"] = ctl.back_edges
        return SliceOutcome(env, finished, result, error, ctl.progress, stats)

    try:
        ns = _namespace(job, ctl)
    except Exception as exc:
        return outcome(finished=True, error=_describe_error(exc))
    classes = ctl.classes = _classes(job, ns)
    try:
        # the next state is written in the codec version of this one: a replay of the slice
        # writes the same version, so the payloads' hashes stay comparable
        ctl.codec_version = codec.version_of(payload)
        state = codec.decode(payload, classes, resolve=ctl.refs.resolve)
    except codec.CodecError as exc:
        raise EnvelopeError("state payload cannot be decoded: %s" % exc) from None
    _check_state(state, job)
    ctl.progress = state.get("progress")
    ns.update(state.get("globals", {}))
    if "random" in state:
        if not isinstance(ns.get("_tk_random"), JobRandom):
            raise EnvelopeError("state does not fit this job: a generator state for a job without random")
        try:
            ns["_tk_random"].thaw(state["random"])
        except (TypeError, ValueError, OverflowError) as exc:
            raise EnvelopeError("state does not fit this job: generator state (%s)" % exc) from None
    ctl.atomic = job.is_generator  # generator jobs stop at their yields only
    if budget is not None:
        ns["_tk_F"] = True  # every back-edge calls pause(), which counts
        ctl.arm(ns)
    disarm = _arm_timer(seconds, ctl)
    new_state = None
    mark: Optional[str] = None
    try:
        try:
            if state["kind"] == "call":
                value = ns[job.entry](*state["args"], **state["kwargs"])
            elif state["kind"] == "frames":
                stats["resumed_frames"] = len(state["frames"])
                value = _resume(job, ns, state["frames"])
            else:
                value, new_state = _run_generator(job, ns, ctl, state, budget)
        finally:
            disarm()
            ns["_tk_F"] = False
    except _Suspend as s:
        if ctl.expired_at is not None:
            # from the timer firing to the job standing still (freezing comes after);
            # in CPU time too, which a loaded machine's scheduling does not inflate
            stats["stop_latency"] = time.perf_counter() - ctl.expired_at[0]
            stats["stop_latency_cpu"] = time.process_time() - ctl.expired_at[1]
        try:
            mark = mark_of(job, *s.frames[0])
            new_state = {"kind": "frames", "frames": _freeze_frames(job, s, ns, ctl.refs.name_of)}
        except Exception as exc:  # e.g. a loop position that cannot be read
            return outcome(finished=True, error="cannot freeze the job's state: %s: %s" % (type(exc).__name__, exc))
    except Exception as exc:
        return outcome(finished=True, error=_describe_error(exc))
    if new_state is None:
        try:
            result = codec.encode(value, classes)
        except codec.CodecError as exc:
            return outcome(finished=True, error="cannot encode the job's result: %s" % exc)
        return outcome(finished=True, result=result)
    if mark is None:  # a generator job: its yields are its only stops, each checked whole by a replay
        mark = "%s:%s:yield" % (INTERPRETER, job.entry)
    stats["suspensions"] = 1
    stats["frames"] = len(new_state.get("frames", ()))
    try:
        payload = _state_payload(job, ns, ctl, classes, new_state)
    except codec.CodecError as exc:
        return outcome(finished=True, error="cannot freeze the job's state: %s" % exc)
    except Exception as exc:
        return outcome(finished=True, error="cannot freeze the job's state: %s: %s" % (type(exc).__name__, exc))
    # bound to its lease: the job, the state it was made from, the next sequence number; and the
    # interpreter that froze it, which a replay must use
    # the mark: where it stopped, for a replay to find it (docs/trust.md)
    header = header._replace(
        seq=header.seq + 1,
        job_id=job_id,
        parent=digest(envelope),
        interpreter=INTERPRETER,
        mark=mark,
        codec=codec.name_of_version(ctl.codec_version),
    )
    return outcome(env=make_envelope(header, payload))


def _state_payload(job: CompiledJob, ns: dict, ctl: _Control, classes: Dict[str, type], new_state) -> bytes:
    """The state's payload: ``new_state`` (frames or generator) with the module's mutable
    globals, the job's random generator and its progress, encoded."""
    new_state["globals"] = {
        k: ns[k]
        for k in sorted(job.global_names)
        if k in ns and (isinstance(ns[k], _MUTABLE) or type(ns[k]).__name__ in classes)
    }
    if isinstance(ns.get("_tk_random"), JobRandom):
        new_state["random"] = ns["_tk_random"].freeze()
    new_state["progress"] = ctl.progress
    iterators.prepare()
    return codec.encode(new_state, classes, name_of=ctl.refs.name_of, version=ctl.codec_version)


def _gen_state(state, checkpoint) -> Dict[str, Any]:
    return {"kind": "gen", "args": state["args"], "kwargs": state["kwargs"], "started": True, "resume": checkpoint}


def _run_generator(job: CompiledJob, ns: dict, ctl: _Control, state, budget):
    kwargs = dict(state["kwargs"])
    if state["started"]:
        kwargs["resume"] = state["resume"]
    gen = ns[job.entry](*state["args"], **kwargs)
    yields = 0
    while True:
        try:
            checkpoint = next(gen)
        except StopIteration as stop:
            return stop.value, None
        yields += 1
        if (
            ctl.expired
            or (budget is not None and yields >= budget)
            or (ctl.at_yield is not None and ctl.at_yield(ns, state, checkpoint, yields))
        ):
            if budget is not None:
                ctl.back_edges = yields
            return None, _gen_state(state, checkpoint)
