"""Nested functions and closures (issue 18, item 3): a nested def that does not call job functions
runs at once; its object may live in the outer frame across freezes, frozen as its defaults and
made again by its def in the resumed frame, so it shares the frame's variables (cells) exactly as
before.  Compared with native execution, freezing at every back-edge, across processes and
across CPython and PyPy, and matched by replay."""

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market import tasklet
from tests.jobs.support import frozen, native, source
from tests.test_tasklet_portability import PYPY, cpython_states, interpreter_or_skip, slice_in
from tests.test_tasklet_replay import check_matched

SRC = source("closures")
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

edges = st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=25)
budgets = st.lists(st.integers(1, 9), min_size=1, max_size=4)


@SETTINGS
@given(edges, st.integers(1, 12), budgets)
def test_recursive_nested_dfs_equals_native_frozen_at_random_back_edges(es, n, schedule):
    assert frozen(SRC, "components", [es, n], budgets=schedule)[0] == native(SRC, "components", [es, n])


@SETTINGS
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=15), st.integers(-3, 3), budgets)
def test_closure_sees_rebound_outer_variable_and_keeps_its_defaults(values, factor, schedule):
    args = [values, factor]
    assert frozen(SRC, "scaled", args, budgets=schedule)[0] == native(SRC, "scaled", args)


@SETTINGS
@given(st.lists(st.text("abcxyz", max_size=5), max_size=6), budgets)
def test_closures_sharing_a_cell_rebound_by_both_frames(words, schedule):
    assert frozen(SRC, "counters", [words], budgets=schedule)[0] == native(SRC, "counters", [words])


@pytest.mark.parametrize("entry,args", [("memo_paths", [6, 7]), ("counters", [["ab", "", "xyz", "q"]])])
def test_freeze_at_every_back_edge_equals_native(entry, args):
    value, hops = frozen(SRC, entry, args, budgets=(1,))
    assert value == native(SRC, entry, args)
    assert hops > 10  # it really was frozen many times


def test_a_frozen_frame_holds_the_nested_function_as_its_defaults():
    env = tasklet.start(SRC, "scaled", [[1, 2, 3, 4], 5], {})
    out = tasklet.run_slice(env, SRC, 30, budget=3)
    assert not out.finished
    job = tasklet.compiler.compile_job(SRC, "scaled")
    assert set(job.functions["scaled"].nested) == {"shift"}
    cont = job.continuation_source("scaled", job.functions["scaled"].points[max(job.functions["scaled"].points)].number)
    assert "def shift(v, k=None)" in cont and "shift.__defaults__, shift.__kwdefaults__ = _tk_L['shift']" in cont


@pytest.mark.parametrize(
    "entry,args,budget",
    [
        ("components", [[(1, 2), (2, 3), (5, 6), (7, 7)], 9], 3),
        ("scaled", [[4, -2, 7, 1, 0, 3], 2], 2),
        ("counters", [["ab", "xyz", "q", "hello"]], 4),
    ],
)
def test_state_frozen_on_cpython_finishes_on_pypy(entry, args, budget):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    env = cpython_states(SRC, entry, args, budget, 2)[-1]
    out = slice_in(pypy, env, SRC, budget=3)
    while not out.finished:
        out = slice_in(pypy, out.envelope, SRC, budget=5)
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(SRC, entry, args)


def test_pypy_state_finishes_on_cpython():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    args = [["ab", "xyz", "q", "hello"]]
    env = tasklet.start(SRC, "counters", args, {})
    for _ in range(3):
        out = slice_in(pypy, env, SRC, budget=4)
        assert not out.finished
        env = out.envelope
    while True:
        out = tasklet.run_slice(env, SRC, 30, budget=5)
        if out.finished:
            break
        env = out.envelope
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(SRC, "counters", args)


@pytest.mark.parametrize(
    "entry,args",
    [
        ("components", [[(1, 2), (2, 3), (5, 6), (7, 7), (3, 8)], 10]),
        ("scaled", [[4, -2, 7, 1, 0, 3, 9], 2]),
        ("counters", [["ab", "xyz", "q", "hello"]]),
        ("memo_paths", [4, 5]),
    ],
)
def test_honest_slices_with_closures_are_matched_by_replay(entry, args):
    s = tasklet.start(SRC, entry, args, {}, job_id=5)
    rnd = random.Random(entry)
    for _ in range(10):
        out = check_matched(s, SRC, rnd.randint(1, 25))
        if out is None:
            break
        s = out.envelope


def test_variable_read_before_a_job_call_is_not_changed_by_a_nested_function_rebinding_it():
    assert frozen(SRC, "order_of_evaluation", [5], budgets=(1, 2))[0] == native(SRC, "order_of_evaluation", [5])


@pytest.mark.parametrize("n", [0, 1, 7])
def test_a_default_that_is_also_a_local_stays_the_same_object_after_a_thaw(n):
    value, _ = frozen(SRC, "shared_default", [n], budgets=(1,))
    assert value == native(SRC, "shared_default", [n])
