"""Loop iterators are frozen as their own position: a thawed loop goes on exactly as the native
one would, also when the body mutates what it iterates, and nothing is materialized."""

import copy
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market import tasklet
from tests.jobs.support import frozen, native
from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in

BEAD_SORT = """
def bead_sort(seq):
    # the corpus' bead sort: the body mutates the list the enumerate/zip walks
    for _ in range(len(seq)):
        for i, (rod_upper, rod_lower) in enumerate(zip(seq, seq[1:])):
            if rod_upper > rod_lower:
                seq[i] -= rod_upper - rod_lower
                seq[i + 1] += rod_upper - rod_lower
    return seq
"""

PREFIX_SUMS = """
def prefix(xs):
    for i, x in enumerate(xs):
        if i + 1 < len(xs):
            xs[i + 1] += x
    return xs
"""

ZIP_SHIFT = """
def shift(xs, ys):
    out = []
    for a, b in zip(xs, ys):
        ys[len(out) + 1 if len(out) + 1 < len(ys) else 0] += a
        out.append(a + b)
    return out, ys
"""


def run_both(src, entry, args, budgets=(1,)):
    expected = native(src, entry, copy.deepcopy(args))
    got, hops = frozen(src, entry, copy.deepcopy(args), budgets=budgets)
    return expected, got, hops


def test_bead_sort_with_a_freeze_at_every_back_edge_sorts():
    data = [5, 4, 3, 2, 1, 9, 0, 7]
    expected, got, hops = run_both(BEAD_SORT, "bead_sort", [data])
    assert got == expected == sorted(data)
    assert hops > 20


def test_enumerate_sees_the_values_the_body_wrote_after_a_thaw():
    expected, got, _ = run_both(PREFIX_SUMS, "prefix", [[1, 2, 3, 4, 5, 6]])
    assert got == expected == [1, 3, 6, 10, 15, 21]


def test_zip_sees_the_values_the_body_wrote_after_a_thaw():
    expected, got, _ = run_both(ZIP_SHIFT, "shift", [[1, 2, 3, 4], [10, 20, 30, 40]])
    assert got == expected


KINDS = {
    "list": "xs",
    "tuple": "tuple(xs)",
    "str": "'abcdef'[:len(xs)]",
    "bytes": "b'abcdef'[:len(xs)]",
    "bytearray": "bytearray(b'abcdef'[:len(xs)])",
    "range": "range(1, 3 * len(xs), 3)",
    "reversed list": "reversed(xs)",
    "reversed tuple": "reversed(tuple(xs))",
    "reversed range": "reversed(range(len(xs)))",
    "enumerate": "enumerate(xs, 10)",
    "zip": "zip(xs, range(100))",
    "map builtin": "map(abs, xs)",
    "map two lists": "map(operator.add, xs, xs)",
    "map operator": "map(operator.mul, xs, xs)",
    "filter": "filter(bool, xs)",
    "filter None": "filter(None, xs)",
    "dict": "d",
    "dict keys": "d.keys()",
    "dict values": "d.values()",
    "dict items": "d.items()",
    "set": "set(xs)",
    "enumerate(zip)": "enumerate(zip(xs, reversed(xs)))",
    "zip(map, filter)": "zip(map(operator.sub, xs, xs), filter(operator.not_, range(50)))",
    "enumerate(dict items)": "enumerate(d.items())",
}

KIND_JOB = """
import operator


def walk(xs):
    d = {x: x * x for x in xs}
    seen = []
    for item in ITER:
        seen.append(item)
        if xs:
            xs[-1] += 1
        for k in d:
            d[k] += 1
    return seen, xs, d
"""


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_each_iterator_kind_frozen_at_every_position_equals_native(kind):
    src = KIND_JOB.replace("ITER", KINDS[kind])
    for n in range(0, 6):
        xs = [3, -1, 4, 1, -5, 9][:n]
        expected, got, _ = run_both(src, "walk", [xs])
        assert got == expected, (kind, n)


def test_dict_values_changed_during_iteration_are_seen_after_a_thaw():
    src = """
def bump(d):
    out = []
    for k, v in d.items():
        out.append(v)
        for j in d:
            if j > k:
                d[j] += v
    return out
"""
    expected, got, _ = run_both(src, "bump", [{1: 1, 2: 2, 3: 3, 4: 4}])
    assert got == expected


def test_dict_size_change_during_iteration_still_raises():
    src = """
def grow(d):
    for k in d:
        d[k + 100] = 1
    return d
"""
    assert run_both(src, "grow", [{1: 1, 2: 2}])[1] == ("error", "RuntimeError")


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_dict_size_change_before_a_freeze_inside_the_body_still_raises_after_the_thaw(budget):
    src = """
def helper(x):
    return x + 1


def grow(d):
    n = 0
    for k in d:
        d[k + 100] = 1
        n = helper(n)
    return d, n
"""
    assert run_both(src, "grow", [{1: 1, 2: 2}], budgets=(budget,))[1] == ("error", "RuntimeError")


GROWN_BY_A_CALLEE = """
def grow(c, n):
    C_ADD
    return n + 1


def walk(c):
    n = 0
    for k in LOOP:
        n = grow(c, n)
    return n
"""


@pytest.mark.parametrize("budget", [1, 2, 3])
@pytest.mark.parametrize(
    "container, add, loop",
    [
        ({1: 1, 2: 2, 3: 3}, "c[100] = 1", "c"),
        ({1: 1, 2: 2, 3: 3}, "c[100] = 1", "c.items()"),
        ({1: 1, 2: 2, 3: 3}, "c[100] = 1", "c.values()"),
    ],
)
def test_size_change_by_a_callee_frozen_at_its_entry_still_raises_after_the_thaw(budget, container, add, loop):
    # the caller's frame (and its loop iterator) is thawed only when the callee returns, after
    # the change: the thawed iterator must be as broken as the native one (issue 18: it went on)
    src = GROWN_BY_A_CALLEE.replace("C_ADD", add).replace("LOOP", loop)
    expected, got, _ = run_both(src, "walk", [container], budgets=(budget,))
    assert expected == ("error", "RuntimeError")
    assert got == expected


def test_a_loop_over_a_generator_expression_is_refused_at_submission_instead_of_a_stale_answer():
    src = """
def job(xs):
    out = []
    for x in (v * 2 for v in xs):
        out.append(x)
        xs[-1] += 100
    return out
"""
    # it could not freeze (its items would be computed at the freeze): refused, not failing later
    with pytest.raises(tasklet.JobRefused, match="line 4: a generator expression cannot be frozen"):
        tasklet.start(src, "job", [[1, 2, 3]], {})


def test_map_over_a_local_lambda_is_refused_at_submission():
    src = """
def job(xs):
    total = 0
    for v in map(lambda x: x * 2, xs):
        total += v
    return total
"""
    # refused at submission (a lambda made while the job runs cannot be frozen), not at freeze time
    with pytest.raises(tasklet.JobRefused, match="line 4: a lambda made while the job runs"):
        tasklet.start(src, "job", [[1, 2, 3]], {})


def test_a_long_enumerate_is_not_materialized_in_the_state():
    src = """
def job(n):
    xs = list(range(n))
    total = 0
    for i, x in enumerate(zip(xs, xs)):
        total += i
    return total
"""
    env = tasklet.start(src, "job", [20000], {})
    out = tasklet.run_slice(env, src, 10, budget=3)
    assert not out.finished
    # the state holds xs once (shared by the descriptor), not a copy of the remaining items
    assert len(out.envelope) < 1.1 * len(tasklet.codec.encode(list(range(20000))))


@pytest.mark.parametrize("budget", [1, 3])
def test_state_frozen_in_a_nested_iterator_on_cpython_finishes_on_pypy(budget):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    data = [5, 4, 3, 2, 1, 9, 0, 7]
    env = tasklet.start(BEAD_SORT, "bead_sort", [data], {})
    for _ in range(5):
        env = tasklet.run_slice(env, BEAD_SORT, 30, budget=budget).envelope
    out = slice_in(pypy, env, BEAD_SORT, budget=budget)
    hops = 0
    while not out.finished and hops < 4:  # a few hops on PyPy, each frozen there
        out = slice_in(pypy, out.envelope, BEAD_SORT, budget=budget)
        hops += 1
    while not out.finished:  # and back on CPython
        out = tasklet.run_slice(out.envelope, BEAD_SORT, 30, budget=budget)
    assert out.error is None
    assert tasklet.decode_result(out.result) == sorted(data)


def test_state_frozen_on_pypy_in_every_kind_finishes_on_cpython():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    for kind in ("enumerate(zip)", "zip(map, filter)", "dict items", "reversed range", "map operator"):
        src = KIND_JOB.replace("ITER", KINDS[kind])
        xs = [3, -1, 4, 1, -5, 9]
        out = slice_in(pypy, tasklet.start(src, "walk", [list(xs)], {}), src, budget=4)
        assert not out.finished, kind
        while not out.finished:
            out = tasklet.run_slice(out.envelope, src, 30, budget=2)
        assert tasklet.decode_result(out.result) == native(src, "walk", [list(xs)]), kind


# -- random nestings ----------------------------------------------------------

_LEAVES = ["xs", "tuple(xs)", "range(len(xs))", "reversed(xs)", "d", "d.values()", "d.items()"]


@st.composite
def nestings(draw, depth=0):
    if depth >= 2 or draw(st.booleans()):
        return draw(st.sampled_from(_LEAVES))
    kind = draw(
        st.sampled_from(
            ["enumerate", "zip", "map", "filter", "islice", "chain", "product", "zip_longest", "accumulate", "cycle"]
        )
    )
    inner = draw(nestings(depth + 1))
    if kind == "islice":
        return "itertools.islice(%s, %d, None, %d)" % (inner, draw(st.integers(0, 3)), draw(st.integers(1, 3)))
    if kind == "chain":
        return "itertools.chain(%s, %s)" % (inner, draw(nestings(depth + 1)))
    if kind == "product":
        return "itertools.product(%s, %s)" % (inner, draw(nestings(depth + 1)))
    if kind == "zip_longest":
        return "itertools.zip_longest(%s, %s)" % (inner, draw(nestings(depth + 1)))
    if kind == "accumulate":
        return "itertools.accumulate(map(repr, %s))" % inner
    if kind == "cycle":
        return "itertools.islice(itertools.cycle(%s), %d)" % (inner, draw(st.integers(0, 12)))
    if kind == "enumerate":
        return "enumerate(%s, %d)" % (inner, draw(st.integers(-3, 3)))
    if kind == "zip":
        return "zip(%s, %s)" % (inner, draw(nestings(depth + 1)))
    if kind == "map":
        return "map(repr, %s)" % inner
    if kind == "filter":
        return "filter(bool, %s)" % inner
    return inner


PROPERTY_JOB = """
import itertools


def walk(xs, step):
    d = {i: x for i, x in enumerate(xs)}
    seen = []
    for item in %s:
        seen.append(repr(item))
        if xs:
            xs[len(seen) %% len(xs)] += step
            d[len(seen) %% len(xs)] = step
    return seen, xs, d
"""


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nest=nestings(),
    xs=st.lists(st.integers(-5, 5), max_size=7),
    step=st.integers(-2, 2),
    budgets=st.lists(st.integers(1, 6), min_size=1, max_size=4),
)
def test_random_nestings_with_mutation_sliced_at_random_back_edges_equal_native(nest, xs, step, budgets):
    src = PROPERTY_JOB % nest
    expected = native(src, "walk", [list(xs), step])
    got, _ = frozen(src, "walk", [list(xs), step], budgets=budgets)
    assert got == expected, nest


# -- itertools ----------------------------------------------------------------

PERMUTATION_SEARCH = """
import itertools


def search(n):
    best = None
    for p in itertools.permutations(range(n)):
        score = sum(i * v for i, v in enumerate(p)) % 97
        if best is None or score > best[0]:
            best = (score, p)
    return best
"""

COUNT_SEARCH = """
import itertools


def first_square_over(limit):
    for i in itertools.count(1):
        if i * i > limit:
            return i
"""


def test_a_loop_over_count_freezes_without_materializing_and_finishes():
    expected, got, hops = run_both(COUNT_SEARCH, "first_square_over", [2000], budgets=(1,))
    assert got == expected == 45
    assert hops > 40


def test_a_search_through_5040_permutations_frozen_often_is_fast_and_its_state_small():
    t0 = time.perf_counter()
    expected, got, hops = run_both(PERMUTATION_SEARCH, "search", [7], budgets=(97, 1, 13))
    assert got == expected
    assert hops > 100
    assert time.perf_counter() - t0 < 20  # was a hang: the rest of the permutations in every state
    env = tasklet.start(PERMUTATION_SEARCH, "search", [9], {})
    out = tasklet.run_slice(env, PERMUTATION_SEARCH, 10, budget=5)
    assert not out.finished and len(out.envelope) < 2000  # 362,880 permutations remain


ITERTOOLS_KINDS = {
    "count": "itertools.islice(itertools.count(5, 3), len(xs) + 2)",
    "count float": "zip(xs, itertools.count(0.5, 0.25))",
    "repeat": "itertools.repeat(xs, 3)",
    "repeat forever": "zip(xs, itertools.repeat('r'))",
    "cycle": "itertools.islice(itertools.cycle(xs), 2 * len(xs) + 1)",
    "islice": "itertools.islice(xs, 1, None, 2)",
    "islice stop": "itertools.islice(enumerate(xs), 3)",
    "chain": "itertools.chain(xs, reversed(xs), 'ab')",
    "chain.from_iterable": "itertools.chain.from_iterable([xs, 'ab', range(3)])",
    "accumulate": "itertools.accumulate(xs)",
    "accumulate mul initial": "itertools.accumulate(xs, operator.mul, initial=2)",
    "permutations": "itertools.permutations(xs[:4])",
    "permutations r": "itertools.permutations(xs, 2)",
    "combinations": "itertools.combinations(xs, 3)",
    "combinations_with_replacement": "itertools.combinations_with_replacement(xs[:4], 2)",
    "product": "itertools.product(xs[:3], 'ab', repeat=2)",
    "product of ranges": "itertools.product(range(len(xs)), range(3))",
    "zip_longest": "itertools.zip_longest(xs, 'abc', fillvalue='-')",
    "starmap": "itertools.starmap(operator.add, zip(xs, xs))",
    "takewhile": "itertools.takewhile(bool, xs)",
    "dropwhile": "itertools.dropwhile(bool, xs)",
    "filterfalse": "itertools.filterfalse(None, xs)",
    "compress": "itertools.compress(xs, itertools.cycle([1, 0, 1]))",
    "pairwise of enumerate": "itertools.pairwise(enumerate(xs))",
    "nested": "enumerate(itertools.islice(itertools.product(xs, itertools.chain(xs, [0])), 2, None))",
}

ITERTOOLS_JOB = """
import itertools
import operator


def walk(xs):
    seen = []
    for item in ITER:
        seen.append(repr(item))
        if xs:
            xs[len(seen) % len(xs)] += 1
    return seen, xs
"""


@pytest.mark.parametrize("kind", sorted(ITERTOOLS_KINDS))
def test_each_itertools_kind_frozen_at_every_position_equals_native(kind):
    if kind.startswith("pairwise") and sys.version_info < (3, 10):
        pytest.skip("itertools.pairwise is 3.10+")
    src = ITERTOOLS_JOB.replace("ITER", ITERTOOLS_KINDS[kind])
    for n in range(0, 6):
        xs = [3, 0, 4, 1, -5, 9][:n]
        expected, got, _ = run_both(src, "walk", [xs])
        assert got == expected, (kind, n)


def test_an_itertools_object_held_in_a_local_freezes_as_its_state():
    src = """
import itertools


def job(n):
    ids = itertools.count(100)
    pairs = itertools.combinations(range(n), 2)
    out = []
    while len(out) < 12:
        out.append((next(ids), next(pairs, None)))
    return out
"""
    expected, got, hops = run_both(src, "job", [4], budgets=(1, 2))
    assert got == expected and hops >= 8


def test_a_loop_over_groupby_is_refused_at_submission_and_says_why():
    src = """
import itertools


def job(xs):
    out = []
    for k, g in itertools.groupby(xs):
        out.append((k, len(list(g))))
    return out
"""
    with pytest.raises(tasklet.JobRefused, match=r"line 7: groupby\(...\) cannot be frozen.*list\(g\)"):
        tasklet.start(src, "job", [[1, 1, 2]], {})


def test_state_frozen_in_itertools_on_cpython_finishes_on_pypy_and_back():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    for kind in ("nested", "chain", "cycle", "zip_longest", "accumulate mul initial", "product"):
        src = ITERTOOLS_JOB.replace("ITER", ITERTOOLS_KINDS[kind])
        xs = [3, 0, 4, 1, -5, 9]
        env = tasklet.start(src, "walk", [list(xs)], {})
        env = tasklet.run_slice(env, src, 30, budget=4).envelope
        out = slice_in(pypy, env, src, budget=3)
        assert not out.finished, kind
        while not out.finished:
            out = tasklet.run_slice(out.envelope, src, 30, budget=2)
        assert tasklet.decode_result(out.result) == native(src, "walk", [list(xs)]), kind


def test_dict_size_change_frozen_on_pypy_still_raises_on_cpython():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    src = """
def helper(x):
    return x + 1


def grow(d):
    n = 0
    for k in d:
        d[k + 100] = 1
        n = helper(n)
    return d, n
"""
    out = slice_in(pypy, tasklet.start(src, "grow", [{1: 1, 2: 2}], {}), src, budget=3)
    assert not out.finished
    out = tasklet.run_slice(out.envelope, src, 30)
    assert out.finished and out.error.startswith("RuntimeError")


def test_an_itertools_object_used_by_a_loop_and_by_next_keeps_one_position():
    src = """
import itertools


def job(xs):
    ids = itertools.count(7)
    pool = itertools.permutations(xs, 2)
    out = []
    for x, i in zip(xs, ids):
        out.append((x, i, next(ids), next(pool)))
    for p in itertools.islice(pool, 3):
        out.append((p, next(ids)))
    return out, next(ids), list(pool)
"""
    for budgets in [(1,), (2, 3), (5,)]:
        expected, got, _ = run_both(src, "job", [[4, 5, 6, 7]], budgets=budgets)
        assert got == expected


def test_itertools_imported_in_a_function_freezes_on_pypy():
    # PyPy's import statement ignores an __import__ hook in the job's builtins: the job's itertools
    # are bound at compile time instead (this failed on PyPy with "a value of type type")
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    src = """
def job(n):
    from itertools import permutations, count
    import itertools as it
    best = 0
    for p, i in zip(permutations(range(n)), count()):
        for q in it.islice(it.cycle(p), n + 1):
            best = max(best, q * i % 7)
    return best
"""
    env = tasklet.start(src, "job", [5], {})
    out = slice_in(pypy, env, src, budget=3)
    hops = 0
    while not out.finished:
        out = slice_in(pypy, out.envelope, src, budget=50) if hops < 3 else tasklet.run_slice(out.envelope, src, 30)
        hops += 1
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(src, "job", [5])


def test_enumerate_over_a_list_frozen_on_pypy_at_its_last_item():
    # PyPy's enumerate(list) reduces to (the list, index), not to a list iterator: this failed to
    # freeze on PyPy ("a loop over a list cannot be frozen"), found by tests/test_tasklet_programs.py
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    src = """
def job(xs):
    acc = 0
    for i, v in enumerate(xs):
        xs.append(v + 1) if len(xs) < 4 else None
        acc = acc * 31 + i * v
    return acc, xs
"""
    for xs in ([0], [3, 1]):
        out = slice_in(pypy, tasklet.start(src, "job", [list(xs)], {}), src, budget=1)
        while not out.finished:
            assert out.error is None
            out = slice_in(pypy, out.envelope, src, budget=1)
        assert out.error is None
        assert tasklet.decode_result(out.result) == native(src, "job", [list(xs)])
