"""Incremental freeze (market.tasklet.delta) vs a whole codec.encode, one element changed.

    python tests/bench/bench_delta.py [--scale 1.0] [--repeat 3]

For each ~64 MB state (scale 1.0): the first (whole) incremental freeze, then ``--repeat`` rounds
of "change one element, freeze incrementally" (median), and one whole ``codec.encode`` of the same
state in the same run; the ratio is whole / incremental.  The goal (issue 18, item 4) is a local
freeze after a small change <= 20 ms.  Prints whether the identity comparison is the memcmp one.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from market.tasklet import codec, delta


def _states(scale: float):
    n = int(8_000_000 * scale)
    yield "list of %d ints" % n, list(range(n)), lambda s, k: s.__setitem__(k % len(s), -k)
    n = int(1_000_000 * scale)
    yield "dict of %d str->int" % n, {str(i): i for i in range(n)}, lambda s, k: s.__setitem__(str(k % n), -k)
    n = int(500_000 * scale)
    yield (
        "list of %d small lists" % n,
        [[i, i + 1, i + 2] for i in range(n)],
        lambda s, k: s[k % len(s)].__setitem__(1, -k),
    )
    n = int(8_000_000 * scale)
    yield "list of %d ints, one append" % n, list(range(n)), lambda s, k: s.append(k)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    opts = ap.parse_args()
    print("identity comparison by memcmp: %s; chunk %d items" % (delta.identity_compare_native(), delta.CHUNK))
    print("%-34s %10s %10s %10s %8s %10s" % ("state", "first ms", "incr ms", "whole ms", "ratio", "delta B"))
    for name, state, change in _states(opts.scale):
        gc.collect()
        freezer = delta.Freezer()
        t = time.perf_counter()
        freezer.freeze(state)
        first = time.perf_counter() - t
        times, size = [], 0
        for k in range(opts.repeat):
            change(state, 7919 * (k + 1))
            t = time.perf_counter()
            d = freezer.freeze(state)
            times.append(time.perf_counter() - t)
            size = d.size()
        t = time.perf_counter()
        whole = codec.encode(state)
        full = time.perf_counter() - t
        incr = statistics.median(times)
        print(
            "%-34s %10.1f %10.1f %10.1f %8.1f %10d   (whole %.1f MB)"
            % (name, first * 1e3, incr * 1e3, full * 1e3, full / incr, size, len(whole) / 1e6)
        )
        del state, freezer, whole
    sys.stdout.flush()


if __name__ == "__main__":
    main()
