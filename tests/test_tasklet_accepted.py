"""Issue 18: what the validator accepts never fails later at freeze time, nor gives another answer
than native: set loops whose set changes size, and values held in locals across a back-edge."""

import copy

import pytest

from tests.jobs.support import frozen, native
from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in
from market import tasklet


def run_both(src, entry, args, budgets=(1,)):
    expected = native(src, entry, copy.deepcopy(args))
    got, hops = frozen(src, entry, copy.deepcopy(args), budgets=budgets)
    return expected, got, hops


SET_GROWN_IN_BODY = """
def grow(xs):
    s = set(xs)
    n = 0
    for k in s:
        n += 1
        if n == 2:
            s.add(k + 1000)
    return n
"""

SET_GROWN_BY_CALLEE = """
def add(s, n):
    if n == 2:
        s.add(-1)
    return n + 1


def walk(xs):
    s = set(xs)
    n = 0
    for k in s:
        n = add(s, n)
    return n
"""

SET_SHRUNK_THEN_REFILLED = """
def walk(xs):
    s = set(xs)
    seen = []
    for k in s:
        seen.append(k)
    return sorted(seen)
"""


@pytest.mark.parametrize("budget", [1, 2, 3])
@pytest.mark.parametrize("src, entry", [(SET_GROWN_IN_BODY, "grow"), (SET_GROWN_BY_CALLEE, "walk")])
def test_a_set_that_changes_size_under_its_loop_raises_after_a_thaw(src, entry, budget):
    # before: frozen as its remaining items, thawed as a list iterator: it finished normally (a wrong answer)
    expected, got, _ = run_both(src, entry, [[1, 2, 3, 4, 5]], budgets=(budget,))
    assert expected == ("error", "RuntimeError")
    assert got == expected


def test_a_set_loop_that_does_not_change_size_finishes_as_native():
    expected, got, hops = run_both(SET_SHRUNK_THEN_REFILLED, "walk", [list(range(20))])
    assert got == expected == list(range(20))
    assert hops > 10


def test_a_set_that_changes_size_raises_on_pypy_after_a_cpython_freeze():
    pypy = interpreter_or_skip(PYPY, "pypy3")
    env = tasklet.start(SET_GROWN_IN_BODY, "grow", [[1, 2, 3, 4, 5]], {})
    for _ in range(3):  # frozen after the add, before the loop's next step
        out = tasklet.run_slice(env, SET_GROWN_IN_BODY, 60.0, budget=1)
        assert not out.finished
        env = out.envelope
    out = slice_in(pypy, env, SET_GROWN_IN_BODY)
    assert out.finished and out.error.startswith("RuntimeError"), out
