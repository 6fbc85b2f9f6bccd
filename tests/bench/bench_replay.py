"""Benchmark of verification by replay (not collected by pytest).

    python tests/bench/bench_replay.py [--runs N] [--slice SECONDS] [--base COMMIT] [--quick] [--replay-only]

On the programs of bench_runtime.py and a tight ``while`` loop (a back-edge every few bytecodes):

1. replay cost: an honest slice of ``--slice`` seconds from a state S in the middle of the job
   (stopped by the clock, counting nothing), then ``replay_slice`` from S to the state it froze
   (target: its payload hash and mark); the ratio replay / honest, same run, median of N;
2. honest-slice speed before/after: the whole job in one long slice, this tree's runtime against
   ``--base``'s (default: the commit before the replay work), each in a fresh process, alternating,
   median of N.  The replay work must not make honest slices slower.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from market import tasklet  # noqa: E402
from market.tasklet import envelope  # noqa: E402
from tests.bench.bench_runtime import WORKLOADS as RUNTIME_WORKLOADS  # noqa: E402

#: a tight ``while`` loop: a back-edge every few bytecodes and no chunked ``for`` (the replay's worst case)
TIGHT_WHILE = (
    """
def spin(n):
    i = 0
    total = 0
    while i < n:
        total = (total + i * i) % 1000003
        i += 1
    return total
""",
    "spin",
    [20000000],
)
WORKLOADS = dict(RUNTIME_WORKLOADS, **{"tight while 20M": TIGHT_WHILE})

BASE = "9d53067"  # the merge the replay work starts from

CHILD = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from market import tasklet
src, entry, args = json.loads(sys.stdin.read())
env = tasklet.start(src, entry, args, {})
tasklet.run_slice(env, src, 3600.0)  # warm up
t0, c0 = time.perf_counter(), time.process_time()
out = tasklet.run_slice(env, src, 3600.0)
print(json.dumps([time.perf_counter() - t0, time.process_time() - c0, out.finished]))
"""


def replay_cost(src, entry, args, seconds):
    env = tasklet.start(src, entry, args, {}, job_id=1)
    t0 = time.perf_counter()
    tasklet.run_slice(env, src, 3600.0)
    whole = time.perf_counter() - t0
    seconds = min(seconds, 0.25 * whole)  # a short job: a slice of a quarter of it
    s = tasklet.run_slice(env, src, 0.1 * whole).envelope  # S: somewhere in the job
    assert s is not None
    t0, c0 = time.perf_counter(), time.process_time()
    out = tasklet.run_slice(s, src, seconds)
    honest = (time.perf_counter() - t0, time.process_time() - c0)
    assert not out.finished, "the slice reached the job's end: give a shorter --slice"
    header, sha = envelope.inspect(out.envelope)
    t0, c0 = time.perf_counter(), time.process_time()
    r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=header.mark, max_steps=10**9)
    replay = (time.perf_counter() - t0, time.process_time() - c0)
    assert r.matched, r
    return honest, replay, r.steps, seconds


def honest_speed(tree, src, entry, args):
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, tree],
        input=json.dumps([src, entry, args]),
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
    )
    wall, cpu, finished = json.loads(proc.stdout)
    assert finished
    return wall, cpu


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slice", type=float, default=0.5, help="the honest slice, seconds")
    parser.add_argument("--base", default=BASE, help="commit whose runtime is 'before'")
    parser.add_argument("--quick", action="store_true", help="one run, for a smoke test")
    parser.add_argument("--replay-only", action="store_true", help="part 1 only (an A/B of two trees' replay)")
    opts = parser.parse_args(argv)
    runs = 1 if opts.quick else opts.runs
    load = os.getloadavg()[0]
    print(
        "python %s on %s, %d cores, median of %d runs, load average %.1f at start"
        % (platform.python_version(), platform.machine(), os.cpu_count(), runs, load)
    )
    print("\n1. replay vs the honest slice (up to %.2f s, stopped by the clock)" % opts.slice)
    print("| program | slice s | honest slice s (CPU) | replay s (CPU) | back-edges found | ratio (CPU) |")
    print("|---|---|---|---|---|---|")
    for name, (src, entry, args) in WORKLOADS.items():
        hs, rs, ratios, steps = [], [], [], []
        for _ in range(runs):
            h, r, n, sl = replay_cost(src, entry, args, opts.slice)
            hs.append(h[1])
            rs.append(r[1])
            ratios.append(r[1] / h[1])
            steps.append(n)
        print(
            "| %s | %.2f | %.3f | %.3f | %d | %.2f |"
            % (
                name,
                sl,
                statistics.median(hs),
                statistics.median(rs),
                statistics.median(steps),
                statistics.median(ratios),
            )
        )
    if opts.replay_only:
        return
    print("\n2. honest speed: the whole job in one slice, before (%s) / after (this tree), fresh processes" % opts.base)
    print("| program | before s (CPU) | after s (CPU) | after / before |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(["git", "-C", REPO, "archive", opts.base, "market"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", base], input=archive.stdout, check=True)
        for name, (src, entry, args) in WORKLOADS.items():
            before, after = [], []
            for _ in range(runs):
                before.append(honest_speed(base, src, entry, args)[1])
                after.append(honest_speed(REPO, src, entry, args)[1])
            b, a = statistics.median(before), statistics.median(after)
            print("| %s | %.3f | %.3f | %.3f |" % (name, b, a, a / b))


if __name__ == "__main__":
    main()
