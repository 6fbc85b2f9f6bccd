"""Issue 18: what the validator accepts never fails later at freeze time, nor gives another answer
than native: set loops whose set changes size, and values held in locals across a back-edge."""

import copy

import pytest

from market import tasklet
from tests.jobs.support import frozen, native
from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in


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


HELD = {
    "bound_method": (
        """
def job(xs):
    out = []
    push = out.append
    for x in xs:
        push(x * 2)
    return out, push == out.append
""",
        [[1, 2, 3, 4]],
    ),
    "bound_method_of_a_job_instance": (
        """
class Acc:
    def __init__(self):
        self.total = 0

    def add(self, v):
        self.total += v


def job(xs):
    acc = Acc()
    add = acc.add
    for x in xs:
        add(x)
    return acc.total, add == acc.add
""",
        [[1, 2, 3, 4]],
    ),
    "iterator_and_next": (
        """
def job(xs):
    it = iter(xs)
    first = next(it)
    out = [first]
    while True:
        v = next(it, None)
        if v is None:
            break
        out.append(v)
        xs.append(-1) if len(xs) < 8 else None
    return out
""",
        [[1, 2, 3, 4]],
    ),
    "iterator_shared_with_its_loop": (
        """
def job(xs):
    it = iter(xs)
    pairs = []
    for a in it:
        b = next(it, None)
        pairs.append([a, b])
    return pairs
""",
        [[1, 2, 3, 4, 5, 6, 7]],
    ),
    "enumerate_of_a_held_iterator": (
        """
def job(xs):
    it = iter(xs)
    out = []
    for i, a in enumerate(it):
        if i % 2 == 0:
            out.append([i, a, next(it, None)])
    return out
""",
        [[1, 2, 3, 4, 5, 6, 7, 8, 9]],
    ),
    "iterator_passed_to_a_callee": (
        """
def take(it, n):
    got = []
    for _ in range(n):
        got.append(next(it))
    return got


def job(xs):
    it = iter(xs)
    out = []
    for k in range(3):
        out.append(take(it, 2))
    return out, list(it)
""",
        [[1, 2, 3, 4, 5, 6, 7, 8]],
    ),
    "dict_and_range_iterators": (
        """
def job(d, n):
    ki = iter(d.items())
    ri = iter(range(n))
    out = []
    for _ in range(len(d)):
        out.append([next(ki), next(ri)])
    return out
""",
        [{"a": 1, "b": 2, "c": 3}, 10],
    ),
    "exception_kept": (
        """
def job(xs):
    errs = []
    last = None
    for x in xs:
        if x < 0:
            last = ValueError("negative", x)
            errs.append(str(last))
    return errs, last.args, isinstance(last, ValueError)
""",
        [[1, -2, 3, -4, 5]],
    ),
    "except_as_used_past_the_block": (
        """
def job(xs):
    seen = None
    for x in xs:
        try:
            v = 10 // x
        except ZeroDivisionError as e:
            err = e
            seen = x
    return seen, isinstance(err, ZeroDivisionError), err.args
""",
        [[1, 0, 3, 4]],
    ),
    "job_exception_kept": (
        """
class Bad(Exception):
    def __init__(self, what, code):
        super().__init__(what)
        self.code = code


def job(xs):
    last = None
    for x in xs:
        if x % 2:
            last = Bad("odd %d" % x, x)
    try:
        raise last
    except Bad as e:
        return e.args, e.code, str(e)
""",
        [[2, 3, 4, 5, 6]],
    ),
    "regex_match_kept": (
        """
import re

LINE = re.compile(r"(?P<level>[A-Z]+): (?P<msg>.*)")


def job(lines):
    m = None
    found = []
    for line in lines:
        n = LINE.search(line)
        if n:
            m = n
        if m:
            found.append([m.group("level"), m.pos, m.span(), m.re is LINE])
    return found
""",
        [["x", "ERROR: a", "  INFO: b", "zz"]],
    ),
    "regex_fullmatch_kept": (
        """
import re


def job(words):
    m = None
    out = []
    for w in words:
        k = re.fullmatch(r"a+b?", w)
        if k:
            m = k
        out.append(m.group(0) if m else None)
    return out
""",
        [["c", "aab", "x", "ab", "abc"]],
    ),
}


@pytest.mark.parametrize("budget", [1, 2])
@pytest.mark.parametrize("name", sorted(HELD))
def test_a_value_held_across_a_back_edge_freezes_and_equals_native(name, budget):
    src, args = HELD[name]
    expected, got, hops = run_both(src, "job", args, budgets=(budget,))
    assert expected[0] != "error", expected
    assert got == expected
    assert hops > 2


@pytest.mark.parametrize("name", ["iterator_shared_with_its_loop", "bound_method", "regex_match_kept"])
def test_a_held_value_frozen_on_cpython_thaws_on_pypy(name):
    pypy = interpreter_or_skip(PYPY, "pypy3")
    src, args = HELD[name]
    expected = native(src, "job", copy.deepcopy(args))
    env = tasklet.start(src, "job", copy.deepcopy(args), {})
    for hop in range(1000):
        if hop % 2:
            out = slice_in(pypy, env, src, budget=1)
        else:
            out = tasklet.run_slice(env, src, 60.0, budget=1)
        if out.finished:
            break
        env = out.envelope
    assert out.error is None, out.error
    assert tasklet.decode_result(out.result) == expected


@pytest.mark.parametrize("name", sorted(HELD) + ["set_loop"])
def test_honest_slices_holding_values_are_matched_by_a_replay(name):
    from tests.test_tasklet_replay import check_matched

    src, args = HELD.get(name, (SET_SHRUNK_THEN_REFILLED.replace("def walk", "def job"), [list(range(12))]))
    s = tasklet.start(src, "job", copy.deepcopy(args), {}, job_id=5)
    matched = 0
    for n in (1, 2, 3, 1, 5, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1):
        out = check_matched(s, src, n)
        if out is None:
            break
        matched += 1
        s = out.envelope
    assert matched >= 2
    last = tasklet.run_slice(s, src, 60.0)
    assert last.finished and last.error is None, last.error


REVERSED_DICT = """
def job(d):
    out = []
    for k in reversed(VIEW):
        out.append(k)
        d[k if type(k) is str else k[0] if type(k) is tuple else "a"] = 100 + len(out)
    return out, d
"""


@pytest.mark.parametrize("view", ["d", "d.keys()", "d.values()", "d.items()"])
def test_a_loop_over_reversed_dict_sees_the_body_s_writes_after_a_thaw(view):
    # reversed(dict) was frozen as the items it still had to give: stale values after a thaw
    src = REVERSED_DICT.replace("VIEW", view)
    expected, got, hops = run_both(src, "job", [{"a": 1, "b": 2, "c": 3, "d": 4}])
    assert got == expected
    assert hops > 3


def test_reversed_dict_growing_under_its_loop_raises_after_a_thaw():
    src = """
def job(d):
    n = 0
    for k in reversed(d):
        n += 1
        if n == 2:
            d["new"] = 1
    return n
"""
    expected, got, _ = run_both(src, "job", [{"a": 1, "b": 2, "c": 3}])
    assert expected == ("error", "RuntimeError")
    assert got == expected


@pytest.mark.parametrize("view", ["d", "d.values()", "d.items()"])
def test_reversed_dict_frozen_on_pypy_goes_on_in_reverse(view):
    pypy = interpreter_or_skip(PYPY, "pypy3")
    src = REVERSED_DICT.replace("VIEW", view)
    args = [{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}]
    expected = native(src, "job", copy.deepcopy(args))
    env = tasklet.start(src, "job", copy.deepcopy(args), {})
    for hop in range(100):
        out = slice_in(pypy, env, src, budget=1) if hop % 2 == 0 else tasklet.run_slice(env, src, 60.0, budget=1)
        if out.finished:
            break
        env = out.envelope
    assert out.error is None, out.error
    assert tasklet.decode_result(out.result) == expected


@pytest.mark.parametrize(
    "body, line, what",
    [
        ("    g = (x * 2 for x in xs)\n    for v in g:\n        out.append(v)", 3, "a generator expression"),
        ("    for v in (x * 2 for x in xs):\n        out.append(v)", 3, "a generator expression"),
        ("    for i, v in enumerate(x for x in xs):\n        out.append(v)", 3, "a generator expression"),
        ("    it = iter(lambda: 1, 0)\n    out.append(next(it))", 3, r"iter\(function, sentinel\)"),
        ("    for k, g in itertools.groupby(xs):\n        out.append(k)", 3, r"groupby\(...\)"),
        ("    a, b = itertools.tee(xs)\n    out.append(list(a))", 3, r"tee\(...\)"),
        ("    for m in re.finditer('a', 'aba'):\n        out.append(m.start())", 3, r"finditer\(...\)"),
    ],
)
def test_iterators_that_cannot_freeze_are_refused_at_submission_with_the_line(body, line, what):
    src = "import itertools\nimport re\n\n\ndef job(xs):\n    out = []\n" + body + "\n    return out\n"
    line += 4  # the imports and blank lines above
    with pytest.raises(tasklet.JobRefused, match="line %d: %s cannot be frozen" % (line, what)):
        tasklet.start(src, "job", [[1, 2]], {})


@pytest.mark.parametrize(
    "expr",
    [
        "sum(x for x in xs)",
        "next((x for x in xs if x > 1), None)",
        "''.join(str(x) for x in xs)",
        "any(x > 1 for x in xs)",
        "sorted(zip((x for x in xs), xs))",
        "[(k, list(g)) for k, g in itertools.groupby(xs)]",
        "[m.start() for m in re.finditer('a', 'aba')]",
        "len(list(re.finditer('a', 'aba')))",
        "dict((x, 1) for x in xs)",
        "max(x for x in xs)",
    ],
)
def test_iterators_used_up_at_once_are_accepted_and_equal_native(expr):
    src = (
        "import itertools\nimport re\n\n\ndef job(xs):\n    out = []\n    for k in range(3):\n        out.append(%s)\n    return out\n"  # noqa: E501
        % expr
    )
    expected, got, _ = run_both(src, "job", [[3, 1, 2, 2]])
    assert got == expected and expected[0] != "error"


HUNT = """
import re
import itertools
import math
import collections
import fractions
import random

LINE = re.compile("a+")
MISSING = object()


class P:
    def __init__(self):
        self.v = 1

    def get(self):
        return self.v

    @classmethod
    def make(cls):
        return cls()


def job(xs):
    d = {"a": 1, "b": 2}
    s = set(xs)
    p = P()
    h = EXPR
    out = []
    for k in range(3):
        out.append(k)
        xs.append(k)
        d["a"] += 1
    return out, USE
"""

# every kind of value the validator lets a local variable hold (builtins, iterators, views, bound
# methods, exceptions, regex objects, sentinels...), held across back-edges with a freeze at each
HUNT_CASES = [
    ("xs.append", "h(0) or xs"),
    ("iter(xs)", "list(h)"),
    ("reversed(xs)", "list(h)"),
    ("enumerate(xs)", "list(h)"),
    ("zip(xs, xs)", "list(h)"),
    ("map(abs, xs)", "list(h)"),
    ("filter(None, xs)", "list(h)"),
    ("iter(d)", "list(h)"),
    ("d.keys()", "list(h)"),
    ("d.values()", "list(h)"),
    ("d.items()", "list(h)"),
    ("itertools.count()", "next(h)"),
    ("ValueError(1)", "h.args"),
    ("KeyError('k')", "str(h)"),
    ("LINE", "h is LINE"),
    ("re.compile('b+')", "h.pattern"),
    ("re.match('a', 'ab')", "h.span()"),
    ("LINE.search('baab')", "[h.span(), h.re is LINE, h.pos]"),
    ("str.lower", "h('A')"),
    ("max", "h(xs)"),
    ("math", "h.pi"),
    ("slice(1, 2)", "xs[h]"),
    ("object()", "h is h"),
    ("MISSING", "h is MISSING"),
    ("collections.deque(xs)", "list(h)"),
    ("collections.Counter(xs)", "dict(h)"),
    ("collections.defaultdict(list)", "dict(h)"),
    ("type(xs)", "h is list"),
    ("xs.copy", "h()"),
    ("range(3)", "list(h)"),
    ("iter(range(3))", "list(h)"),
    ("p.get", "h()"),
    ("P", "h().v"),
    ("P.make", "h().v"),
    ("random.choice", "h(xs) in xs"),
    ("'a-b'.split", "h('-')"),
    ("fractions.Fraction(1, 3)", "str(h)"),
    ("s.add", "h(9) or sorted(s)"),
    ("iter(s)", "sorted(h)"),
    ("frozenset(xs)", "sorted(h)"),
    ("{1: 2}.get", "h(1)"),
    ("iter('abc')", "list(h)"),
    ("NotImplemented", "h is NotImplemented"),
    ("...", "h is Ellipsis"),
    ("complex(1, 2)", "h.real"),
    ("bytearray(b'ab')", "list(h)"),
    ("divmod", "h(7, 2)"),
    ("dict.fromkeys", "h('ab')"),
    ("print", "h is print"),
    ("itertools.chain(xs, xs)", "list(h)"),
    ("reversed(range(4))", "list(h)"),
    ("reversed(d)", "list(h)"),
    ("reversed(d.values())", "list(h)"),
    ("iter(d.items())", "list(h)"),
    ("enumerate(iter(xs))", "list(h)"),
    ("next(re.finditer('a', 'aba'))", "h.span()"),
    ("(x for x in xs)", "1"),
    ("iter(int, 1)", "1"),
    ("itertools.groupby(xs)", "1"),
    ("itertools.tee(xs)", "1"),
    ("re.finditer('a', 'aba')", "1"),
    ("lambda: 1", "1"),
    ("xs.__len__", "1"),
    ("vars(p)", "1"),
]


@pytest.mark.parametrize("expr, use", HUNT_CASES)
def test_every_value_a_local_can_hold_is_refused_at_submission_or_freezes_and_equals_native(expr, use):
    src = HUNT.replace("EXPR", expr).replace("USE", use)
    try:
        tasklet.compile_job(src, "job")
    except tasklet.JobRefused as exc:
        assert "line 29:" in str(exc)  # refused where it is made
        return
    expected, got, hops = run_both(src, "job", [[3, 1, 2]])
    assert expected[0] != "error", expected
    assert got == expected
    assert hops >= 4


def test_a_later_finditer_match_held_in_a_local_fails_to_freeze_clearly():
    # known gap: a match that is not the first from its pos (finditer's second) cannot be found
    # again with the same m.pos; it stops the job with a clear error, never a wrong answer
    src = HUNT.replace("EXPR", "[m for m in re.finditer('a', 'aba')][1]").replace("USE", "h.span()")
    got, _ = frozen(src, "job", [[3, 1, 2]])
    assert got == ("error", "cannot freeze the job's state")


def test_job_exception_instances_in_a_container_keep_their_args():
    # they were frozen as class + __dict__ only: after a thaw e.args was () (a wrong answer)
    src = """
class Bad(Exception):
    pass


class Coded(ValueError):
    def __init__(self, what, code):
        super().__init__(what)
        self.code = code


def job(xs):
    errs = []
    for x in xs:
        errs.append(Bad("odd", x) if x % 2 else Coded("even %d" % x, x))
    return [[list(e.args), str(e), getattr(e, "code", None)] for e in errs]
"""
    expected, got, hops = run_both(src, "job", [[1, 2, 3, 4]])
    assert got == expected
    assert hops > 3
