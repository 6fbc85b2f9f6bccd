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
    ("import random\ndef job():\n    return 1\n", 1, "not allowed"),
    ("from math import *\ndef job():\n    return 1\n", 1, "import *"),
    ("def job():\n    import os\n    return 1\n", 2, "import of 'os' is not allowed"),
    ("def job():\n    def inner():\n        return 1\n    return inner()\n", 2, "nested functions"),
    ("def job(x):\n    f = lambda: x\n    return 1\n", 2, "capture"),
    ("X = []\ndef job():\n    global X\n    return 1\n", 3, "global"),
    ("async def job():\n    return 1\n", 1, "async"),
    ("def job():\n    with x:\n        pass\n", 2, "with"),
    ("def helper():\n    yield 1\ndef job():\n    return 1\n", 1, "generators are only"),
    ("def job():\n    yield 1\n", 1, "resume"),
    ("def f(x):\n    return x\ndef job(xs):\n    return [f(x) for x in xs]\n", 4, "comprehensions"),
    ("def f(x):\n    return x\ndef job(a):\n    return a and f(a)\n", 4, "'and'/'or'"),
    ("def f(x):\n    return x\ndef job(a):\n    return f(a) if a else 0\n", 4, "conditional"),
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
