"""Frozen states are portable: resumed in a fresh process, on PyPy, on other
CPython versions, and from a copy of the package alone (as in the sandbox)."""

import glob
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from market import tasklet
from market.tasklet import localrun, slicemain
from tests.jobs.support import native, source

REPO = pathlib.Path(__file__).resolve().parent.parent
PYPY = "/usr/bin/pypy3"
PACKAGE = REPO / "market" / "tasklet"


def interpreter_or_skip(path, what):
    if os.path.exists(path):
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("%s is required in CI but %s is missing" % (what, path))
    pytest.skip("%s not installed" % what)


def slice_in(python, env_bytes, src, budget=None, pythonpath=REPO, seconds=30.0):
    proc = subprocess.run(
        [python, "-m", "market.tasklet.slicemain"],
        input=slicemain.encode_request(env_bytes, src, seconds, budget),
        capture_output=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(pythonpath), "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode in (0, 2), proc.stderr.decode()
    return slicemain.decode_response(proc.stdout)


def cpython_states(src, entry, args, budget, count):
    """A few states made on this CPython, each one slice further."""
    env = tasklet.start(src, entry, args, {})
    states = []
    for _ in range(count):
        out = tasklet.run_slice(env, src, 30, budget=budget)
        assert not out.finished
        env = out.envelope
        states.append(env)
    return states


@pytest.mark.parametrize(
    "name,entry,args,budget",
    [
        ("quicksort", "sort_copy", [[9, 4, 7, 1, 8, 2, 6, 3, 5, 0]], 7),
        ("shapes", "build", [[[1, 2], [3, 4], [1, 2], [0, 5]]], 3),
        ("try_loops", "run", [[1, 2, 3, 4, 5, 6, 7, 8]], 4),
    ],
)
def test_state_frozen_on_cpython_finishes_on_pypy(name, entry, args, budget):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    src = source(name)
    env = cpython_states(src, entry, args, budget, 3)[-1]
    out = slice_in(pypy, env, src, budget=5)
    while not out.finished:  # keep hopping on PyPy, state through bytes
        out = slice_in(pypy, out.envelope, src)
    assert out.error is None
    assert tasklet.decode_result(out.result) == native(src, entry, args)


def test_pypy_state_finishes_on_cpython():
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    src = source("ackermann")
    out = slice_in(pypy, tasklet.start(src, "ack_table", [2, 3], {}), src, budget=40)
    assert not out.finished
    while not out.finished:
        out = tasklet.run_slice(out.envelope, src, 30, budget=9)
    assert tasklet.decode_result(out.result) == native(src, "ack_table", [2, 3])


@pytest.mark.parametrize("version", ["3.9", "3.10", "3.12", "3.13"])
def test_other_cpython_versions_resume_the_state(version):
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python%s" % (version, version))))
    python = found[-1] if found else None
    if python is None:
        pytest.skip("python%s not installed" % version)
    src = source("nested_loops")
    args = [["abc", "xqa", "cab"], 4]
    env = cpython_states(src, "mix", args, 11, 2)[-1]
    out = slice_in(python, env, src)
    assert tasklet.decode_result(out.result) == native(src, "mix", args)


def test_package_copy_alone_runs_slices_with_debian_python(tmp_path):
    """Only market/tasklet mounted (no market/__init__.py, no other package)."""
    python = interpreter_or_skip("/usr/bin/python3", "Debian's python3")
    shutil.copytree(PACKAGE, tmp_path / "market" / "tasklet", ignore=shutil.ignore_patterns("__pycache__"))
    src = source("bubble_sort")
    env = cpython_states(src, "bubble_sort", [[4, 3, 2, 1]], 3, 1)[-1]
    out = slice_in(python, env, src, pythonpath=tmp_path)
    assert tasklet.decode_result(out.result) == native(src, "bubble_sort", [[4, 3, 2, 1]])


def test_package_imports_only_itself_and_the_stdlib():
    code = (
        "import sys, market.tasklet, market.tasklet.slicemain, market.tasklet.localrun\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'market'"
        " and not m.startswith('market.tasklet') and m != 'market')\n"
        "third = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('twisted', 'hypothesis', 'lxml', 'pymysql', 'klein', 'treq'))\n"
        "print(bad, third)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert out.stdout.strip() == "[] []", out.stderr


def test_rejected_state_in_slicemain_exits_2_without_running():
    src = "MARKER = print('JOB-CODE-RAN')\n\ndef job():\n    return 1\n"
    env = bytearray(tasklet.start(src, "job", [], {}))
    env[-1] ^= 1
    proc = subprocess.run(
        [sys.executable, "-m", "market.tasklet.slicemain"],
        input=slicemain.encode_request(bytes(env), src, 1.0),
        capture_output=True,
        cwd=REPO,
    )
    assert proc.returncode == 2 and b"JOB-CODE-RAN" not in proc.stdout + proc.stderr
    with pytest.raises(tasklet.EnvelopeError, match="checksum"):
        slicemain.decode_response(proc.stdout)


def test_job_print_output_does_not_corrupt_the_response():
    src = "def job(n):\n    for i in range(n):\n        print('line', i)\n    return n\n"
    out = slice_in(sys.executable, tasklet.start(src, "job", [3], {}), src)
    assert tasklet.decode_result(out.result) == 3


def test_run_local_hops_through_fresh_processes(capsys):
    path = str(REPO / "tests" / "jobs" / "quicksort.py")
    assert localrun.main([path, "sort_copy", "[3, 1, 2]", "--slice", "5", "--budget", "4"]) == 0
    printed = capsys.readouterr().out
    assert "result: ([1, 2, 3], 4)" in printed
    hops = int(printed.split("hops:")[1])
    assert hops > 2


def test_run_local_refusal_exits_2_with_line_numbers(tmp_path, capsys):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\ndef job():\n    return eval('1')\n")
    assert localrun.main([str(bad), "job"]) == 2
    err = capsys.readouterr().err
    assert "line 1:" in err and "line 4:" in err


def test_run_local_arguments_are_json_or_strings():
    assert localrun.parse_argument("[1, 2]") == [1, 2]
    assert localrun.parse_argument("hello") == "hello"
    assert localrun.parse_argument('"7"') == "7"


def test_early_freeze_signal_stops_the_slice_at_its_first_back_edge():
    src = "def job(n):\n    t = 0\n    for i in range(n):\n        t += i\n    return t\n"
    code = (
        "import os, signal, sys\nos.kill(os.getpid(), signal.SIGALRM)\n"
        "from market.tasklet.slicemain import main\nsys.exit(main())\n"
    )
    # the signal arrives before main() installs its handler: SIGALRM's default
    # would kill the process, so install the same handler the way main() does
    code = code.replace(
        "os.kill", "import market.tasklet.runner as r; signal.signal(signal.SIGALRM, r.request_stop); os.kill"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        input=slicemain.encode_request(tasklet.start(src, "job", [10**9], {}), src, 3600.0),
    )
    out = slicemain.decode_response(proc.stdout)
    assert not out.finished and out.stats["wall_seconds"] < 1.0


CODEC_VALUES = """
import collections
values = [
    [s * (b + d) for b in (0, 63, 64, 8191, 8192, 1 << 19, 1 << 20, 1 << 62) for d in (-1, 0, 1) for s in (1, -1)],
    ["w%d" % i for i in range(40)] + ["\\u00e9", "a" * 300],
    ["plain%d" % i for i in range(40)],
    {"key%d" % i: i * 7919 for i in range(64)},
    {i: (i, i + 1, "v", i * 0.5) for i in range(64)},
    collections.OrderedDict((str(i), [i]) for i in range(20)),
    {(i, "t") for i in range(40)} | {"s%d" % i for i in range(5)} - {"s1"},
    [(i, "k%d" % i, i * 0.25, None, True) for i in range(50)],
    [("\\u00e9%d" % i, 2**70 + i, -0.0, i * 1e300) for i in range(20)],
    [i * 0.37 for i in range(40)],
    [{"a": i, "b": "x%d" % i, 7: [i, None]} for i in range(20)],
]
"""


@pytest.mark.parametrize("version", [1, 2])
def test_codec_bytes_are_the_same_on_pypy_both_ways(version):
    pypy = interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    script = (
        CODEC_VALUES
        + "import sys\nfrom market.tasklet import codec\n"
        + "sys.stdout.write(codec.encode(values, version=%d).hex() + '\\n')\n" % version
        + "sys.stdout.write(codec.encode(codec.decode(bytes.fromhex(sys.stdin.read())), version=%d).hex())\n" % version
    )
    namespace = {}
    exec(CODEC_VALUES, namespace)
    from market.tasklet import codec

    mine = codec.encode(namespace["values"], version=version)
    assert mine[0] == version
    out = subprocess.run(
        [pypy, "-c", script],
        input=mine.hex(),
        capture_output=True,
        text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        timeout=120,
        check=True,
    ).stdout.split("\n")
    assert bytes.fromhex(out[0]) == mine  # PyPy writes CPython's bytes
    assert bytes.fromhex(out[1]) == mine  # and reads them back to the same values


_SETS_SCRIPT = """
import sys
from market.tasklet import codec
nan = float("nan")
values = [
    {None, 1, 2, "a"}, {-34, None}, {(1, None), (2, None), (None, 3)}, {1j, 2 + 0j, None},
    {frozenset({1, None}), frozenset({2})}, {nan, 1.0, 0.5}, {(1, "a"), ("a", 1)}, {(1, (None, 2.5)), (0, ())},
]
for built in (values, [set(reversed(list(v))) for v in values]):
    for version in (1, 2):
        sys.stdout.write(codec.encode(built, version=version).hex() + "\\n")
"""


@pytest.mark.parametrize("python", ["cpython", "pypy"])
def test_equal_sets_of_values_without_job_code_encode_equally_in_every_process(python):
    """Sets holding None, complex, NaN, frozensets or tuples mixing types are written in one order
    whatever their history: hash(None) is an address on CPython 3.11 (it differs between processes,
    whatever PYTHONHASHSEED), and a replay compares the bytes two processes wrote. Before the
    canonical order, two processes wrote different bytes for these values."""
    exe = sys.executable if python == "cpython" else interpreter_or_skip(PYPY, "PyPy (Debian's pypy3)")
    outputs = set()
    for seed in ("0", "1", "2", "3"):
        proc = subprocess.run(
            [exe, "-c", _SETS_SCRIPT],
            capture_output=True,
            timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONHASHSEED": seed},
            check=True,
        )
        lines = proc.stdout.decode().split()
        assert lines[:2] == lines[2:], "a set built in another order encoded otherwise"
        outputs.add(tuple(lines))
    assert len(outputs) == 1
    if python == "pypy":  # and PyPy writes what CPython writes
        here = subprocess.run(
            [sys.executable, "-c", _SETS_SCRIPT],
            capture_output=True,
            timeout=120,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "0"},
            check=True,
        )
        assert outputs == {tuple(here.stdout.decode().split())}
