"""Verification by replay (market.tasklet.replay): an honest slice S -> S' is found again from S
in budget mode; forged states are not; a final result replays equal; states frozen on PyPy replay
on PyPy (and only there)."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market import tasklet
from market.tasklet import envelope, replay, slicemain
from tests.jobs.support import source
from tests.test_tasklet_portability import PYPY, REPO, interpreter_or_skip
from tests.test_tasklet_random_programs import program

# A job touching what replay must cover: sets of strs and tuples, dict order, the job's own random
# generator, loop iterators frozen by position (enumerate, zip, dict views, itertools), functions
# held by reference, floats.
MIXED = """
import itertools
import operator
import random

SQUARE = lambda x: x * x  # noqa: E731


def weigh(word):
    t = 0
    for c in word:
        t += ord(c)
    return t % 17


def mixed(n):
    seen = set()
    pairs = set()
    counts = {}
    f = max
    g = SQUARE
    op = operator.add
    total = 0.0
    words = ["w%d" % (i * 7 % 13) for i in range(n)]
    for i, (a, b) in enumerate(zip(words, reversed(words))):
        seen.add(a)
        pairs.add((a, i % 5))
        counts[b] = op(counts.get(b, 0), f(weigh(a), g(i % 3)))
        total += random.random() / (i + 1)
        for j, c in zip(range(3), itertools.cycle("xyz")):
            counts[c] = counts.get(c, 0) + j
    order = []
    for w in seen:
        order.append(w)
    for k, v in counts.items():
        total += v * 0.5
    return order, sorted(pairs), list(counts), total
"""


def target_of(state: bytes):
    header, sha = envelope.inspect(state)
    return sha, header.mark


def honest(state: bytes, src: str, n: int):
    out = tasklet.run_slice(state, src, 60.0, budget=n)
    return out


def check_matched(s: bytes, src: str, n: int, margin: int = 50):
    """S' = S + n back-edges, then replay finds it: matched, byte-equal payload, steps <= n."""
    out = honest(s, src, n)
    if out.finished:
        rr = tasklet.replay_result(s, src, max_steps=n + margin)
        assert rr.finished and rr.result == out.result and rr.error == out.error
        return None
    sha, mark = target_of(out.envelope)
    assert mark is not None and mark.startswith(envelope.INTERPRETER + ":")
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=n + margin)
    assert r.matched, (n, r)
    assert r.steps <= n  # an equal state earlier is the same state
    assert r.envelope == out.envelope  # same payload, bound to S like the honest one
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program(), st.integers(0, 50), st.integers(1, 30), st.integers(1, 60))
def test_honest_slices_of_random_programs_are_matched(src, seed, first, n):
    s = tasklet.start(src, "job", [seed], {}, job_id=3)
    out = honest(s, src, first)  # S: somewhere in the job
    if out.finished:
        return
    check_matched(out.envelope, src, n)


@pytest.mark.parametrize(
    "name,entry,args",
    [
        ("quicksort", "sort_copy", [[9, 4, 7, 1, 8, 2, 6, 3, 5, 0] * 5]),
        ("shapes", "build", [[[1, 2], [3, 4], [1, 2], [0, 5]] * 4]),
        ("try_loops", "run", [[1, 2, 3, 4, 5, 6, 7, 8] * 3]),
        ("ackermann", "ack_table", [2, 3]),
        ("nested_loops", "mix", [["alpha", "beta", "gamma", "delta", "beta"] * 3, 40]),
        ("gen_job", "partial_sums", [300]),
    ],
)
def test_honest_slices_of_the_job_modules_are_matched_at_every_length(name, entry, args):
    src = source(name)
    s = tasklet.start(src, entry, args, {}, job_id=11)
    rnd = random.Random(name)
    for _ in range(12):
        n = rnd.randint(1, 40)
        out = check_matched(s, src, n)
        if out is None:
            break
        s = out.envelope


def _first_entry(src):
    import ast

    fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef))
    return fn.name, [3] * len(fn.args.args)


def test_a_job_with_sets_random_iterators_and_references_is_matched():
    s = tasklet.start(MIXED, "mixed", [60], {}, job_id=21)
    for n in (1, 2, 7, 40, 13, 100, 3):
        out = check_matched(s, MIXED, n)
        if out is None:
            break
        s = out.envelope


def test_a_time_stopped_slice_is_matched_with_its_own_work():
    """An honest slice stopped by the clock (counting nothing) is found; its work in steps is
    what a budget run of that many steps gives, byte for byte."""
    src = source("bubble_sort")
    entry = _first_entry(src)[0]
    s = tasklet.start(src, entry, [list(range(3000, 0, -1))], {}, job_id=5)
    out = tasklet.run_slice(s, src, 0.1)
    assert not out.finished and out.stats["back_edges"] is None  # the honest slice counted nothing
    sha, mark = target_of(out.envelope)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=10**7)
    assert r.matched and r.steps > 10
    again = tasklet.run_slice(s, src, 60.0, budget=r.steps)
    assert envelope.payload_sha256(again.envelope) == sha


# ``early`` comes before ``i`` among the frame's variables but is bound only at the third pass
LATE_BOUND = """
def late(n):
    if n < 0:
        early = 0
    i = 0
    while i < n:
        i += 1
        if i == 3:
            early = i
    return early
"""


def test_a_time_stopped_slice_is_matched_where_a_local_was_bound_late():
    """The mark hashes the innermost frame's locals in their dict order. The honest slice builds
    that dict once, when the clock stops it (the frame's variable order); a replay that read the
    locals at every back-edge kept the order they were first bound in (``early`` last) and never
    found the honest state."""
    s = tasklet.start(LATE_BOUND, "late", [3 * 10**6], {}, job_id=6)
    out = tasklet.run_slice(s, LATE_BOUND, 0.02)
    assert not out.finished and out.stats["back_edges"] is None
    sha, mark = target_of(out.envelope)
    r = tasklet.replay_slice(s, LATE_BOUND, target_payload_sha256=sha, target_mark=mark, max_steps=4 * 10**6)
    assert r.matched and r.steps > 3
    assert tasklet.run_slice(s, LATE_BOUND, 60.0, budget=r.steps).envelope == out.envelope


def forged_case(src, entry, args, n):
    s = tasklet.start(src, entry, args, {}, job_id=8)
    s = honest(s, src, 5).envelope
    real = honest(s, src, n).envelope
    return s, real


@pytest.mark.parametrize("delta", [-3, -1, 1, 3])
def test_a_state_some_steps_off_under_the_claimed_header_is_not_matched(delta):
    src = MIXED
    s, real = forged_case(src, "mixed", [80], 30)
    off = honest(s, src, 30 + delta).envelope
    _, mark = target_of(real)
    sha_off, _ = target_of(off)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha_off, target_mark=mark, max_steps=40)
    assert not r.matched and r.steps == 40 and not r.finished
    assert envelope.payload_sha256(r.envelope) != sha_off


def test_a_made_up_payload_under_a_correct_header_is_not_matched():
    src = MIXED
    s, real = forged_case(src, "mixed", [80], 30)
    _, mark = target_of(real)
    r = tasklet.replay_slice(s, src, target_payload_sha256="ab" * 32, target_mark=mark, max_steps=60)
    assert not r.matched and r.steps == 60


def test_another_jobs_state_of_the_same_module_is_not_matched():
    src = MIXED
    s, _ = forged_case(src, "mixed", [80], 30)
    _, other = forged_case(src, "mixed", [81], 30)
    sha, mark = target_of(other)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=60)
    assert not r.matched


def test_the_state_leased_back_unchanged_is_not_matched():
    src = MIXED
    s, _ = forged_case(src, "mixed", [80], 30)
    sha = envelope.payload_sha256(s)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark="cpython-3.11:mixed:1::0", max_steps=30)
    assert not r.matched


def test_false_candidates_are_bounded():
    """A helper called again and again with the same cheap locals has the same mark each call:
    each such back-edge is a candidate (frozen, compared, thawed); their number is capped."""
    src = """
def helper(xs):
    t = 0
    for x in xs:
        t += x
    return t


def job(n):
    acc = []
    for i in range(n):
        acc.append(helper([1, 2, 3]))
    return len(acc)
"""
    s = tasklet.start(src, "job", [500], {}, job_id=1)
    real = honest(s, src, 900).envelope
    sha, mark = target_of(real)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=1000)
    assert r.matched and r.steps == 900
    r = replay.replay_slice(
        s, src, target_payload_sha256="cd" * 32, target_mark=mark, max_steps=1000, max_candidates=10
    )
    assert not r.matched and r.steps < 1000


def test_the_final_result_replays_equal():
    src = MIXED
    s = tasklet.start(src, "mixed", [50], {}, job_id=4)
    s = honest(s, src, 17).envelope
    out = tasklet.run_slice(s, src, 60.0)
    assert out.finished and out.result is not None
    rr = tasklet.replay_result(s, src, max_steps=10**6)
    assert rr.finished and rr.result == out.result
    assert replay.result_sha256(rr.result) == replay.result_sha256(out.result)
    short = tasklet.replay_result(s, src, max_steps=3)  # the cap: the state where it stopped
    assert not short.finished and short.envelope is not None and short.steps == 3


def test_a_forged_result_differs_from_the_replayed_one():
    src = source("quicksort")
    s = tasklet.start(src, "sort_copy", [[3, 1, 2]], {}, job_id=4)
    rr = tasklet.replay_result(s, src, max_steps=10**5)
    honest_result = tasklet.run_slice(s, src, 60.0).result
    assert rr.result == honest_result
    value = tasklet.decode_result(honest_result)
    forged = tasklet.codec.encode(value[:-1] + [value[-1] + 1] if isinstance(value, list) else (value, 1))
    assert replay.result_sha256(rr.result) != replay.result_sha256(forged)


def run_in(python, request, timeout=120):
    proc = subprocess.run(
        [python, "-m", "market.tasklet.slicemain"],
        input=request,
        capture_output=True,
        timeout=timeout,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode in (0, 2), proc.stderr.decode()
    return slicemain.decode_response(proc.stdout)


def test_replay_through_slicemain_in_a_fresh_process():
    s = tasklet.start(MIXED, "mixed", [70], {}, job_id=9)
    real = run_in(sys.executable, slicemain.encode_request(s, MIXED, 60.0, 55, 9))
    sha, mark = target_of(real.envelope)
    req = slicemain.encode_replay_request(s, MIXED, {"target": sha, "mark": mark, "steps": 80}, 9)
    out = run_in(sys.executable, req)
    assert out.stats == {"replay": True, "matched": True, "steps": 55}
    assert out.envelope == real.envelope
    done = run_in(sys.executable, slicemain.encode_replay_request(s, MIXED, {"result": True, "steps": 10**6}, 9))
    # the honest run in a process of its own, with the worker's PYTHONHASHSEED=0 (this test process
    # has a random one: its iteration of a set of strs may differ, hence its result)
    assert done.finished and done.result == run_in(sys.executable, slicemain.encode_request(s, MIXED, 60.0)).result


def test_a_state_frozen_on_pypy_replays_on_pypy_and_not_on_cpython():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    s = tasklet.start(MIXED, "mixed", [70], {}, job_id=9)
    s = run_in(pypy, slicemain.encode_request(s, MIXED, 60.0, 12, 9)).envelope
    real = run_in(pypy, slicemain.encode_request(s, MIXED, 60.0, 45, 9))
    sha, mark = target_of(real.envelope)
    assert replay.mark_interpreter(mark).startswith("pypy-3.")
    out = run_in(pypy, slicemain.encode_replay_request(s, MIXED, {"target": sha, "mark": mark, "steps": 60}, 9))
    assert out.stats["matched"] and out.stats["steps"] == 45 and out.envelope == real.envelope
    # on CPython no back-edge has a PyPy mark: never matched (the worker refuses such a lease first)
    r = tasklet.replay_slice(s, MIXED, target_payload_sha256=sha, target_mark=mark, max_steps=60)
    assert not r.matched


def test_mark_is_optional_in_the_header_and_absent_from_state_zero():
    s = tasklet.start(MIXED, "mixed", [5], {})
    assert tasklet.read_header(s).mark is None
    assert b'"mark"' not in s
    nxt = honest(s, MIXED, 3).envelope
    interp, fname, point, loops, tag, digest = tasklet.read_header(nxt).mark.split(":")
    assert interp == envelope.INTERPRETER and fname in ("mixed", "weigh") and int(point) >= 0
    assert 0 <= int(tag) < 2**16 and len(digest) == 16


def test_honest_slices_do_not_count_back_edges():
    """Only a replay's control counts: an honest slice's pause() is never called before its flag."""
    src = source("tight")
    s = tasklet.start(src, "tight", [20000, 3], {})
    out = tasklet.run_slice(s, src, 60.0)
    assert out.stats["back_edges"] is None


def corpus_cases():
    from tests.corpus import PENDING, harness

    out = []
    for path in harness.modules():
        src = path.read_text()
        entry, args = harness.declared_cases(src)[0]
        if harness.refusal(src, entry) is None and "%s:%s" % (path.stem, entry) not in PENDING:
            out.append(pytest.param(src, entry, args, id="%s:%s" % (path.stem, entry)))
    return out


@pytest.mark.parametrize("src,entry,args", corpus_cases())
def test_honest_slices_of_the_corpus_are_matched(src, entry, args):
    """The real-world-style job modules (tests/corpus): slices of random length, each found again
    by replay from its parent, the result by replay_result."""
    s = tasklet.start(src, entry, args, {}, job_id=31)
    rnd = random.Random(entry)
    for _ in range(15):
        out = check_matched(s, src, rnd.randint(1, 300))
        if out is None:
            break
        s = out.envelope


def test_equal_sets_of_tuples_encode_equally_whatever_their_history():
    """A set rebuilt by a thaw iterates in another order than the same set never frozen; its
    bytes must not (regression: a replay through a false candidate missed an honest state whose
    set of tuples was written in iteration order, under some hash seeds)."""
    grown = set()
    for i in range(200):
        grown.add(("w%d" % i, i % 7))
    for i in range(0, 200, 3):
        grown.discard(("w%d" % i, i % 7))
    rebuilt = set(sorted(grown, reverse=True))
    assert tasklet.codec.encode(grown) == tasklet.codec.encode(rebuilt)
    mixed = {1, "a", 2.5, b"x", (1, "b")}
    assert tasklet.codec.encode(mixed) == tasklet.codec.encode(set(reversed(list(mixed))))


@pytest.mark.parametrize("seed", ["2", "8"])
def test_the_mixed_job_is_matched_under_the_hash_seeds_that_found_the_set_order_bug(seed):
    code = (
        "import sys; sys.path.insert(0, %r)\n"
        "from tests.test_tasklet_replay import test_a_job_with_sets_random_iterators_and_references_is_matched as t\n"
        "t()\n" % str(REPO)
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": seed},
        cwd=str(REPO),
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]


# a call-free range loop of one chunk (its check passes the point negated: compiler.chunked_for)
# inside loops a clock can stop: n-body's and matmul's shape
ONE_CHUNK = """
def dots(n, rounds):
    a = [[(i * j) % 7 + 1.0 for j in range(n)] for i in range(n)]
    total = 0.0
    for r in range(rounds):
        for i in range(n):
            for j in range(n):
                s = 0.0
                for k in range(n):
                    s += a[i][k] * a[k][j]
                total += s
    return total
"""


def test_time_stopped_slices_around_one_chunk_loops_are_matched():
    """A replay counts every check, so it ran the one-chunk loop's check (which bound the chunked
    loop's temporaries) where an honest slice ran none: the mark then held locals the honest one
    lacked and no state after such a loop was ever found (n-body and matmul unmatched, every time)."""
    s = tasklet.start(ONE_CHUNK, "dots", [40, 400], {}, job_id=7)
    s = tasklet.run_slice(s, ONE_CHUNK, 0.01).envelope
    points = set()
    for seconds in (0.003, 0.007, 0.011, 0.017, 0.023, 0.031):
        out = tasklet.run_slice(s, ONE_CHUNK, seconds)
        assert not out.finished and out.stats["back_edges"] is None
        sha, mark = target_of(out.envelope)
        points.add(mark.split(":")[2])
        r = tasklet.replay_slice(s, ONE_CHUNK, target_payload_sha256=sha, target_mark=mark, max_steps=10**7)
        assert r.matched, (seconds, mark, r.steps)
        assert tasklet.run_slice(s, ONE_CHUNK, 60.0, budget=r.steps).envelope == out.envelope
        s = out.envelope
    assert points - {"0"}


def test_budget_stops_at_a_one_chunk_loop_are_matched_and_resume_equal():
    """Budget stops at every kind of check, the one-chunk loop's among them (its point in the mark
    is the chunked loop's); each found by replay, and the job's result is the native one."""
    s = tasklet.start(ONE_CHUNK, "dots", [12, 3], {}, job_id=7)
    rnd = random.Random(5)
    marks = set()
    for _ in range(60):
        out = check_matched(s, ONE_CHUNK, rnd.randint(1, 9))
        if out is None:
            break
        marks.add(target_of(out.envelope)[1].split(":")[2])
        s = out.envelope
    ns: dict = {}
    exec(ONE_CHUNK, ns)
    rest = tasklet.run_slice(s, ONE_CHUNK, 60.0)
    assert rest.finished and tasklet.decode_result(rest.result) == ns["dots"](12, 3)
    assert {"3", "4"} <= marks  # the j loop's check and the one-chunk k loop's


def test_a_replays_compile_counts_the_budget_modes_back_edges():
    """The replay's own compile counts each check inline (compiler._replay_checks): at every cap
    it stops where the honest runtime's budget mode stops, byte for byte, in plain, chunked,
    one-chunk and recursive code."""
    cases = [
        (ONE_CHUNK, "dots", [12, 3]),
        (LATE_BOUND, "late", [500]),
        (MIXED, "mixed", [40]),
        (source("ackermann"), "ack_table", [2, 3]),
    ]
    rnd = random.Random(17)
    for src, entry, args in cases:
        s = tasklet.start(src, entry, args, {}, job_id=2)
        for _ in range(6):
            n = rnd.randint(1, 400)
            want = tasklet.run_slice(s, src, 60.0, budget=n)
            got = tasklet.replay_result(s, src, max_steps=n)
            if want.finished:
                assert got.finished and got.result == want.result
                break
            assert not got.finished and got.steps == n
            assert envelope.payload_sha256(got.envelope) == envelope.payload_sha256(want.envelope)
            s = want.envelope


def test_a_replay_calls_the_runtime_only_where_the_loop_positions_are_the_marks(monkeypatch):
    """At a for loop's point the replay's compile compares the loops' positions inline: the
    runtime's check (frame locals, int tag, hash) runs at a few back-edges, not at all of them."""
    calls = []
    real = replay._ReplayControl._inline_pause

    def counting(self, ns, left, check):
        def counted(fname, point, frame):
            calls.append(point)
            return check(fname, point, frame)

        return real(self, ns, left, counted)

    monkeypatch.setattr(replay._ReplayControl, "_inline_pause", counting)
    src = """
def grid(n):
    total = 0
    for i in range(n):
        for j in range(n):
            for k in "abc":
                total += (i * j) % 7 + len(k)
    return total
"""
    s = tasklet.start(src, "grid", [60], {}, job_id=2)
    real_out = tasklet.run_slice(s, src, 60.0, budget=5000)
    sha, mark = target_of(real_out.envelope)
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=6000)
    assert r.matched and r.steps == 5000
    assert 0 < len(calls) < r.steps // 20, (len(calls), mark)


def test_the_honest_compile_is_not_the_replays():
    """Honest slices keep their one flag test per check: the replay's compile is cached apart."""
    from market.tasklet import compiler

    honest = compiler.compile_job(MIXED, "mixed")
    counted = compiler.compile_job(MIXED, "mixed", compiler.COUNT_ONLY)
    assert honest is not counted and honest.replay is None and counted.replay == compiler.COUNT_ONLY
    assert "_tk_left" not in honest.code.co_names + sum((c.co_names for c in _codes(honest.code)), ())
    assert "_tk_left" in sum((c.co_names for c in _codes(counted.code)), ())


def _codes(code):
    out = []
    for c in code.co_consts:
        if hasattr(c, "co_names"):
            out.append(c)
            out.extend(_codes(c))
    return out


@pytest.mark.parametrize(
    "mark",
    [
        "cpython-3.11:mixed:999:1,2:5:0000000000000000",
        "cpython-3.11:weigh:1:99999999999999999999999:0:0000000000000000",
        "cpython-3.11:nosuch:1::0:0000000000000000",
        "cpython-3.11:mixed:1:" + ",".join(["7"] * 500) + ":0:0000000000000000",
        "cpython-3.11:mixed:-1::0:0",
        "cpython-3.11:mixed:001::0:0000000000000000",
        "cpython-3.11:mixed:\u00b2::0:0000000000000000",
        "cpython-3.11:mixed:1:\u00b2:\u00b3:0000000000000000",
        "cpython-3.11:mixed:1:+1:0:0000000000000000",
        "junk",
    ],
)
def test_a_forged_mark_compiles_and_replays_to_the_cap(mark):
    s = tasklet.start(MIXED, "mixed", [50], {}, job_id=2)
    r = tasklet.replay_slice(s, MIXED, target_payload_sha256="ab" * 32, target_mark=mark, max_steps=70)
    assert not r.matched and r.steps == 70
