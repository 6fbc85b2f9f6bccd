"""Verification by replay: run a job from its parent state S in budget mode until it reaches the
state a worker claimed (S'), or the cap.

A slice is a deterministic function of S and the number of back-edges it ran, so any honest S'
is reachable from S.  The verifier is never given S': it has the hex sha256 of S'`s payload and
S'`s header ``mark`` (:func:`market.tasklet.runner.mark_of`).  At every back-edge the replay
compares the function and point with the mark's; only there it reads the frame's locals and
compares the rest of the mark, cheapest first (16 bits of the ints, the loop positions, then the
hash of the cheap locals); on equality it freezes (the normal freeze path) and compares the
payload's sha256 with the target.  Equal: matched.  Not equal (a false candidate: the same function at the same
point with the same cheap locals, in another call or with other containers): it thaws that state
and goes on, at most ``max_candidates`` times.

Honest slices count nothing: only replays run with the flag always set, on a compile of their
own (compiler.ReplayMode, cached apart from the honest one): every check counts down a module
global inline and calls the control only at the cap or at the target's point where the loops'
positions equal the mark's, so the control's comparing runs at few back-edges (a tight ``while``
loop has no positions: there it still runs at every back-edge; docs/benchmarks.md, 2026-12-05).
A generator job is checked after every yield, in place (the honest compile).

The verifier sends what it reached (the match, or the state at the cap, or the result if the job
finished first); the server compares hashes, never the verifier's word.
"""

from __future__ import annotations

import collections
import operator
import sys

from .compiler import COUNT_ONLY
from .envelope import INTERPRETER, digest, make_envelope, open_envelope, payload_sha256, sha256_hex
from .runner import (
    _Control,
    _gen_state,
    _run,
    _state_payload,
    _Suspend,
    locals_hash,
    loop_positions,
    short_locals,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import NamedTuple, Optional

__all__ = ["ReplayOutcome", "replay_slice", "replay_result", "mark_interpreter", "result_sha256", "MAX_CANDIDATES"]

#: false candidates (mark equal, payload not) a replay freezes and thaws before it gives up
MAX_CANDIDATES = 2000

if TYPE_CHECKING:

    class ReplayOutcome(NamedTuple):
        matched: bool
        steps: int
        envelope: Optional[bytes]
        finished: bool
        result: Optional[bytes]
        error: Optional[str]

else:
    ReplayOutcome = collections.namedtuple("ReplayOutcome", "matched steps envelope finished result error")
ReplayOutcome.__doc__ = """What a replay reached: matched (the target's payload hash), steps (back-edges run;
yields for a generator job), envelope (the matching state, or the state at the cap), finished (the job
ended first), result (its codec bytes), error (the job failed, or a state could not be frozen)."""


def mark_interpreter(mark: str) -> str:
    """The interpreter a mark was computed on ("cpython-3.11"): a replay must run on it."""
    return mark.split(":", 1)[0]


class _ReplayControl(_Control):
    """Counts every back-edge; suspends at the cap or where the innermost frame's mark is the target's."""

    target_mark: Optional[str] = None
    target_fname: Optional[str] = None
    target_point = -1
    target_loops = ""
    target_tag = -1
    target_sha: str = ""
    gen_match = False

    def arm(self, ns: dict) -> None:
        """Install the replay's back-edge check: a closure over the target (no attribute lookups).

        Where a replay's time went (a tight ``while`` loop at ~10x its slice, profiled): building
        the frame's locals at every back-edge (``_tk_locals()``), the method's attribute lookups,
        and ``loop_positions`` and ``int_tag`` as calls at every back-edge of the target's point.
        So the budget mode's ``_Control.arm`` (``_tk_locals`` builds nothing; the real one is put
        back before suspending) is kept, and this check reads the frame's locals
        (``sys._getframe(1).f_locals``) only at the target's function and point; there it folds
        the int tag inline, reads the loop positions only if the point has loops (or the target
        names some) and hashes the cheap locals (``locals_hash``, the mark's last part) only
        where all the rest of the mark is equal.  A dict it looked at in vain is emptied: the
        next look builds it in the frame's variable order, the order of the honest slice's one
        ``locals()`` (the mark hashes the locals in dict order).
        """
        if self.atomic:  # a generator job: its yields are checked (check_yield), not its back-edges
            return super().arm(ns)
        job = self.job
        assert job is not None
        real_locals = ns["_tk_locals"]
        budget = self.budget or 1
        t_fname, t_point, t_loops, t_tag, t_mark = (
            self.target_fname,
            self.target_point,
            self.target_loops,
            self.target_tag,
            self.target_mark,
        )
        t_hash = (t_mark or "").rsplit(":", 1)[-1]
        if t_mark != "%s:%s:%d:%s:%d:%s" % (INTERPRETER, t_fname, t_point, t_loops, t_tag, t_hash):
            t_point = -1  # no mark_of() could equal it (another interpreter, or not a mark): the cap only
        info = job.functions.get(t_fname) if t_fname is not None else None
        t_point_info = info.points.get(t_point) if info is not None else None
        check_loops = bool(t_loops) or (t_point_info is not None and bool(t_point_info.loops))
        getframe, _int, _hash, _type = sys._getframe, int, hash, type
        count = self._back_edges

        t_short = -t_point  # the target's point as a one-chunk range loop's check passes it

        def check(fname, point, frame):
            """The frame at the target's function and point: its locals if its mark is the
            target's (as the freeze wants them), else None."""
            frame_vars = local_vars = frame.f_locals
            if point < 0:
                local_vars = short_locals(job, fname, -point, frame_vars, frame.f_code)
            h = 0  # int_tag(local_vars), inline (its low 16 bits need only the inputs' low 16 bits)
            for v in local_vars.values():
                if _type(v) is _int:
                    h = ((h * 1000003) ^ _hash(v)) & 0xFFFF
            if (
                h != t_tag
                or (check_loops and loop_positions(job, fname, abs(point), local_vars) != t_loops)
                or locals_hash(local_vars) != t_hash
            ):
                # emptied, so the next look builds it afresh in the frame's variable order, as
                # the honest slice's one locals() did (the mark hashes the locals in dict order)
                frame_vars.clear()
                return None  # (the rest of the mark, its interpreter, function, point, loops, tag: equal)
            return local_vars

        self.stop = stop = self._stopper(ns, real_locals, job)

        def pause(fname, point, _unused):
            nonlocal count
            count += 1
            if count < budget:
                if (point != t_point and point != t_short) or fname != t_fname:
                    return
                local_vars = check(fname, point, getframe(1))
                if local_vars is None:
                    return
                stop(fname, abs(point), local_vars)
            stop(fname, point, None)

        if job.replay is not None:  # a replay's compile: its checks count inline (compiler._replay_checks)
            pause = self._inline_pause(ns, budget - count, check)
        else:
            self._edges = lambda: count
        ns["_tk_pause"] = pause
        ns["_tk_locals"] = globals  # a builtin that builds nothing: pause() reads the frame only where it must

    @staticmethod
    def _stopper(ns: dict, real_locals, job):
        """``stop(fname, point, local_vars)``: suspend the job there; ``local_vars`` None: the
        caller's caller's frame's (the check's frame), made as a one-chunk loop's check has
        them where its point is negative (runner.short_locals)."""
        getframe = sys._getframe

        def stop(fname, point, local_vars):
            if local_vars is None:
                frame = getframe(2)
                local_vars = frame.f_locals
                if point < 0:
                    point = -point
                    local_vars = short_locals(job, fname, point, local_vars, frame.f_code)
            ns["_tk_locals"] = real_locals
            s = _Suspend()
            s.frames.append((fname, point, local_vars))
            raise s

        return stop

    def _inline_pause(self, ns: dict, left: int, check):
        """The pause of a replay's compile (compiler._replay_checks): the checks count down
        ``_tk_left`` themselves and call it where the count is out (``at_target`` 0: suspend, the
        cap) or at the target's point with its loop positions equal (1: compare the rest of the mark)."""
        ns["_tk_left"] = left
        ns["_tk_lh"] = operator.length_hint
        ns["_tk_Exception"] = Exception
        budget = self.budget or 1
        self._edges = lambda: budget - ns["_tk_left"]
        getframe, stop = sys._getframe, self.stop
        t_fname, t_point = self.target_fname, self.target_point
        t_short = -t_point

        def pause(fname, point, at_target):
            if at_target:  # (the compile calls it so only at the target's point, with count left)
                if (point != t_point and point != t_short) or fname != t_fname:
                    return
                local_vars = check(fname, point, getframe(1))
                if local_vars is None:
                    return
                stop(fname, t_point, local_vars)
            stop(fname, point, None)

        return pause

    def check_yield(self, ns, state, checkpoint, yields) -> bool:
        """A generator job's state after a yield: encoded and compared in place."""
        assert self.job is not None
        payload = _state_payload(self.job, ns, self, self.classes, _gen_state(state, checkpoint))
        self.gen_match = sha256_hex(payload) == self.target_sha
        return self.gen_match


def _control(target_mark, target_sha):
    def make(*args):
        ctl = _ReplayControl(*args)
        ctl.target_mark, ctl.target_sha = target_mark, target_sha
        parts = (target_mark or "").split(":")
        if len(parts) == 6 and _number(parts[2]) and _number(parts[4]):  # interpreter:function:point:loops:tag:hash
            ctl.target_fname, ctl.target_point, ctl.target_loops = parts[1], int(parts[2]), parts[3]
            ctl.target_tag = int(parts[4])
        if target_sha:
            ctl.at_yield = ctl.check_yield
        return ctl

    return make


def _mode(target_mark):
    """The replay's compile (compiler.ReplayMode) for ``target_mark``: its function, point and
    numeric loop positions; count only where no back-edge of this interpreter could have it."""
    parts = (target_mark or "").split(":")
    if len(parts) != 6 or parts[0] != INTERPRETER or not _number(parts[2]) or not _number(parts[4]):
        return COUNT_ONLY
    if target_mark != "%s:%s:%d:%s:%d:%s" % (INTERPRETER, parts[1], int(parts[2]), parts[3], int(parts[4]), parts[5]):
        return COUNT_ONLY  # as _ReplayControl.arm: no mark_of() writes it so ("007", "+1")
    positions = tuple((i, int(p)) for i, p in enumerate(parts[3].split(",")) if parts[3] and _number(p))
    return (parts[1], int(parts[2]), positions)


def _number(text: str) -> bool:
    """ASCII digits only: str.isdigit() takes "²", which int() refuses (a forged mark's ValueError)."""
    return text.isascii() and text.isdigit()


def _rebind(state: bytes, reached: bytes, source: str, job_id) -> bytes:
    """``reached`` as the child of ``state`` (one slice from it), whatever false candidates the
    replay thawed in between: the server binds a check-in to its lease's parent and sequence."""
    parent, _ = open_envelope(state, source)
    header, payload = open_envelope(reached, source)
    if job_id is None:
        job_id = parent.job_id
    return make_envelope(
        parent._replace(
            seq=parent.seq + 1, job_id=job_id, parent=digest(state), interpreter=INTERPRETER, mark=header.mark
        ),
        payload,
    )


def replay_slice(
    envelope: bytes,
    source: str,
    *,
    target_payload_sha256: str,
    target_mark: str,
    max_steps: int,
    job_id=None,
    max_candidates: int = MAX_CANDIDATES,
) -> ReplayOutcome:
    """Run from ``envelope`` (S) until the state whose payload hash is ``target_payload_sha256``
    (at a back-edge whose mark is ``target_mark``), at most ``max_steps`` back-edges in all.

    Raises EnvelopeError / JobRefused as :func:`run_slice` does (nothing of the job ran)."""
    target = str(target_payload_sha256).lower()
    mode = _mode(target_mark)
    current, steps, candidates = envelope, 0, 0
    max_steps = max(1, int(max_steps))
    while True:
        out = _run(current, source, None, max_steps - steps, job_id, _control(target_mark, target), mode)
        steps += int(out.stats["back_edges"] or 0)
        if out.finished:
            return ReplayOutcome(False, steps, None, True, out.result, out.error)
        assert out.envelope is not None
        if payload_sha256(out.envelope) == target:
            return ReplayOutcome(True, steps, _rebind(envelope, out.envelope, source, job_id), False, None, None)
        candidates += 1
        if steps >= max_steps or candidates > max_candidates:
            return ReplayOutcome(False, steps, _rebind(envelope, out.envelope, source, job_id), False, None, None)
        current = out.envelope  # a false candidate: go on from it


def replay_result(envelope: bytes, source: str, *, max_steps: int, job_id=None) -> ReplayOutcome:
    """Run from ``envelope`` to the job's end, at most ``max_steps`` back-edges: ``result`` holds
    the encoded return value (``matched`` is False: the server compares)."""
    out = _run(envelope, source, None, max(1, int(max_steps)), job_id, _control(None, ""), COUNT_ONLY)
    steps = int(out.stats["back_edges"] or 0)
    if out.finished:
        return ReplayOutcome(False, steps, None, True, out.result, out.error)
    env = _rebind(envelope, out.envelope, source, job_id) if out.envelope is not None else None
    return ReplayOutcome(False, steps, env, False, None, None)


def result_sha256(result: bytes) -> str:
    """Hex sha256 of a result's codec bytes: what the server compares."""
    return sha256_hex(result)
