"""Constructs outside the resumable subset are refused at validation, each with
its line number and a reason in plain words."""

import textwrap

import pytest

from market import tasklet
from market.tasklet import JobRefused


def refused(src, entry="job"):
    with pytest.raises(JobRefused) as info:
        tasklet.validate(textwrap.dedent(src), entry)
    return info.value


def assert_refused_at(src, line, words, entry="job"):
    exc = refused(src, entry)
    assert any(ln == line and words in why for ln, why in exc.problems), exc.problems
    assert "line %d:" % line in str(exc)


CASES = [
    # (source, line, words in the reason)
    ("import os\ndef job():\n    return 1\n", 1, "not allowed"),
    ("import secrets\ndef job():\n    return 1\n", 1, "not allowed"),
    ("from math import *\ndef job():\n    return 1\n", 1, "import *"),
    ("def job():\n    import os\n    return 1\n", 2, "import of 'os' is not allowed"),
    ("def job():\n    def inner():\n        return 1\n    return inner\n", 4, "nested function inner can only"),
    ("def job():\n    def inner():\n        return 1\n    fs = [inner]\n    return fs\n", 4, "can only be called"),
    ("def job():\n    class Inner:\n        pass\n    return 1\n", 2, "nested classes"),
    ("def job():\n    @staticmethod\n    def inner():\n        return 1\n    return inner()\n", 2, "decorators"),
    (
        "def h():\n    return 1\ndef job():\n    def inner():\n        return h()\n    return inner()\n",
        5,
        "a nested function runs at once and cannot call job functions",
    ),
    ("def job():\n    def inner():\n        yield 1\n    return 1\n", 2, "nested generators"),
    ("def job():\n    def inner():\n        return 1\n    inner = 3\n    return inner\n", 4, "bound by its def"),
    (
        "def job(c):\n    if c:\n        def f():\n            return 1\n"
        "    else:\n        def f():\n            return 2\n    return f()\n",
        6,
        "defined twice",
    ),
    ("def job():\n    def inner():\n        global X\n        return 1\n    return inner()\n", 3, "global"),
    ("def job(x):\n    f = lambda: x\n    return 1\n", 2, "capture"),
    ("X = []\ndef job():\n    global X\n    return 1\n", 3, "global"),
    ("async def job():\n    return 1\n", 1, "async"),
    ("def job():\n    with x:\n        pass\n", 2, "with"),
    ("def helper():\n    yield 1\ndef job():\n    return 1\n", 1, "generators are only"),
    ("def job():\n    yield 1\n", 1, "resume"),
    # a comprehension as the whole value of an assignment or return may call job functions (a for loop)
    ("def f(x):\n    return x\ndef job(xs):\n    return sum([f(x) for x in xs])\n", 4, "comprehensions"),
    # job calls in 'and'/'or' and 'x if c else y' are accepted (tests/test_tasklet_branch_calls.py), not in a
    # while condition
    ("def f(x):\n    return x\ndef job(a):\n    while a and f(a):\n        a -= 1\n", 4, "while condition"),
    ("def f(x):\n    return x\ndef job(xs):\n    return sorted(xs, key=f)\n", 4, "called directly"),
    ("def f(x):\n    return x\ndef job(a):\n    while f(a):\n        a -= 1\n", 4, "while condition"),
    ("def job(a):\n    return eval(a)\n", 2, "not available"),
    ("def job(a):\n    return exec(a)\n", 2, "not available"),
    ("def job(a):\n    return open(a)\n", 2, "not available"),
    ("def job(a):\n    return __import__(a)\n", 2, "not available"),
    ("def job(a):\n    return a.__class__\n", 2, "dunder"),
    ("def job(a):\n    return getattr(a, '__dict__')\n", 2, "dunder"),
    (
        "def f(x):\n    return x\ndef job(a):\n    try:\n        pass\n    except ValueError:\n        f(a)\n",
        7,
        "except and finally",
    ),
    ("class P:\n    def m(self):\n        return job(1)\ndef job(a):\n    return a\n", 3, "methods of job classes"),
    ("class P(dict):\n    pass\ndef job(a):\n    return a\n", 1, "derive"),
    ("def job(a=[]):\n    return a\n", 1, "mutable default"),
    ("def job(a):\n    _tk_x = 1\n    return a\n", 1, "reserved"),
    ("def f(x):\n    return x\ndef job(a):\n    a[0] += f(1)\n", 4, "augmented"),
    ("for i in range(3):\n    pass\ndef job():\n    return 1\n", 1, "top level"),
    ("def job():\n    return 1\n", 1, "no top-level function named 'other'"),
    ("def job(:\n", 1, "syntax error"),
]


@pytest.mark.parametrize("src,line,words", CASES)
def test_unsupported_construct_is_refused_with_line(src, line, words):
    entry = "other" if "other" in words else "job"
    assert_refused_at(src, line, words, entry)


def test_all_problems_are_reported_at_once():
    exc = refused("import os\ndef job(a):\n    eval(a)\n    return open(a)\n")
    assert [ln for ln, _ in exc.problems] == [1, 3, 4]
    assert str(exc).startswith("job refused (3 problems):")


SUPPORTED = '''
"""A job using everything in the subset."""
import math
from collections import deque

LIMIT = 10
TABLE = [i * i for i in range(LIMIT)]


class Box(Exception):
    kind = "box"

    def __init__(self, v):
        super().__init__(v)
        self.v = v

    def double(self):
        return [x * 2 for x in range(self.v)]


def helper(x, *rest, scale=1, **opts):
    return x * scale + len(rest) + len(opts)


def job(n, m=2, *, flag=True):
    total = 0
    q = deque([1, 2])
    for i, ch in enumerate("abc"):
        total += helper(i, 1, 2, scale=m, extra=ch) + TABLE[i % LIMIT]
    for k, v in {"a": 1}.items():
        total += v
    for a, b in zip([1, 2], (3, 4)):
        total += a * b
    try:
        raise Box(3)
    except Box as e:
        total += len(e.double())
    finally:
        total += 1
    total += sorted([3, 1, 2], key=lambda t: -t)[0]
    values = [helper(j) for j in range(0)] if False else []
    if __name__ == "__main__":
        pass
    return total + int(math.sqrt(16)) + len(q) + len(values)


if __name__ == "__main__":
    print(job(3))
'''


def test_the_documented_subset_is_accepted():
    src = SUPPORTED.replace("values = [helper(j) for j in range(0)] if False else []", "values = []").replace(
        '    if __name__ == "__main__":\n        pass\n', ""
    )
    tasklet.validate(src, "job")


def test_start_checks_the_arguments_against_the_signature():
    src = "def job(a, b=2, *, c):\n    return a\n"
    tasklet.start(src, "job", [1], {"c": 3})
    with pytest.raises(JobRefused, match="arguments do not fit"):
        tasklet.start(src, "job", [1, 2, 3], {"c": 3})
    with pytest.raises(JobRefused, match="arguments do not fit"):
        tasklet.start(src, "job", [1], {})


def test_start_refuses_non_data_arguments():
    with pytest.raises(JobRefused, match="plain data"):
        tasklet.start("def job(a):\n    return a\n", "job", [object()], {})


# -- what the runtime could not freeze is refused at submission, with what to do instead -------------

REFUSED_WITH_SUGGESTION = [
    # (source, line, words in the reason, words of the suggestion)
    ("def job():\n    return input()\n", 2, "'input' is not available", "job's arguments"),
    ("def job():\n    return input()\n", 2, "'input' is not available", "pythia task"),
    ("def job(p):\n    return open(p).read()\n", 2, "'open' is not available", "docs/tasks.md"),
    ("def job(f):\n    print('x', file=f)\n", 2, "print(file=...)", "job's log"),
    ("def job(k):\n    f = lambda v: v + 1\n    return f(k)\n", 2, "lambda made while the job runs", "top level"),
    (
        "def job(xs):\n    fs = [lambda v: v]\n    return len(fs)\n",
        2,
        "lambda made while the job runs",
        "NAME = lambda",
    ),
    ("def job(xs):\n    m = map(lambda v: v, xs)\n    return list(m)\n", 2, "lambda made while the job runs", ""),
    ("def job():\n    d = dict(f=lambda: 1)\n    return d\n", 2, "lambda made while the job runs", ""),
    ("def job(xs):\n    for v in zip(map(lambda v: v, xs), xs):\n        pass\n", 2, "lambda made while the job", ""),
    (
        "from collections import defaultdict\ndef job():\n    d = defaultdict(lambda: 0)\n    return d\n",
        3,
        "lambda made while the job runs",
        "",
    ),
    ("MAKE = lambda k: lambda v: v + k\ndef job():\n    return 1\n", 1, "lambda made while the job runs", ""),
    (
        "from operator import itemgetter\ndef job(xs):\n    k = itemgetter(1)\n    return k\n",
        3,
        "itemgetter",
        "top level",
    ),
    ("import functools\ndef job():\n    p = functools.partial(pow, 2)\n    return p(3)\n", 3, "partial", ""),
    ("from dataclasses import fields\ndef job():\n    return 1\n", 1, "dataclasses.fields is not supported", "asdict"),
    ("import dataclasses\ndef job(x):\n    return dataclasses.fields(x)\n", 3, "not supported", "asdict"),
    (
        "from dataclasses import dataclass\n@dataclass(slots=True)\nclass P:\n    x: int\ndef job():\n    return 1\n",
        2,
        "slots",
        "",
    ),
    (
        "from dataclasses import dataclass\nfrom typing import ClassVar\n@dataclass\nclass P:\n"
        "    n: ClassVar[int] = 0\ndef job():\n    return 1\n",
        5,
        "ClassVar",
        "class constant",
    ),
    (
        "def deco(c):\n    return c\n@deco\nclass P:\n    pass\ndef job():\n    return 1\n",
        3,
        "other than @dataclass",
        "",
    ),
    ("from __future__ import braces\ndef job():\n    return 1\n", 1, "unknown __future__ feature", ""),
    ("def job():\n    from __future__ import annotations\n    return 1\n", 2, "top of the module", ""),
    ("import random\ndef job():\n    return random.Random(3).random()\n", 3, "random.Random", "random.seed"),
    ("from random import SystemRandom\ndef job():\n    return 1\n", 1, "random.SystemRandom", "random.seed"),
    ("import random as r\ndef job():\n    return r.SystemRandom()\n", 3, "random.SystemRandom", "one generator"),
    ("Number = int | float\ndef job():\n    return 1\n", 1, "'X | Y' of types", "typing.Union"),
    ("def job(x):\n    return isinstance(x, list[int] | None)\n", 2, "Python 3.9", "typing.Optional"),
    ("import typing\nimport os\ndef job():\n    return 1\n", 2, "import of 'os' is not allowed", "allowed:"),
]


@pytest.mark.parametrize("src,line,words,suggestion", REFUSED_WITH_SUGGESTION)
def test_what_cannot_be_frozen_is_refused_with_line_and_suggestion(src, line, words, suggestion):
    exc = refused(src)
    assert any(ln == line and words in why and suggestion in why for ln, why in exc.problems), exc.problems


ACCEPTED = [
    "from __future__ import annotations\ndef job(x: int | None) -> list[int]:\n"
    "    y: dict[str, int] = {}\n    return [1]\n",
    "from typing import Optional, List, TYPE_CHECKING\nif TYPE_CHECKING:\n    import os\n"
    "def job(x: Optional[int]) -> List[int]:\n    return []\n",
    "import typing\nT = typing.TypeVar('T')\ndef job(x: 'T') -> 'T':\n    return x\n",
    "from collections.abc import Sequence\ndef job(x):\n    return isinstance(x, Sequence)\n",
    "from dataclasses import dataclass, field\n@dataclass(order=True, frozen=True)\nclass P:\n    x: int\n"
    "    tags: list = field(default_factory=list)\ndef job():\n    return P(1)\n",
    "def job(xs):\n    import math\n    from bisect import insort\n    return math.sqrt(len(xs))\n",
    "def job(xs):\n    f = max\n    g = str.lower\n    return f(xs), g('A')\n",
    "import operator\nOPS = {'+': operator.add, '*': lambda a, b: a * b}\n"
    "def job(a):\n    op = OPS['+']\n    return op(a, a)\n",
    "from operator import itemgetter\nKEY = itemgetter(1)\ndef job(xs):\n    return sorted(xs, key=itemgetter(0))\n",
    "def job(xs):\n    return sorted(xs, key=lambda p: p[1]), list(map(lambda v: v * 2, xs))\n",
    "from functools import reduce, cmp_to_key\ndef job(xs):\n    return reduce(lambda a, b: a + b, xs), "
    "sorted(xs, key=cmp_to_key(lambda a, b: a - b))\n",
    "def job(xs):\n    return [y for y in map(lambda v: v + 1, xs)]\n",
    "def job(f=lambda v: v):\n    return f(1)\n",
    "def job(a: int | None, b: 'int | str' = 1) -> dict[str, int] | None:\n"
    "    c: int | None = a | 4\n    return None\n",
]


@pytest.mark.parametrize("src", ACCEPTED)
def test_common_real_world_construct_is_accepted(src):
    tasklet.validate(src, "job")
