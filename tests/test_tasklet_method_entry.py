"""Issue 18: a job's entry may be ``Class.method``, a @staticmethod or @classmethod of a top-level class
(modules that keep their algorithms, and their doctests, inside classes).  The validator adds a
top-level copy of the method (validator.method_entry) whose own recursive calls become job calls, so it
freezes at every stop like a function; runner and replay find it by the entry name in the header."""

import pathlib
import textwrap

import pytest

from market import tasklet
from market.tasklet import envelope
from tests.corpus import harness
from tests.jobs.support import frozen, native

CORPUS = (pathlib.Path(__file__).parent / "corpus" / "class_methods.py").read_text()
CASES = harness.declared_cases(CORPUS)


@pytest.mark.parametrize("entry,args", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("budgets", [(1,), (2, 5, 1), (10**9,)])
def test_method_entry_frozen_at_every_stop_equals_native(entry, args, budgets):
    expected = native(CORPUS, entry, args)
    assert not (isinstance(expected, tuple) and expected[:1] == ("error",)), expected
    got, hops = frozen(CORPUS, entry, args, budgets=budgets)
    assert got == expected
    if budgets == (1,):
        assert hops > 3


def test_recursion_through_the_class_is_a_job_call_that_freezes():
    """gcd calls NumberTools.gcd(...): in the entry's copy it is a job call, so each of its 4 levels can
    stop (run atomically as a method call, the job would finish in one or two slices)."""
    got, hops = frozen(CORPUS, "NumberTools.gcd", [1071, 462])
    assert got == 21
    assert hops >= 4


@pytest.mark.parametrize("entry,args", [CASES[2], CASES[4]], ids=["classmethod", "recursive-classmethod"])
def test_frozen_on_cpython_and_pypy_in_turn_equals_native(entry, args):
    from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in

    pypy = interpreter_or_skip(PYPY, "pypy3")
    expected = native(CORPUS, entry, args)
    env = tasklet.start(CORPUS, entry, args, {})
    for hop in range(400):
        out = slice_in(pypy, env, CORPUS, budget=1) if hop % 2 else tasklet.run_slice(env, CORPUS, 60.0, budget=1)
        if out.finished:
            break
        env = out.envelope
    assert hop > 2
    assert out.error is None, out.error
    assert tasklet.decode_result(out.result) == expected


def test_replay_finds_a_method_entry_state():
    entry, args = CASES[4]
    s = tasklet.start(CORPUS, entry, args, {})
    s = tasklet.run_slice(s, CORPUS, 60.0, budget=3).envelope
    out = tasklet.run_slice(s, CORPUS, 60.0, budget=7)
    assert not out.finished
    header, sha = envelope.inspect(out.envelope)
    assert header.entry == entry
    r = tasklet.replay_slice(s, CORPUS, target_payload_sha256=sha, target_mark=header.mark, max_steps=60)
    assert r.matched and r.envelope == out.envelope
    rr = tasklet.replay_result(s, CORPUS, max_steps=10**5)
    assert rr.finished and tasklet.decode_result(rr.result) == native(CORPUS, entry, args)


HELPER_CALLER = """
def helper(x):
    return x * 2


class Calc:
    @staticmethod
    def doubled(xs):
        out = []
        for x in xs:
            out.append(helper(x))
        return out
"""


def test_an_entry_method_named_nowhere_else_may_call_job_functions():
    src = textwrap.dedent(HELPER_CALLER)
    got, hops = frozen(src, "Calc.doubled", [[1, 2, 3]])
    assert got == [2, 4, 6] and hops > 3


@pytest.mark.parametrize(
    "src,entry,words",
    [
        ("class C:\n    def m(self, x):\n        return x\n", "C.m", "C.m is a plain method"),
        ("class C:\n    @staticmethod\n    def m(x):\n        return x\n", "D.m", "no top-level class named 'D'"),
        ("class C:\n    @staticmethod\n    def m(x):\n        return x\n", "C.n", "class C has no method 'n'"),
        ("class C:\n    @staticmethod\n    def m(x):\n        return x\n", "C.m.x", "neither a function name"),
        (
            "def C__m(x):\n    return x\nclass C:\n    @staticmethod\n    def m(x):\n        return x\n",
            "C.m",
            "needs the name 'C__m'",
        ),
        (
            "class C:\n    @classmethod\n    def m(cls, x):\n        cls = 3\n        return x\n",
            "C.m",
            "may not rebind 'cls'",
        ),
        # named elsewhere, the method stays a method: it may not call job functions (clear refusal)
        (
            HELPER_CALLER + "\ndef other(xs):\n    return Calc.doubled(xs)\n",
            "Calc.doubled",
            "methods of job classes cannot call job functions",
        ),
    ],
)
def test_refused_clearly(src, entry, words):
    with pytest.raises(tasklet.JobRefused) as info:
        tasklet.validate(textwrap.dedent(src), entry)
    assert any(words in why for _, why in info.value.problems), info.value.problems
