"""Benchmark of the job runtime on tests/corpus (not collected by pytest).

    python tests/bench/bench_corpus.py [--cases] [--only MODULE[:ENTRY] ...]

1. Exactness, freezing at every opportunity (budget=1, the state through bytes at each hop, each
   module in its own process; a hang is over 10x native + 1 s): acceptance of modules (every
   declared entry accepted) and of entry functions, and among accepted cases the wrong answers,
   hangs, cannot-freeze and crashes.
2. Speed of the accepted, exact cases against native CPython, execution only (compile and the
   job's start excluded); median and p90 of the ratios:
   * no-freeze: the compiled job's entry function, in a namespace built once (the module's top
     level run once, as a slice does), called like the native function: n calls on fresh argument
     copies made before the clock starts, n grown until n native calls take >= 100 ms, then both
     timed in turn 5 times, best of each.
   * freeze/100ms: the case repeated inside ONE job (a wrapper entry calling the case's entry R
     times, R grown until native takes >= 300 ms) run by run_slice(seconds=0.1) slice after slice,
     the state through bytes at every freeze; so what is timed is execution plus one freeze and
     thaw (and one slice start) per 100 ms, as a worker runs a job.  Against the same wrapper run
     natively.  A case whose entry mutates its arguments gets R argument copies in the state
     (popped one per call: the frozen state carries the copies not used yet), counted apart.
     Generator entries (a job cannot call them) and cases that raise are not in this figure.
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
from market.tasklet import runner
from tests.corpus import harness

MIN_SECONDS = 0.1
REPEAT_SECONDS = 0.3  # freeze/100ms: long enough for a few freezes per case
WRAPPER = "bench_repeat_entry"
# wall time by default; --cpu: this process's CPU time (on a machine shared with other work, the
# time the process waits for a core is not the job's, and it lands on one side of a ratio at random)
clock = time.perf_counter


def _drain(value):
    if hasattr(value, "__next__"):  # a generator job: its work is in the iteration
        for _ in value:
            pass


def timed_pair(native_fn, job_fn, args, rounds=5):
    """Seconds per call of each function on fresh deep copies of ``args`` (made off the clock):
    n grown until n native calls take >= 100 ms, then the two timed in turn ``rounds`` times,
    best of each (in turn: a change of the machine's load hits both alike)."""

    def run(fn, n):
        copies = [copy.deepcopy(args) for _ in range(n)]
        t0 = clock()
        for a in copies:
            try:
                _drain(fn(*a))
            except Exception:  # a case whose answer is an exception: raising it is its work
                pass
        return clock() - t0

    n = 1
    while True:
        t = run(native_fn, n)
        if t >= MIN_SECONDS:
            break
        n = max(n * 2, int(n * MIN_SECONDS / max(t, 1e-6) * 1.2))
    best_native, best_job = t, float("inf")
    for _ in range(rounds):
        best_job = min(best_job, run(job_fn, n))
        best_native = min(best_native, run(native_fn, n))
    return best_native / n, best_job / n


def native_function(src, entry):
    ns = {"__name__": "native_job"}
    exec(compile(src, "<native>", "exec", dont_inherit=True), ns)
    return ns[entry]


def compiled_function(src, entry):
    """The compiled job's entry, in a namespace built as a slice builds it (compile excluded)."""
    job = tasklet.compiler.compile_job(src, entry)
    ctl = runner._Control({}, None, None, None)
    ctl.job = job
    ns = runner._namespace(job, ctl)
    return ns[entry]


def mutates_arguments(src, entry, args):
    fn = native_function(src, entry)
    a = copy.deepcopy(args)
    try:
        _drain(fn(*a))
    except Exception:
        return True
    return a != args


def wrapper_source(src, entry, mutating):
    if mutating:
        body = "    out = None\n    while copies:\n        out = %s(*copies.pop())\n    return out\n" % entry
        return src + "\n\ndef %s(copies):\n%s" % (WRAPPER, body)
    body = "    out = None\n    for _ in range(times):\n        out = %s(*args)\n    return out\n" % entry
    return src + "\n\ndef %s(times, args):\n%s" % (WRAPPER, body)


def wrapper_args(args, times, mutating):
    return [[copy.deepcopy(args) for _ in range(times)]] if mutating else [times, copy.deepcopy(args)]


def timed_repeated(src, entry, args):
    """(native seconds, sliced seconds, freezes, mutating) of the case repeated in one job."""
    mutating = mutates_arguments(src, entry, args)
    wsrc = wrapper_source(src, entry, mutating)
    nat = native_function(wsrc, WRAPPER)
    times = 1
    while True:
        a = wrapper_args(args, times, mutating)
        t0 = clock()
        nat(*a)
        t_native = clock() - t0
        if t_native >= REPEAT_SECONDS:
            break
        times = max(times * 2, int(times * REPEAT_SECONDS / max(t_native, 1e-6) * 1.2))
    a = wrapper_args(args, times, mutating)
    t0 = clock()
    nat(*a)
    t_native = min(t_native, clock() - t0)  # best of 2 (the sliced run is timed once)
    env = tasklet.start(wsrc, WRAPPER, wrapper_args(args, times, mutating), {})  # compiles: off the clock
    freezes = 0
    t0 = clock()
    while True:
        out = tasklet.run_slice(env, wsrc, 0.1)
        if out.finished:
            break
        freezes += 1
        env = out.envelope
    t_sliced = clock() - t0
    if out.error is not None:
        raise RuntimeError("%s:%s repeated: %s" % (entry, WRAPPER, out.error))
    return t_native, t_sliced, freezes, mutating


def p90(xs):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(0.9 * (len(xs) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", action="store_true", help="print every case's figures")
    ap.add_argument(
        "--only",
        nargs="+",
        metavar="MODULE[:ENTRY]",
        help="a subset: these corpus modules (stem), or these entries of them (for a quick look at the slow cases;"
        " the acceptance figures then cover the subset only)",
    )
    ap.add_argument(
        "--cpu", action="store_true", help="time with this process's CPU time (time.process_time), not wall time"
    )
    opts = ap.parse_args()
    global clock
    if opts.cpu:
        clock = time.process_time
    only_modules = {o.split(":")[0] for o in opts.only or ()}
    only_entries = {tuple(o.split(":", 1)) for o in opts.only or () if ":" in o}
    print(
        "machine: %s, %s %s, %d cpus"
        % (platform.node(), platform.python_implementation(), platform.python_version(), os.cpu_count() or 0)
    )
    print("date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("load average at start: %.1f" % load)
    print("clock: %s" % ("CPU time of this process" if opts.cpu else "wall"))

    t0 = time.perf_counter()
    modules = harness.modules()
    if only_modules:
        unknown = only_modules - {p.stem for p in modules}
        if unknown:
            ap.error("no corpus module %s (the stems of tests/corpus/*.py)" % ", ".join(sorted(unknown)))
        modules = [p for p in modules if p.stem in only_modules]
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

    print("\n== speed of the accepted exact cases vs native CPython (execution only) ==")
    no_freeze, freeze100, natives, mutating_ratios = [], [], [], []
    freezes_total, skipped = 0, 0
    for path, recs in results.items():
        src = path.read_text()
        for rec in recs:
            if rec["status"] != "ok":
                continue
            wanted = {e for m, e in only_entries if m == path.stem}
            if wanted and rec["entry"] not in wanted:
                continue
            entry, args = rec["entry"], rec["args"]
            nat, mine = timed_pair(native_function(src, entry), compiled_function(src, entry), args)
            natives.append(nat)
            no_freeze.append(mine / nat)
            line = "  %-40s native %9.1f us  no-freeze %5.2fx" % ("%s:%s" % (path.stem, entry), nat * 1e6, mine / nat)
            expected = harness.native_answer(src, entry, args)[0]
            raises = type(expected) is tuple and len(expected) == 2 and expected[0] == "error"
            if raises or tasklet.compiler.compile_job(src, entry).is_generator:
                skipped += 1
            else:
                t_nat, t_sliced, freezes, mutating = timed_repeated(src, entry, args)
                freezes_total += freezes
                (mutating_ratios if mutating else freeze100).append(t_sliced / t_nat)
                line += "  freeze/100ms %5.2fx (%d freezes%s)" % (
                    t_sliced / t_nat,
                    freezes,
                    ", argument copies in the state" if mutating else "",
                )
            if opts.cases:
                print(line, flush=True)
    print(
        "cases timed: %d no-freeze; freeze/100ms: %d, +%d with argument copies in the state, %d not run"
        % (len(no_freeze), len(freeze100), len(mutating_ratios), skipped)
    )
    print("no-freeze     median %.2fx  p90 %.2fx" % (statistics.median(no_freeze), p90(no_freeze)))
    print(
        "freeze/100ms  median %.2fx  p90 %.2fx  (%d freezes in all)"
        % (statistics.median(freeze100), p90(freeze100), freezes_total)
    )
    if mutating_ratios:
        print(
            "freeze/100ms, argument copies in the state: median %.2fx  p90 %.2fx"
            % (statistics.median(mutating_ratios), p90(mutating_ratios))
        )
    print("native time per case: median %.1f us" % (statistics.median(natives) * 1e6))
    print("load average at end: %.1f" % (os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")))


if __name__ == "__main__":
    main()
