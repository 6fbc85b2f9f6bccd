"""Generated programs, sliced at random back-edges with the state through bytes at every hop,
give exactly their native result — here and across interpreters (CPython <-> PyPy).

tests/test_tasklet_random_programs.py covers nested for-over-range/while/if, break/continue/else,
try/except/finally and calls to two fixed helpers.  This module adds what real jobs do on top:
loops over lists, ``enumerate``, ``zip`` and dict items; lists appended to and assigned while they
are iterated; generated helper functions calling each other; recursion (plain and mutual);
exceptions raised in callees and caught through loops; and portability of the frozen states.

Mutation of a list (or of a dict's values) while ``enumerate``/``zip``/``items()`` iterates it is
exactly what issue 18 part R1 fixes: that generator is gated in tests/corpus (PENDING).
"""

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from market import tasklet
from tests.corpus import PENDING, PENDING_REASON
from tests.jobs.support import frozen, native
from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in

FIXED = """
def rec(n, acc):
    if n <= 0:
        return acc
    for i in range(n % 3):
        acc = (acc * 7 + i) % 1000003
    t = rec(n - 1, acc)
    return t + 1


def is_even(n):
    if n == 0:
        return True
    r = is_odd(n - 1)
    return r


def is_odd(n):
    if n == 0:
        return False
    r = is_even(n - 1)
    return r


def raiser(x):
    for i in range(x % 3):
        x += i
    if x % 4 == 1:
        raise ValueError(x)
    return x * 2
"""

SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def indent(lines):
    return ["    " + ln for ln in lines]


VIEWS = frozenset({"enumerate", "zip", "items"})


class Gen:
    """Generates one program.

    ``ctx`` is the set of enclosing loop kinds.  Unless ``mutate_views``, nothing changes ``xs``
    inside an ``enumerate``/``zip`` loop nor ``d`` inside an ``items()`` loop (generated helpers,
    callable anywhere, change neither); lists iterated directly are changed freely.
    """

    def __init__(self, draw, mutate_views, helpers):
        self.draw = draw
        self.mutate_views = mutate_views
        self.helpers = helpers  # names of generated helpers this body may call
        self.n = 0

    def num(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def block(self, depth, loop, ctx):
        lines = []
        for _ in range(self.num(1, 3)):
            lines.extend(self.statement(depth, loop, ctx))
        return lines

    def simple(self, loop, ctx):
        """loop: None, or (kind, names) of the innermost loop."""
        free = self.mutate_views
        options = [
            lambda: ["acc = (acc * 31 + %d) %% 1000003" % self.num(0, 9)],
            lambda: ["log.append(acc %% %d)" % self.num(2, 9)],
            lambda: ["acc = rec(acc % 5, acc)"],
            lambda: ["log.append(is_even(acc % 7))"],
            lambda: ["t = raiser(acc)", "acc += t"],
        ]
        if free or not ctx & {"enumerate", "zip"}:
            options.append(lambda: ["if len(xs) < 12:", "    xs.append(acc %% %d)" % self.num(3, 9)])
            options.append(lambda: ["if xs:", "    xs[acc %% len(xs)] += %d" % self.num(1, 5)])
        if free or "items" not in ctx:
            options.append(lambda: ["d['k%d'] = acc %% 13" % self.num(0, 2 if "items" in ctx else 3)])
        for name in self.helpers:
            options.append(lambda name=name: ["acc = %s(acc, xs, ys, d, log)" % name])
        if loop is not None:
            kind, names = loop
            options += [
                lambda: ["if acc %% %d == 0:" % self.num(2, 5), "    break"],
                lambda: ["if acc %% %d == 1:" % self.num(2, 5), "    continue"],
            ]
            if kind in ("list", "enumerate", "zip", "items"):
                options.append(lambda: ["acc = (acc + %s * 3) %% 1000003" % names[-1]])
            if free and kind == "enumerate":
                options.append(lambda: ["if %s + 1 < len(xs):" % names[0], "    xs[%s + 1] += %s" % names])
            if free and kind == "zip":
                options.append(lambda: ["xs[-1] += %s" % names[0], "ys[0] += 1"])
            if free and kind == "items":
                options.append(lambda: ["d['k%d'] = acc %% 17" % self.num(0, 2)])
        return self.draw(st.sampled_from(options))()

    def statement(self, depth, loop, ctx):
        if depth >= 3 or self.num(0, 2) == 0:
            return self.simple(loop, ctx)
        self.n += 1
        c = self.n
        kind = self.draw(st.sampled_from(["range", "list", "enumerate", "zip", "items", "while", "if", "try", "raise"]))
        if kind == "while":
            return ["w%d = 0" % c, "while w%d < %d:" % (c, self.num(0, 4)), "    w%d += 1" % c] + indent(
                self.block(depth + 1, ("while", ()), ctx)
            )
        if kind == "if":
            return (
                ["if acc %% 3 == %d:" % self.num(0, 2)]
                + indent(self.block(depth + 1, loop, ctx))
                + ["else:"]
                + indent(self.block(depth + 1, loop, ctx))
            )
        if kind == "try":
            out = ["try:"] + indent(self.block(depth + 1, loop, ctx))
            out += ["except ValueError as e%d:" % c, "    log.append(str(e%d))" % c]
            if self.draw(st.booleans()):
                out += ["finally:", "    log.append('fin%d')" % c]
            return out
        if kind == "raise":
            return ["if acc %% 7 == %d:" % self.num(0, 6), "    raise ValueError('own%d')" % c]
        heads = {
            "range": ("for v%d in range(%d):" % (c, self.num(0, 4)), ("v%d" % c,)),
            "list": ("for v%d in xs:" % c, ("v%d" % c,)),
            "enumerate": ("for i%d, v%d in enumerate(xs):" % (c, c), ("i%d" % c, "v%d" % c)),
            "zip": ("for a%d, v%d in zip(xs, ys):" % (c, c), ("a%d" % c, "v%d" % c)),
            "items": ("for k%d, v%d in d.items():" % (c, c), ("k%d" % c, "v%d" % c)),
        }
        head, names = heads[kind]
        inner_ctx = ctx | {kind} if kind in VIEWS else ctx
        body = self.block(depth + 1, (kind, names), inner_ctx)
        tail = ["else:"] + indent(self.block(depth + 1, loop, ctx)) if self.draw(st.booleans()) else []
        return [head] + indent(body) + tail


@st.composite
def program(draw, mutate_views=False):
    """A module: the fixed helpers, up to two generated helpers (the second may call the first),
    and ``job(seed, xs, ys)``."""
    parts = [FIXED]
    helpers = []
    for h in range(draw(st.integers(0, 2))):
        ctx = frozenset() if mutate_views else VIEWS  # a helper may be called inside any loop
        body = Gen(draw, mutate_views, list(helpers)).block(1, None, ctx)
        name = "helper%d" % h
        parts.append("\n".join(["def %s(acc, xs, ys, d, log):" % name] + indent(body) + ["    return acc"]))
        helpers.append(name)
    body = Gen(draw, mutate_views, helpers).block(0, None, frozenset())
    job = ["def job(seed, xs, ys):", "    acc = seed", "    log = []", "    d = {'k0': 1, 'k1': 2, 'k2': 3}"]
    job += indent(body) + ["    return acc, log, xs, ys, sorted(d.items())"]
    parts.append("\n".join(job))
    return "\n\n\n".join(parts) + "\n"


ARGS = st.tuples(
    st.integers(0, 60), st.lists(st.integers(0, 9), min_size=1, max_size=5), st.lists(st.integers(0, 9), max_size=5)
)
SCHEDULE = st.lists(st.integers(1, 6), min_size=1, max_size=4)


def copied(args):
    return [list(a) if isinstance(a, list) else a for a in args]  # native() mutates what it is given


# A budget-1 schedule over a program whose loops nest four deep over a list grown to 12 items made
# tens of thousands of hops (minutes per example, and hypothesis shrinking repeats such examples
# for up to 5 minutes): the schedule is stretched so that one run makes about MAX_HOPS hops.
MAX_HOPS = 300


def back_edges(src, args):
    """How many back-edges the job passes when it runs in one slice."""
    out = tasklet.run_slice(tasklet.start(src, "job", copied(args), {}), src, 60.0, budget=10**9)
    return out.stats["back_edges"] or 0


def check(src, args, schedule):
    expected = native(src, "job", copied(args))
    stretch = max(1, back_edges(src, args) // MAX_HOPS)
    got, _ = frozen(src, "job", list(args), budgets=[b * stretch for b in schedule])
    assert got == expected, src


# issue 18: a helper grew the dict the caller's items() loop walks, right after a freeze at the
# helper's entry; the caller's loop, thawed only when the helper returned, went on without the
# RuntimeError (and a later ValueError came out instead)
GROWN_DICT = (
    FIXED
    + """

def helper0(acc, xs, ys, d, log):
    d['k3'] = acc % 13
    return acc


def job(seed, xs, ys):
    acc = seed
    log = []
    d = {'k0': 1, 'k1': 2, 'k2': 3}
    for k1, v1 in d.items():
        acc = helper0(acc, xs, ys, d, log)
    t = raiser(acc)
    return acc, log, xs, ys, sorted(d.items())
"""
)


@SETTINGS
@given(program(), ARGS, SCHEDULE)
def test_generated_program_sliced_at_random_back_edges_equals_native(src, args, schedule):
    check(src, args, schedule)


@pytest.mark.skipif("programs:mutation_under_enumerate_zip_items" in PENDING, reason=PENDING_REASON)
@SETTINGS
@example(GROWN_DICT, (1, [1], [2]), [1])
@given(program(mutate_views=True), ARGS, SCHEDULE)
def test_mutating_what_enumerate_zip_items_iterate_sliced_equals_native(src, args, schedule):
    check(src, args, schedule)


def hop(python, env, src, budget):
    """One slice on ``python`` (None: this process)."""
    if python is None:
        return tasklet.run_slice(env, src, 30.0, budget=budget)
    return slice_in(python, env, src, budget=budget)


def run_across(src, args, first, then, hops_first):
    """``hops_first`` slices of budget 3 on ``first``, the rest on ``then``; None: this CPython."""
    env = tasklet.start(src, "job", list(args), {})
    for n in range(10000):
        out = hop(first if n < hops_first else then, env, src, 3 if n < hops_first else 40)
        if out.finished:
            if out.error is not None:
                return ("error", out.error.split(":")[0])
            return tasklet.decode_result(out.result)
        env = out.envelope
    raise AssertionError("did not finish")


CROSS = settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@CROSS
@given(program(), ARGS, st.integers(1, 4))
def test_generated_program_frozen_on_cpython_resumes_on_pypy(src, args, hops_first):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    assert run_across(src, args, None, pypy, hops_first) == native(src, "job", copied(args))


@CROSS
@given(program(), ARGS, st.integers(1, 4))
def test_generated_program_frozen_on_pypy_resumes_on_cpython(src, args, hops_first):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    assert run_across(src, args, pypy, None, hops_first) == native(src, "job", copied(args))
