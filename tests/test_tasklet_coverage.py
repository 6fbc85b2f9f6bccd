"""Constructs real code uses, accepted and run exactly: sliced at every back-edge, across a
process hop and (for annotations) on PyPy 3.9, each equal to the plain call of the module."""

import glob
import os
import sys
import types

import pytest

from market import tasklet
from tests.jobs.support import frozen
from tests.test_tasklet_portability import PYPY, interpreter_or_skip, slice_in


def native(src, entry, args):
    """The plain call of the module as written: a real module, no __future__ flags of this file."""
    module = types.ModuleType("native_coverage")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    try:
        exec(compile(src, "<native>", "exec", dont_inherit=True), module.__dict__)
        value = getattr(module, entry)(*args)
    finally:
        del sys.modules[module.__name__]
    classes = {k: v for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__}
    return tasklet.decode_result(tasklet.codec.encode(value, classes))


ANNOTATIONS = """
from __future__ import annotations
from typing import Optional, Callable, TypeVar
import typing

T = TypeVar("T")
LIMIT: int = 3
UNSET: int | None


class Box:
    size: int | None = None
    label: str

    def __init__(self, size: int | None) -> None:
        self.size: int | None = size


def pick(xs: list[T], key: Callable[[T], int] | None = None) -> Optional[T]:
    best: T | None = None
    seen: int
    for x in xs:
        if best is None or x > best:
            best = x
    return best


def run(n: int, *rest: int | str, **named: typing.Any) -> dict[str, int | None]:
    total: int = 0
    boxes: list[Box] = []
    for i in range(n):
        b: Box = Box(i if i % 2 else None)
        boxes.append(b)
        total += i * LIMIT
    best = pick([b.size or 0 for b in boxes])
    return {"total": total, "best": best, "count": len(boxes)}
"""

FUNCTION_TABLE = """
import operator
import math
from functools import reduce

OPS = {"+": operator.add, "-": operator.sub, "*": lambda a, b: a * b, "max": max, "hyp": math.hypot}
STEPS = [abs, round, int, lambda v: v + 1]
CALLS = []


def run(xs):
    acc = {}
    for name in sorted(OPS):
        op = OPS[name]
        value = xs[0]
        for x in xs[1:]:
            value = op(value, x)
        acc[name] = value
        CALLS.append(op)
    fold = reduce(OPS["+"], xs)
    for step in STEPS:
        fold = step(fold)
    return acc, fold, len(CALLS), CALLS[0] is OPS[sorted(OPS)[0]]
"""

BUILTIN_LOCALS = """
import math
import operator as op


def run(xs):
    best = max
    fn = math.sqrt
    mod = math
    key = str.lower
    cmp = op.lt
    kind = int
    out = []
    for i, x in enumerate(xs):
        best = min if i % 2 else max
        out.append((best(x, 3), fn(x), mod.floor(x / 2), key("AB"), cmp(x, 2), kind(x * 1.5)))
    return out
"""

DATACLASSES = """
from dataclasses import dataclass, field, asdict, replace
import dataclasses


@dataclass(order=True)
class Item:
    weight: int
    name: str = ""
    tags: list = field(default_factory=list)


@dataclass(frozen=True)
class Point:
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Bag:
    items: list[Item] = field(default_factory=list)

    def total(self) -> int:
        return sum(i.weight for i in self.items)


def run(n):
    bag = Bag()
    points = []
    for i in range(n):
        bag.items.append(Item(i * 7 % 5, "i%d" % i, [i]))
        points.append(Point(i, i / 2))
    moved = [replace(p, x=p.x + 1) for p in points]
    return sorted(bag.items)[0].name, bag.total(), asdict(bag.items[-1]), moved[-1] == Point(n, (n - 1) / 2)
"""

IMPORTS_IN_FUNCTIONS = """
from collections.abc import Iterable, Mapping


def flatten(x):
    from itertools import chain
    import heapq
    out = []
    for item in x:
        if isinstance(item, Iterable) and not isinstance(item, (str, Mapping)):
            out.extend(flatten(item))
        else:
            heapq.heappush(out, item)
    return sorted(chain(out, []))


def run(data):
    import collections.abc
    total = 0
    for part in data:
        total += len(flatten(part)) + isinstance(part, collections.abc.Sequence)
    return total, flatten(data)
"""

CLASSES_AND_MAKERS = """
from operator import itemgetter, attrgetter
from functools import partial, cmp_to_key

BY_SECOND = itemgetter(1)
KEYS = [itemgetter(0), attrgetter("real"), partial(pow, 2)]


class Node:
    def __init__(self, v):
        self.v = v


CMP = lambda a, b: (a > b) - (a < b)


def run(pairs):
    factory = Node
    key = BY_SECOND
    out = []
    for p in pairs:
        node = factory(p)
        out.append(node.v)
        first, real, twice = KEYS
        out.append((first(p), real(p[1]), twice(p[1])))
    return sorted(pairs, key=key), sorted(pairs, key=itemgetter(0)), out, sorted([3, 1, 2], key=cmp_to_key(CMP))
"""

RANDOM_HELD = """
import random
FUNCS = [random.random, random.randint]


def job(n):
    import random as r
    import math
    r.seed(n)
    draw = r.uniform
    t = []
    for i in range(n):
        t.append((r.random(), FUNCS[1](1, 9), math.floor(FUNCS[0]() * 10), draw(0, 1)))
    return t
"""

CASES = [
    ("annotations", ANNOTATIONS, "run", [7]),
    ("function_table", FUNCTION_TABLE, "run", [[5, 3, 8, 1]]),
    ("builtin_locals", BUILTIN_LOCALS, "run", [[4, 9, 16, 2]]),
    ("dataclasses", DATACLASSES, "run", [6]),
    ("imports_in_functions", IMPORTS_IN_FUNCTIONS, "run", [[[1, [2, 3]], (4, 5), [[6]]]]),
    ("classes_and_makers", CLASSES_AND_MAKERS, "run", [[[3, 1], [1, 2], [2, 0]]]),
    ("random_held", RANDOM_HELD, "job", [6]),
]


@pytest.mark.parametrize("name,src,entry,args", CASES, ids=[c[0] for c in CASES])
def test_construct_sliced_at_every_back_edge_equals_native(name, src, entry, args):
    expected = native(src, entry, args)
    value, hops = frozen(src, entry, args, budgets=(1,))
    assert hops > 3  # it really was frozen and thawed many times
    assert value == expected


@pytest.mark.parametrize("name,src,entry,args", CASES, ids=[c[0] for c in CASES])
def test_construct_resumed_in_a_fresh_process_equals_native(name, src, entry, args):
    env = tasklet.start(src, entry, args, {})
    out = tasklet.run_slice(env, src, 30, budget=3)
    assert not out.finished
    out = slice_in(sys.executable, out.envelope, src, budget=2)  # a fresh interpreter thaws and freezes it
    assert out.error is None
    while not out.finished:
        out = tasklet.run_slice(out.envelope, src, 30, budget=2)
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(src, entry, args)


@pytest.mark.parametrize("name,src,entry,args", CASES, ids=[c[0] for c in CASES])
def test_construct_finishes_on_pypy(name, src, entry, args):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    env = tasklet.start(src, entry, args, {})
    out = tasklet.run_slice(env, src, 30, budget=2)
    assert not out.finished
    out = slice_in(pypy, out.envelope, src, budget=2)
    assert out.error is None
    while not out.finished:
        out = slice_in(pypy, out.envelope, src)
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(src, entry, args)


def test_union_annotations_run_on_python_3_9():
    # `int | None` in an evaluated annotation raises TypeError on 3.9: annotations are stripped
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9.*/bin/python3.9")))
    if not found:
        pytest.skip("python3.9 not installed")
    python = found[-1]
    env = tasklet.start(ANNOTATIONS, "run", [5], {})
    out = slice_in(python, env, ANNOTATIONS, budget=4)
    assert out.error is None
    while not out.finished:
        out = slice_in(python, out.envelope, ANNOTATIONS)
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(ANNOTATIONS, "run", [5])


def test_module_level_dict_of_lambdas_and_operators_freezes():
    # issue 18: every freeze failed ("a value of type function cannot be frozen")
    src = "import operator\nOPS = {'+': operator.add, 'sq': lambda v: v * v}\n\ndef job(n):\n"
    src += "    t = 0\n    for i in range(n):\n        t = OPS['+'](t, OPS['sq'](i))\n    return t\n"
    value, hops = frozen(src, "job", [10], budgets=(1,))
    assert value == 285 and hops > 10


def test_local_holding_a_builtin_freezes():
    # issue 18: passed the validator, then failed at freeze time
    src = "def job(xs):\n    f = max\n    best = xs[0]\n    for x in xs:\n        best = f(best, x)\n    return best\n"
    value, hops = frozen(src, "job", [[3, 9, 2]], budgets=(1,))
    assert value == 9 and hops > 3


def test_a_thawed_reference_is_the_fresh_modules_object():
    src = "SQ = lambda v: v * v\nTABLE = [SQ]\n\ndef job(n):\n    for i in range(n):\n        pass\n"
    src += "    return TABLE[0] is SQ\n"
    value, _ = frozen(src, "job", [3], budgets=(1,))
    assert value is True


def test_state_holding_references_is_deterministic():
    env = tasklet.start(FUNCTION_TABLE, "run", [[5, 3, 8, 1]], {})
    a = tasklet.run_slice(env, FUNCTION_TABLE, 30, budget=7).envelope
    b = slice_in(sys.executable, env, FUNCTION_TABLE, budget=7).envelope
    assert a == b


def test_unknown_reference_in_a_state_is_refused_before_the_job_runs():
    from market.tasklet import codec
    from market.tasklet.refs import References

    refs = References({}, (), ["math"])
    assert refs.resolve(refs.name_of(max) or "") is max
    assert refs.name_of(eval) is None  # what a job may not use has no name
    for bad in ("builtins:_private", "os:system", "mod:os", "lambda:3", "job:Nope", "math:__loader__", "builtins:eval"):
        with pytest.raises(codec.CodecError):
            refs.resolve(bad)


def test_union_annotation_without_future_import_runs_on_python_3_9():
    # issue 18: validated on 3.11, then "TypeError: unsupported operand type(s) for |" on a 3.9 worker
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9.*/bin/python3.9")))
    if not found:
        pytest.skip("python3.9 not installed")
    src = "LIMIT: int | None = 4\n\nclass Acc:\n    total: int | None = 0\n\n"
    src += "def job(n: int | None = None) -> int | None:\n    t: int | None = 0\n"
    src += "    for i in range(n or LIMIT):\n        t += i\n    return t\n"
    out = slice_in(found[-1], tasklet.start(src, "job", [5], {}), src, budget=2)
    while not out.finished:
        out = slice_in(found[-1], out.envelope, src)
    assert out.error is None
    assert tasklet.decode_result(out.result) == 10


def test_function_of_a_job_class_held_in_a_local_freezes():
    src = "class P:\n    def f(self):\n        return 2\n\n    @staticmethod\n    def s(v):\n        return v\n\n"
    src += "def job(n):\n    g = P.f\n    h = P.s\n    t = 0\n    for i in range(n):\n        t += g(P()) + h(i)\n"
    src += "    return t\n"
    value, hops = frozen(src, "job", [4], budgets=(1,))
    assert value == native(src, "job", [4]) == 14 and hops > 4


RANDOM = """
import random
from random import randint as roll, shuffle

SIDES = random.choice([6, 8])  # the top level draws too (re-run every slice)


def walk(n, seed):
    random.seed(seed)
    pick = random.choice
    xs = list(range(10))
    out = []
    for i in range(n):
        shuffle(xs)
        out.append((roll(1, 6), pick(xs), random.random(), random.gauss(0, 1), random.sample(xs, 3)))
    return out, xs


def unseeded(n):
    import random as r
    return [r.randint(1, 1000) for _ in range(n)] + [r.random() for _ in range(n)]
"""


def test_seeded_random_sliced_at_every_back_edge_equals_native():
    # the generator's state travels with the job, so slicing does not change what it draws
    expected = native(RANDOM.replace("SIDES = random.choice([6, 8])", "SIDES = 6"), "walk", [12, 42])
    value, hops = frozen(RANDOM, "walk", [12, 42], budgets=(1,))
    assert hops > 12 and value == expected


def test_seeded_random_on_pypy_and_in_a_fresh_process_equals_native():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    env = tasklet.start(RANDOM, "walk", [9, 7], {})
    out = slice_in(sys.executable, env, RANDOM, budget=3)
    out = slice_in(pypy, out.envelope, RANDOM, budget=3)
    while not out.finished:
        out = tasklet.run_slice(out.envelope, RANDOM, 30, budget=2)
    assert out.error is None
    assert tasklet.decode_result(out.result) == frozen(RANDOM, "walk", [9, 7], budgets=(1000,))[0]


def test_unseeded_random_is_seeded_from_the_job_id():
    def run(job_id, budget):
        out = tasklet.run_slice(tasklet.start(RANDOM, "unseeded", [6], {}, job_id=job_id), RANDOM, 30, budget=budget)
        while not out.finished:
            out = tasklet.run_slice(out.envelope, RANDOM, 30, budget=budget)
        return tasklet.decode_result(out.result)

    assert run(7, 1) == run(7, 10**6)  # the same draws sliced or not
    assert run(7, 1) != run(8, 1)


def test_a_generator_state_that_is_not_one_is_refused_before_the_job_runs():
    from market.tasklet import codec, envelope

    env = tasklet.run_slice(tasklet.start(RANDOM, "walk", [5, 1], {}), RANDOM, 30, budget=2).envelope
    header, payload = envelope.open_envelope(env, RANDOM)
    state = codec.decode(payload, {}, resolve=lambda name: None)
    state["random"] = (3, (1, 2), None)
    bad = envelope.make_envelope(header, codec.encode(state, name_of=lambda obj: "builtins:len"))
    with pytest.raises(tasklet.EnvelopeError):
        tasklet.run_slice(bad, RANDOM, 30, budget=2)


def test_class_of_annotations_only_compiles_and_runs():
    # the annotations are removed: the class body must not become empty
    src = "class Rec:\n    a: int\n    b: 'Rec | None'\n\n"
    src += "def job(n):\n    r = Rec()\n    r.a = 0\n    for i in range(n):\n        r.a += i\n    return r.a\n"
    value, hops = frozen(src, "job", [5], budgets=(1,))
    assert value == native(src, "job", [5]) == 10 and hops > 1
