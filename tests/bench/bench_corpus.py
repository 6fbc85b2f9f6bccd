"""Benchmark of the job runtime on tests/corpus (not collected by pytest).

    python tests/bench/bench_corpus.py [--cases]

1. Exactness, freezing at every opportunity (budget=1, the state through bytes at each hop, each
   module in its own process; a hang is over 10x native + 1 s): acceptance of modules (every
   declared entry accepted) and of entry functions, and among accepted cases the wrong answers,
   hangs, cannot-freeze and crashes.
2. Speed of the accepted, exact cases against native CPython, execution only: the job is compiled
   once before timing (compile_job's cache), each variant is repeated until it has run >= 100 ms
   (fresh argument copies for native; run_slice decodes its own), best of 3 such runs.
   no-freeze = one run_slice with a long slice (module top level re-run, state #0 decoded, result
   encoded: what every slice costs); freeze/100ms = run_slice(seconds=0.1) in a loop, the state
   through bytes at every freeze.  Median and p90 of the ratios.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import copy
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from market import tasklet
from tests.corpus import harness

MIN_SECONDS = 0.1


def timed_native(src, entry, args):
    ns = {"__name__": "native_job"}
    exec(compile(src, "<native>", "exec"), ns)
    fn = ns[entry]

    def run(n):
        copies = [copy.deepcopy(args) for _ in range(n)]
        t0 = time.perf_counter()
        for a in copies:
            fn(*a)
        return time.perf_counter() - t0

    return per_call(run)


def timed_sliced(src, entry, args, seconds):
    env0 = tasklet.start(src, entry, copy.deepcopy(args), {})  # compiles once: cached below

    def run(n):
        t0 = time.perf_counter()
        for _ in range(n):
            env = env0
            while True:
                out = tasklet.run_slice(env, src, seconds)
                if out.finished:
                    break
                env = out.envelope
        return time.perf_counter() - t0

    return per_call(run)


def per_call(run):
    """Seconds per call: n grown until a run takes >= 100 ms, best of 3 runs of that n."""
    n = 1
    while True:
        t = run(n)
        if t >= MIN_SECONDS:
            break
        n = max(n * 2, int(n * MIN_SECONDS / max(t, 1e-6) * 1.2))
    return min([t] + [run(n) for _ in range(2)]) / n


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", action="store_true", help="print every case's figures")
    opts = ap.parse_args()
    print(
        "machine: %s, %s %s, %d cpus"
        % (platform.node(), platform.python_implementation(), platform.python_version(), os.cpu_count() or 0)
    )
    print("date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("load average at start: %.1f" % load)

    t0 = time.perf_counter()
    modules = harness.modules()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip(modules, pool.map(harness.run_in_child, modules)))
    statuses = {}
    entries = {}
    accepted_modules = 0
    for path, recs in results.items():
        ok_module = True
        for rec in recs:
            statuses[rec["status"]] = statuses.get(rec["status"], 0) + 1
            accepted = rec["status"] != "refused"
            entries[(path.stem, rec["entry"])] = entries.get((path.stem, rec["entry"]), True) and accepted
            ok_module = ok_module and accepted
        accepted_modules += ok_module
    cases = sum(statuses.values())
    accepted_cases = cases - statuses.get("refused", 0)
    print("\n== exactness, freezing at every back-edge (%.1f s) ==" % (time.perf_counter() - t0))
    print(
        "modules accepted: %d / %d = %.1f %%"
        % (accepted_modules, len(modules), 100.0 * accepted_modules / len(modules))
    )
    print(
        "entry functions accepted: %d / %d = %.1f %%"
        % (sum(entries.values()), len(entries), 100.0 * sum(entries.values()) / len(entries))
    )
    print("cases: %d, accepted %d" % (cases, accepted_cases))
    for status in ("ok", "wrong", "hang", "cannot-freeze", "crash"):
        print("  %-14s %3d" % (status, statuses.get(status, 0)))
    for path, recs in results.items():
        for rec in recs:
            if rec["status"] not in ("ok", "refused"):
                print("  %s %s:%s %s" % (rec["status"].upper(), path.stem, rec["entry"], rec.get("error", "")[:90]))

    print("\n== speed of the accepted exact cases vs native (execution only, >= 100 ms each, best of 3) ==")
    no_freeze, freeze100, fixed, natives = [], [], [], []
    for path, recs in results.items():
        src = path.read_text()
        for rec in recs:
            if rec["status"] != "ok":
                continue
            nat = timed_native(src, rec["entry"], rec["args"])
            natives.append(nat)
            once = timed_sliced(src, rec["entry"], rec["args"], 3600.0)
            often = timed_sliced(src, rec["entry"], rec["args"], 0.1)
            fixed.append(once - nat)
            no_freeze.append(once / nat)
            freeze100.append(often / nat)
            if opts.cases:
                print(
                    "  %-40s native %8.1f us  no-freeze %6.2fx  freeze/100ms %6.2fx"
                    % ("%s:%s" % (path.stem, rec["entry"]), nat * 1e6, once / nat, often / nat)
                )
    print("cases timed: %d" % len(no_freeze))
    print("no-freeze     median %.2fx  p90 %.2fx" % (statistics.median(no_freeze), p90(no_freeze)))
    print("freeze/100ms  median %.2fx  p90 %.2fx" % (statistics.median(freeze100), p90(freeze100)))
    print("native time per case: median %.1f us" % (statistics.median(natives) * 1e6))
    print(
        "runtime cost per run_slice beyond native (no-freeze minus native): median %.0f us"
        % (statistics.median(fixed) * 1e6)
    )
    print("load average at end: %.1f" % (os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")))


if __name__ == "__main__":
    main()
