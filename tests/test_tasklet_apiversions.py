"""APIs of the market's Python that the oldest worker Python (PyPy 3.9) lacks are refused at submission,
with the line and what to write instead; every entry of the table is checked against a real pypy3."""

import glob
import json
import os
import subprocess
import sys
import textwrap

import pytest

from market import tasklet
from market.tasklet import JobRefused
from market.tasklet.apiversions import API, OLDEST, ON_PYPY39
from tests.jobs.support import native
from tests.test_tasklet_portability import PYPY, REPO, interpreter_or_skip, slice_in

PROBE = """
import json, sys
from market.tasklet import iterators
sys.modules["itertools"] = iterators.ITERTOOLS  # a job's itertools (compiler._JOB_MODULES)
out = {}
for i, probe in enumerate(json.load(sys.stdin)):
    try:
        exec(compile(probe, "<probe>", "exec"), {})
        out[i] = "ok"
    except (AttributeError, ImportError, NameError, TypeError) as exc:
        out[i] = type(exc).__name__ + ": " + str(exc)
print(json.dumps(out))
"""


def run_probes(python):
    probes = [entry[5] for entry in API]
    done = subprocess.run(
        [python, "-c", PROBE],
        input=json.dumps(probes),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)},
    )
    return {int(k): v for k, v in json.loads(done.stdout).items()}


def test_every_entry_is_really_missing_on_pypy():
    pypy = interpreter_or_skip(PYPY, "pypy3")
    version = subprocess.run([pypy, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert version.stdout.strip() == str(OLDEST)
    got = run_probes(pypy)
    present = {API[i][2] for i, v in got.items() if v == "ok"}
    # PyPy 3.9 backported these two; they are refused for CPython 3.9 workers (the job language is 3.9)
    assert present == ON_PYPY39, "the table refuses APIs that PyPy %s has: %s" % (OLDEST, present - ON_PYPY39)


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.11", "3.12", "3.13"])
def test_each_entry_is_there_exactly_from_its_version_on_cpython(version):
    """On each CPython found (pyenv), an entry works if and only if its version is at most that one."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python%s" % (version, version))))
    if not found:
        pytest.skip("CPython %s not installed" % version)
    have = tuple(int(p) for p in version.split("."))
    got = run_probes(found[-1])
    wrong = [(API[i][:4], v) for i, v in got.items() if (API[i][3] <= have) != (v == "ok")]
    assert wrong == []


def test_every_entry_older_than_this_python_works_here():
    got = run_probes(sys.executable)
    wrong = [(API[i][:4], v) for i, v in got.items() if (API[i][3] <= sys.version_info[:2]) != (v == "ok")]
    assert wrong == []


def refusals(src):
    with pytest.raises(JobRefused) as info:
        tasklet.validate(textwrap.dedent(src), "job")
    return info.value.problems


CASES = [
    ("import itertools\ndef job(xs):\n    return list(itertools.batched(xs, 2))\n", 3, "needs Python 3.12"),
    ("def job(a, b):\n    return list(zip(a, b, strict=True))\n", 2, "zip(strict=...) needs Python 3.10"),
    ("import bisect\ndef job(xs):\n    return bisect.bisect_left(xs, 3, key=abs)\n", 3, "bisect.bisect_left(key=...)"),
    ("from bisect import insort\ndef job(xs):\n    insort(xs, 3, key=abs)\n    return xs\n", 3, "insort(key=...)"),
    ("def job(n):\n    return n.bit_count()\n", 2, "bin(n).count('1')"),
    ("import math\ndef job(x):\n    return math.cbrt(x)\n", 3, "math.cbrt needs Python 3.11"),
    ("from math import exp2\ndef job(x):\n    return exp2(x)\n", 1, "math.exp2 needs Python 3.11"),
    (
        "from dataclasses import dataclass\n@dataclass(kw_only=True)\nclass P:\n    x: int = 0\n"
        "def job():\n    return P(x=1).x\n",
        2,
        "dataclasses.dataclass(kw_only=...) needs Python 3.10",
    ),
    ("from typing import Self\ndef job():\n    return 1\n", 1, "TYPE_CHECKING"),
    ("import typing\ndef job(x):\n    typing.assert_never(x)\n", 3, "typing.assert_never needs Python 3.11"),
    ("def job(x):\n    match x:\n        case 1:\n            return 2\n    return 0\n", 2, "if/elif"),
    ("def job():\n    raise ExceptionGroup('x', [ValueError()])\n", 2, "the builtin ExceptionGroup needs Python 3.11"),
    (
        "import statistics\ndef job(a, b):\n    return statistics.correlation(a, b)\n",
        3,
        "Python 3.9 workers (PyPy 3.9) lack it",
    ),
]


@pytest.mark.parametrize("src,line,words", CASES)
def test_refused_with_line_and_suggestion(src, line, words):
    problems = refusals(src)
    assert any(ln == line and words in why for ln, why in problems), problems


ACCEPTED = [
    # (source, a call to run on pypy3 and here, or None)
    # annotations are never evaluated, nor is a TYPE_CHECKING block
    (
        "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from typing import Self\n"
        "def job(x: 'Self') -> int:\n    return 1\n",
        "job(0)",
    ),
    ("import typing\ndef job(x: typing.Self) -> typing.Never:\n    return 1\n", None),
    # the job's own names shadow the builtins and methods of the table
    ("def anext(it):\n    return 1\ndef job():\n    return anext(3)\n", "job()"),
    ("class C:\n    def bit_count(self):\n        return 7\ndef job():\n    return C().bit_count()\n", "job()"),
    # 3.9 has these
    (
        "import math\ndef job(a, b):\n    return math.lcm(a, b) + math.ulp(1.0) + math.nextafter(1.0, 2.0)\n",
        "job(4, 6)",
    ),
    ("def job(s):\n    return s.removeprefix('a') + s.removesuffix('c')\n", "job('abc')"),
    ("import bisect\ndef job(xs):\n    return bisect.bisect_left(xs, 3, 0, len(xs))\n", "job([1, 5])"),
    ("def job(a, b):\n    return list(zip(a, b))\n", "job([1], [2])"),
    # the job's itertools has its own pairwise (iterators.py), on every worker
    ("from itertools import pairwise\ndef job(xs):\n    return list(pairwise(xs))\n", "job([1, 2, 3])"),
]


@pytest.mark.parametrize("src,call", ACCEPTED)
def test_accepted_and_runs_on_pypy_as_natively(src, call):
    """What the table lets through is accepted and really runs as a job on the oldest worker."""
    tasklet.validate(src, "job")
    if call is None:
        return
    pypy = interpreter_or_skip(PYPY, "pypy3")
    args = eval("[" + call[len("job(") : -1] + "]")
    env = tasklet.start(src, "job", args, {})
    out = slice_in(pypy, env, src)
    assert out.finished and out.error is None, out.error
    assert tasklet.decode_result(out.result) == native(src, "job", args)
