"""Sandbox launch overhead: full stack vs a plain subprocess, in the same run.

    python tests/bench/bench_sandbox.py [--runs 50] [--user nobody]

Prints the median wall time of each command launched plainly (subprocess.run) and through
the full sandbox (market.sandbox.run_sync: setpriv → prlimit → bwrap → inner.py with
Landlock + seccomp → job), the overhead and the ratio, plus the chain cut after each
layer so the cost of each is visible.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from market.sandbox import Limits, probe, run_sync
from market.sandbox.command import SANDBOX_PYTHON
from market.sandbox.runner import prepare

COMMANDS = {
    "/bin/true": ["/bin/true"],
    "python3 -c pass": [SANDBOX_PYTHON, "-c", "pass"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(fn, runs: int):
    """(median wall ms, mean CPU ms of the launched processes) over ``runs`` launches.

    CPU time is reported too because it hardly moves when other work shares the cores,
    while wall time does.
    """
    fn()  # warm caches (page cache, staging dir, filter blob)
    times = []
    cpu_before = children_cpu()
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    cpu = (children_cpu() - cpu_before) / runs
    return statistics.median(times) * 1000, cpu * 1000


def plain(argv):
    return lambda: subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=True)


def sandboxed(argv, user):
    def launch():
        outcome = run_sync(argv, user=user, limits=Limits())
        assert outcome.status == "ok" and outcome.exit_code == 0, outcome

    return launch


def layer_cut(argv, user, upto):
    """The real argv cut after one layer, running the job directly from there."""
    full, cgroup = prepare([argv], limits=Limits(), binds=(), user=user, level=None, staging=None, status_fd=None)
    if cgroup is not None:  # the cut chains skip the cgroup: one leftover dir is harmless
        full = full[4:]
    if upto == "wrappers":
        return plain(full[: full.index("bwrap")] + list(argv))
    separator = len(full) - 1 - full[::-1].index("--")  # bwrap's, before inner.py
    return plain(full[: separator + 1] + list(argv))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--user", default="nobody" if os.geteuid() == 0 else None)
    args = parser.parse_args()
    found = probe(args.user)
    print(found.describe())
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(f"\nmedian wall / mean CPU of {args.runs} launches, milliseconds\n")
    print(
        f"{'command':<16} {'plain':>11} {'+setpriv/prlimit':>17} {'+bwrap':>11} "
        f"{'full stack':>11} {'overhead':>11} {'ratio':>6}"
    )
    for name, argv in COMMANDS.items():
        rows = [
            measure(plain(argv), args.runs),
            measure(layer_cut(argv, args.user, "wrappers"), args.runs),
            measure(layer_cut(argv, args.user, "bwrap"), args.runs),
            measure(sandboxed(argv, args.user), args.runs),
        ]
        (base, base_cpu), full = rows[0], rows[-1]
        cells = [f"{w:5.1f}/{c:5.1f}" for w, c in rows]
        print(
            f"{name:<16} {cells[0]:>11} {cells[1]:>17} {cells[2]:>11} {cells[3]:>11} "
            f"{full[0] - base:5.1f}/{full[1] - base_cpu:5.1f} {full[0] / base:5.1f}×"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
