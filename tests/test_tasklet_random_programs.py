"""Random programs (nested for/while/if, break/continue/else, try/except/
finally, job calls, returns) run sliced at random back-edges equal their
native run: the continuation builder's property test."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.jobs.support import frozen, native

HELPERS = """
def helper(x):
    s = 0
    for i in range(x % 4):
        s += i
    return s + x


def thrower(x):
    for i in range(2):
        pass
    if x % 5 == 3:
        raise ZeroDivisionError(x)
    return x + 1
"""


@st.composite
def block(draw, depth, in_loop, counter):
    n = draw(st.integers(1, 3))
    lines = []
    for _ in range(n):
        lines.extend(draw(statement(depth, in_loop, counter)))
    return lines


def indent(lines):
    return ["    " + ln for ln in lines]


@st.composite
def statement(draw, depth, in_loop, counter):
    simple = [
        lambda: ["acc = (acc * 31 + %d) %% 1000003" % draw(st.integers(0, 9))],
        lambda: ["log.append(acc %% %d)" % draw(st.integers(2, 9))],
        lambda: ["acc += helper(acc %% %d)" % draw(st.integers(2, 9))],
        lambda: ["log.append(thrower(acc) + helper(len(log)))"],
    ]
    if in_loop:
        simple += [
            lambda: ["if acc %% %d == 0:" % draw(st.integers(2, 5)), "    break"],
            lambda: ["if acc %% %d == 1:" % draw(st.integers(2, 5)), "    continue"],
        ]
    if depth >= 3:
        return draw(st.sampled_from(simple))()
    kind = draw(st.integers(0, len(simple) + 4))
    if kind < len(simple):
        return simple[kind]()
    counter[0] += 1
    c = counter[0]
    if kind == len(simple):
        head = ["for v%d in range(%d):" % (c, draw(st.integers(0, 4)))]
        body = indent(draw(block(depth + 1, True, counter)))
        tail = ["else:"] + indent(draw(block(depth + 1, in_loop, counter))) if draw(st.booleans()) else []
        return head + body + tail
    if kind == len(simple) + 1:
        return ["w%d = 0" % c, "while w%d < %d:" % (c, draw(st.integers(0, 4))), "    w%d += 1" % c] + indent(
            draw(block(depth + 1, True, counter))
        )
    if kind == len(simple) + 2:
        return (
            ["if acc %% 3 == %d:" % draw(st.integers(0, 2))]
            + indent(draw(block(depth + 1, in_loop, counter)))
            + ["else:"]
            + indent(draw(block(depth + 1, in_loop, counter)))
        )
    if kind == len(simple) + 3:
        out = ["try:"] + indent(draw(block(depth + 1, in_loop, counter)))
        out += ["except ZeroDivisionError:", "    log.append('zde')"]
        if draw(st.booleans()):
            out += ["finally:", "    log.append('fin')"]
        return out
    return ["if acc %% 11 == %d:" % draw(st.integers(0, 10)), "    return acc, log"]


@st.composite
def program(draw):
    counter = [0]
    body = draw(block(0, False, counter))
    lines = ["def job(seed):", "    acc = seed", "    log = []"] + indent(body)
    lines.append("    return acc, log")
    return HELPERS + "\n\n" + "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(program(), st.integers(0, 50), st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_random_program_sliced_equals_native(src, seed, schedule):
    expected = native(src, "job", [seed])
    got, _ = frozen(src, "job", [seed], budgets=schedule)
    assert got == expected, src
