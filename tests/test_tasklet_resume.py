"""Freeze/thaw equivalence: a job sliced at random back-edges, with its state
passed through bytes between every slice, returns what the native call returns."""

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.jobs.support import frozen, native, source

small_ints = st.lists(st.integers(-50, 50), max_size=9)
budgets = st.lists(st.integers(1, 12), min_size=1, max_size=6)
SETTINGS = settings(max_examples=20, deadline=None)


def check(name, entry, args, schedule):
    src = source(name)
    expected = native(src, entry, args)
    got, _ = frozen(src, entry, args, budgets=schedule)
    assert got == expected


@SETTINGS
@given(small_ints, budgets)
def test_bubble_sort_survives_any_schedule(xs, schedule):
    check("bubble_sort", "bubble_sort", [xs], schedule)


@SETTINGS
@given(st.lists(st.integers(-3, 40), max_size=6), budgets)
def test_find_factors_break_continue_else(numbers, schedule):
    check("factors", "find_factors", [numbers], schedule)


@SETTINGS
@given(st.lists(st.text("abcxqz", max_size=4), max_size=4), st.integers(0, 5), budgets)
def test_nested_loops_over_every_iterable_kind(words, limit, schedule):
    check("nested_loops", "mix", [words, limit], schedule)


@SETTINGS
@given(small_ints, budgets)
def test_recursive_quicksort(xs, schedule):
    check("quicksort", "sort_copy", [xs], schedule)


@SETTINGS
@given(st.integers(0, 2), st.integers(0, 3), budgets)
def test_small_ackermann_deep_recursion(m, n, schedule):
    check("ackermann", "ack_table", [m, n], schedule)


@SETTINGS
@given(st.lists(st.integers(0, 9), max_size=8), budgets)
def test_try_except_finally_inside_loops(values, schedule):
    check("try_loops", "run", [values], schedule)


@SETTINGS
@given(st.lists(st.tuples(st.integers(-5, 5), st.integers(-5, 5)).map(list), max_size=6), budgets)
def test_class_instances_and_module_cache_in_state(coords, schedule):
    check("shapes", "build", [coords], schedule)


@SETTINGS
@given(st.integers(0, 30), st.integers(1, 5), budgets)
def test_generator_job_resumes_from_its_checkpoint(n, step, schedule):
    src = source("gen_job")
    got, _ = frozen(src, "partial_sums", [n], {"step": step}, budgets=schedule)
    assert got == native(src, "partial_sums", [n], {"step": step})


@SETTINGS
@given(st.lists(st.integers(-2, 5), max_size=6), budgets)
def test_uncaught_error_is_reported_after_resumes(xs, schedule):
    check("failing", "divide_all", [xs], schedule)


def test_budget_one_stops_at_every_back_edge():
    src = source("bubble_sort")
    _, hops = frozen(src, "bubble_sort", [[3, 2, 1]], budgets=[1])
    # entry + 3 passes of the while + 2 + 1 + 0 for-iterations, +1 final slice
    assert hops >= 7


@SETTINGS
@given(st.integers(0, 6), st.integers(1, 4), st.lists(st.integers(1, 5), min_size=1, max_size=4))
def test_tight_range_loops_checked_per_chunk(n, step, schedule):
    check("tight", "tight", [n, step], schedule)


SHORT_AND_LONG = """
def f(n, extra):
    acc = 0
    for i in range(n):
        for j in range(i + extra):
            acc += j * i
    return acc
"""


def test_range_loops_of_one_chunk_stop_where_chunked_ones_do():
    # a call-free range loop of <= 256 items runs natively (no offsets loop, no slice) but keeps
    # its one stop: budget=1 stops at the entry, at each outer iteration and once per non-empty
    # inner loop (twice for 257..512 items: one stop per chunk), and the answer is the native one
    n = 5
    for extra, chunks in ((0, 4), (250, 5), (252, 5), (253, 6), (256, 9), (300, 10)):
        got, hops = frozen(SHORT_AND_LONG, "f", [n, extra], budgets=[1])
        assert got == native(SHORT_AND_LONG, "f", [n, extra])
        assert chunks == sum(-(-(i + extra) // 256) for i in range(n))  # the figure, checked by hand
        assert hops == 1 + n + chunks + 1, (extra, hops)
    # and stopped anywhere in between, every schedule gives the native answer
    for schedule in ([2], [3, 1], [5, 7, 2]):
        for extra in (0, 3, 256, 257):
            got, _ = frozen(SHORT_AND_LONG, "f", [4, extra], budgets=schedule)
            assert got == native(SHORT_AND_LONG, "f", [4, extra])
