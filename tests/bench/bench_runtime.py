"""Benchmark of the resumable job runtime (not collected by pytest).

    python tests/bench/bench_runtime.py [--runs N] [--quick]

For each workload: native CPython (the unmodified module), compiled without
suspension (one run_slice with a long slice), and compiled with a freeze and
thaw every 100 ms (run_slice in a loop, the state through bytes each time).
Ratios are to native in the same run; each figure is the median of N runs.
Then freeze+thaw of a ~1 MB state (codec + envelope, both directions).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from market import tasklet
from market.tasklet import codec, envelope

WORKLOADS = {
    "bubble sort 2000": (
        """
def bubble(n):
    a = [(i * 7919) % 2003 for i in range(n)]
    for i in range(len(a)):
        for j in range(len(a) - 1 - i):
            if a[j] > a[j + 1]:
                a[j], a[j + 1] = a[j + 1], a[j]
    return a[:5], a[-5:]
""",
        "bubble",
        [2000],
    ),
    "sieve 1M x4": (
        """
def sieve(n, rounds):
    count = 0
    for r in range(rounds):
        count = primes(n + r)
    return count


def primes(n):
    flags = [True] * (n + 1)
    flags[0] = flags[1] = False
    i = 2
    while i * i <= n:
        if flags[i]:
            for j in range(i * i, n + 1, i):
                flags[j] = False
        i += 1
    count = 0
    for f in flags:
        if f:
            count += 1
    return count
""",
        "sieve",
        [1000000, 4],
    ),
    "matmul 100x100 x8": (
        """
def matmul(n, rounds):
    a = [[(i * j) % 7 + 1.0 for j in range(n)] for i in range(n)]
    b = [[((i + j) % 5 - 2.0) / n for j in range(n)] for i in range(n)]
    for r in range(rounds):
        c = []
        for i in range(n):
            row = []
            ai = a[i]
            for j in range(n):
                s = 0.0
                for k in range(n):
                    s += ai[k] * b[k][j]
                row.append(s)
            c.append(row)
        a = c
    return sum(sum(r) for r in a)
""",
        "matmul",
        [100, 8],
    ),
    "n-body 5 bodies": (
        """
import math


def advance(bodies, dt):
    n = len(bodies)
    for i in range(n):
        bi = bodies[i]
        for j in range(i + 1, n):
            bj = bodies[j]
            dx = bi[0] - bj[0]
            dy = bi[1] - bj[1]
            dz = bi[2] - bj[2]
            d2 = dx * dx + dy * dy + dz * dz
            mag = dt / (d2 * math.sqrt(d2))
            mi = bi[6] * mag
            mj = bj[6] * mag
            bi[3] -= dx * mj
            bi[4] -= dy * mj
            bi[5] -= dz * mj
            bj[3] += dx * mi
            bj[4] += dy * mi
            bj[5] += dz * mi
    for b in bodies:
        b[0] += dt * b[3]
        b[1] += dt * b[4]
        b[2] += dt * b[5]


def nbody(steps):
    bodies = [[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 39.47],
              [4.84, -1.16, -0.10, 0.60, 2.81, -0.02, 0.037],
              [8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011],
              [12.89, -15.11, -0.22, 1.08, 0.86, -0.01, 0.0017],
              [15.37, -25.91, 0.17, 0.97, 0.59, -0.03, 0.002]]
    for s in range(steps):
        advance(bodies, 0.01)
    return round(bodies[0][0], 9)
""",
        "nbody",
        [60000],
    ),
}


def native(src, entry, args):
    ns = {"__name__": "bench_native"}
    exec(compile(src, "<native>", "exec"), ns)
    t0, c0 = time.perf_counter(), time.process_time()
    value = ns[entry](*args)
    return (time.perf_counter() - t0, time.process_time() - c0), value


def compiled(src, entry, args, seconds):
    env = tasklet.start(src, entry, args, {})
    hops = 0
    t0, c0 = time.perf_counter(), time.process_time()
    while True:
        out = tasklet.run_slice(env, src, seconds)
        hops += 1
        if out.finished:
            break
        env = out.envelope
    elapsed = (time.perf_counter() - t0, time.process_time() - c0)
    assert out.error is None, out.error
    return elapsed, tasklet.decode_result(out.result), hops


def freeze_thaw_1mb(kind):
    if kind == "ints":
        data = list(range(125000))  # 1.0 MB as int64
    elif kind == "floats+ints matrix":
        data = [[i * 0.5 + j for j in range(250)] for i in range(500)]  # 1.0 MB
    else:
        data = [(i, "k%d" % i, i * 0.25) for i in range(40000)]  # mixed tuples
    state = {"kind": "frames", "frames": [["job", 3, {"data": data, "i": 7}, {}]], "globals": {}, "progress": None}
    header = envelope.Header(envelope.source_hash("x"), "job", 1, envelope.RUNTIME_VERSION, codec.NAME, 0, None)
    times = []
    for _ in range(7):
        t0 = time.perf_counter()
        env = envelope.make_envelope(header, codec.encode(state))
        _, payload = envelope.open_envelope(env, "x")
        back = codec.decode(payload)
        times.append(time.perf_counter() - t0)
    assert back == state
    return statistics.median(times), len(env)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one run, for a smoke test")
    opts = parser.parse_args(argv)
    runs = 1 if opts.quick else opts.runs
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        "python %s on %s, %d cores, median of %d runs, load average %.1f at start"
        % (platform.python_version(), platform.machine(), os.cpu_count(), runs, load)
    )
    ratios = ([[], []], [[], []])
    rows = ([], [])
    for name, (src, entry, args) in WORKLOADS.items():
        nat, a, b = [], [], []
        hops = 0
        native(src, entry, args)  # warm up caches and the allocator
        compiled(src, entry, args, 3600.0)
        for _ in range(runs):
            t, expected = native(src, entry, args)
            nat.append(t)
            t, value, _ = compiled(src, entry, args, 3600.0)
            assert value == expected, (name, value, expected)
            a.append(t)
            t, value, hops = compiled(src, entry, args, 0.1)
            assert value == expected, (name, value, expected)
            b.append(t)
        for clock in (0, 1):
            n = statistics.median(t[clock] for t in nat)
            ma = statistics.median(t[clock] for t in a)
            mb = statistics.median(t[clock] for t in b)
            ratios[clock][0].append(ma / n)
            ratios[clock][1].append(mb / n)
            rows[clock].append(
                "%-18s %10.3f %14.3f %9.2fx %13.3f (%3d hops) %6.2fx" % (name, n, ma, ma / n, mb, hops, mb / n)
            )
    for clock, label in ((0, "wall-clock seconds"), (1, "CPU seconds of this process")):
        print("\n%s:" % label)
        print("%-18s %10s %14s %10s %20s %8s" % ("workload", "native", "no-suspend", "ratio", "freeze/100ms", "ratio"))
        for row in rows[clock]:
            print(row)
        print(
            "%-18s %10s %14s %9.2fx %20s %6.2fx"
            % ("median", "", "", statistics.median(ratios[clock][0]), "", statistics.median(ratios[clock][1]))
        )
    print("\nfreeze+thaw (codec + envelope, both directions), median of 7:")
    for kind in ("ints", "floats+ints matrix", "mixed tuples"):
        t, size = freeze_thaw_1mb(kind)
        print("freeze+thaw %-20s %8.1f KB  %6.1f ms" % (kind, size / 1024, t * 1000))


if __name__ == "__main__":
    main()
