"""Run a corpus module the way the market would: validate, then freeze at every opportunity.

``python -m tests.corpus.harness PATH [--budget N]`` prints one JSON line per case, so a
parent can kill a hung child and still know which cases finished.  Used by
tests/test_corpus.py, tests/bench/bench_corpus.py and the scratch evaluations.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import pathlib
import subprocess
import sys
import time

from market import tasklet

CORPUS = pathlib.Path(__file__).parent
HANG_FACTOR = 10.0  # a hang: over 10x native + 1 s
HANG_GRACE = 1.0


def modules():
    return sorted(p for p in CORPUS.glob("*.py") if p.name not in ("__init__.py", "harness.py"))


def declared_cases(src):
    """The module's CASES literal, read without running the module."""
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "CASES" for t in node.targets):
            return [(entry, list(args)) for entry, args in ast.literal_eval(node.value)]
    raise ValueError("module declares no CASES")


def refusal(src, entry):
    """None if accepted, else the validator's problems [(line, reason)]."""
    try:
        tasklet.validate(src, entry)
    except tasklet.JobRefused as exc:
        return [list(p) for p in exc.problems]
    return None


def native_answer(src, entry, args):
    """(answer as the codec's plain view, or ('error', type), seconds)."""
    from tests.jobs.support import native

    t0 = time.perf_counter()
    value = native(src, entry, copy.deepcopy(args))  # the job may mutate its arguments
    return value, time.perf_counter() - t0


def run_frozen(src, entry, args, budget, deadline):
    """Slice with ``budget`` back-edges per slice, state through bytes each hop."""
    env = tasklet.start(src, entry, args, {})
    hops = 0
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return "hang", None, hops
        out = tasklet.run_slice(env, src, max(0.01, left), budget=budget)
        hops += 1
        if out.finished:
            if out.error is not None:
                return "error", out.error, hops
            return "done", tasklet.decode_result(out.result), hops
        env = out.envelope


def check_case(src, entry, args, budget=1):
    """One case's record: status is ok, refused, wrong, hang, cannot-freeze or crash."""
    rec = {"entry": entry, "args": args}
    problems = refusal(src, entry)
    if problems is not None:
        rec.update(status="refused", problems=problems)
        return rec
    expected, native_s = native_answer(src, entry, args)
    t0 = time.perf_counter()
    kind, got, hops = run_frozen(src, entry, args, budget, t0 + HANG_FACTOR * native_s + HANG_GRACE)
    rec.update(native_s=native_s, frozen_s=time.perf_counter() - t0, hops=hops)
    if kind == "hang":
        rec["status"] = "hang"
    elif kind == "error":
        name = got.split(":")[0]
        if "cannot freeze" in got:
            rec.update(status="cannot-freeze", error=got)
        elif expected == ("error", name):
            rec["status"] = "ok"
        else:
            rec.update(status="crash", error=got)
    else:
        rec["status"] = "ok" if got == expected else "wrong"
        if rec["status"] == "wrong":
            rec.update(expected=repr(expected)[:300], got=repr(got)[:300])
    return rec


def run_in_child(path, budget=1, timeout=120.0, cases=None):
    """Every case of the module at ``path``, each in this order, in a fresh process.

    Cases the child did not report before ``timeout`` are recorded as hangs.
    """
    src = pathlib.Path(path).read_text()
    cases = declared_cases(src) if cases is None else cases
    repo = str(CORPUS.parent.parent)
    cmd = [sys.executable, "-m", "tests.corpus.harness", str(path), "--budget", str(budget)]
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONPATH=repo)
    try:
        proc = subprocess.run(
            cmd, input=json.dumps(cases), capture_output=True, text=True, timeout=timeout, cwd=repo, env=env
        )
        out = proc.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    recs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    for entry, args in cases[len(recs) :]:
        recs.append({"entry": entry, "args": args, "status": "hang", "note": "child killed at %.0f s" % timeout})
    return recs


def main(argv):
    path = argv[0]
    budget = int(argv[argv.index("--budget") + 1]) if "--budget" in argv else 1
    src = pathlib.Path(path).read_text()
    cases = json.loads(sys.stdin.read())
    sys.setrecursionlimit(10000)
    for entry, args in cases:
        try:
            rec = check_case(src, entry, args, budget)
        except Exception as exc:  # the harness itself failed on this case: report, go on
            rec = {"entry": entry, "args": args, "status": "crash", "error": "%s: %s" % (type(exc).__name__, exc)}
        print(json.dumps(rec, default=repr), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
