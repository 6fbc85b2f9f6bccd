"""Issue 18: a job call inside a method call on a value the caller holds (``d.setdefault(key(x), [])``,
``rows[0].append(f(rows))``): Python evaluates the called object first, then the arguments; the compiled
job does the same (compiler._slots), frozen at every stop, on CPython and PyPy in turn."""

import textwrap

import pytest

from market import tasklet
from tests.jobs.support import frozen, native

CASES = {
    # the job call is inside the called object: accepted since this change (was refused)
    "setdefault": """
        def key(x):
            return x % 3
        def job(xs):
            d = {}
            for x in xs:
                d.setdefault(key(x), []).append(x)
            return d
    """,
    "nested-setdefault": """
        def key(x):
            return x % 3
        def val(x):
            return x * 10
        def job(xs):
            d = {}
            for x in xs:
                d.setdefault(key(x), {}).setdefault(key(x + 1), []).append(val(x))
            return d
    """,
    # the job call rebinds what the called object was found in: the old list gets the item, as in Python
    # (the compiled job used to append to the new one: a wrong answer even without freezing)
    "attribute-rebound": """
        class St:
            def __init__(self):
                self.items = []
        def reset(st, x):
            st.items = []
            return x
        def job(xs):
            st = St()
            old = st.items
            for x in xs:
                st.items.append(reset(st, x))
            return old, st.items
    """,
    "item-rebound": """
        def reset(rows, x):
            rows[0] = [x]
            return x
        def job(xs):
            rows = [[]]
            firsts = [rows[0]]
            for x in xs:
                rows[0].append(reset(rows, x))
                firsts.append(rows[0])
            return firsts, rows
    """,
    "method-of-an-item": """
        def pick(lists, i):
            lists.reverse()
            return i
        def job(xs):
            lists = [[], []]
            for i in xs:
                lists[i % 2].append(pick(lists, i))
            return lists
    """,
    "called-item": """
        OPS = [abs, str, len]
        def pick(i):
            return -i
        def job(xs):
            out = []
            for i in xs:
                out.append(OPS[i % 2](pick(i)))
            return out
    """,
    "method-of-a-call-result": """
        def parts(x):
            return [x % 2, x % 3, x % 2]
        def key(x):
            return x % 2
        def job(xs):
            total = 0
            for x in xs:
                total += parts(x).count(key(x))
            return total
    """,
}
INT_ARGS = [[1, 2, 3, 4, 5, 6, 7]]


def args_for(name):
    return INT_ARGS


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("budgets", [(1,), (1, 2, 3), (10**9,)])
def test_frozen_at_every_stop_equals_native(name, budgets):
    src = textwrap.dedent(CASES[name])
    expected = native(src, "job", args_for(name))
    assert not (isinstance(expected, tuple) and expected[:1] == ("error",)), expected
    got, hops = frozen(src, "job", args_for(name), budgets=budgets)
    assert got == expected
    if budgets == (1,):
        assert hops > 3  # it really stopped, more than once


@pytest.mark.parametrize("name", ["setdefault", "attribute-rebound", "item-rebound"])
def test_frozen_on_cpython_and_pypy_in_turn_equals_native(name):
    from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in

    pypy = interpreter_or_skip(PYPY, "pypy3")
    src = textwrap.dedent(CASES[name])
    expected = native(src, "job", args_for(name))
    env = tasklet.start(src, "job", args_for(name), {})
    for hop in range(200):
        out = slice_in(pypy, env, src, budget=1) if hop % 2 else tasklet.run_slice(env, src, 60.0, budget=1)
        if out.finished:
            break
        env = out.envelope
    assert hop > 3
    assert out.error is None, out.error
    assert tasklet.decode_result(out.result) == expected


def test_a_job_call_in_an_assignment_target_is_refused_with_what_to_do():
    src = "def key(x):\n    return x\ndef job(d, x):\n    d[key(x)] = 1\n    return d\n"
    with pytest.raises(tasklet.JobRefused) as info:
        tasklet.validate(src, "job")
    assert any(ln == 4 and "assign the call to a variable first" in why for ln, why in info.value.problems)
