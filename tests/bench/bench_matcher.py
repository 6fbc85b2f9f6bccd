"""Benchmark: match 10,000 pooled clients against 1,000,000 ready jobs.

    python tests/bench/bench_matcher.py [--clients N] [--jobs N] [--repeat R]

Goal: ≤ 100 ms for ``market.core.matcher.match``. Baselines in the same run, on the same data:
sorting the whole ready list by ``job_order_key`` and ``heapq.nsmallest`` over all of it.
Prices are integer cents drawn from a lognormal (median 10 c/s, so many ties), submission
times spread over a day.
"""

from __future__ import annotations

import argparse
import heapq
import math
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from market.core.matcher import (
    Assignment,
    PooledClient,
    ReadyJob,
    client_order_key,
    job_order_key,
    match,
)

GOAL_MS = 100.0


def market(clients: int, jobs: int, seed: int = 1):
    rng = random.Random(seed)
    ready = [
        ReadyJob(i, max(1, round(rng.lognormvariate(math.log(10), 1.0))), rng.uniform(0, 86400))
        for i in range(1, jobs + 1)
    ]
    pooled = [PooledClient(i, rng.lognormvariate(math.log(1e6), 0.5), rng.uniform(0, 1)) for i in range(1, clients + 1)]
    return pooled, ready


def full_sort(clients, jobs):
    ranked = sorted(clients, key=client_order_key)
    return [Assignment(c, j) for c, j in zip(ranked, sorted(jobs, key=job_order_key))]


def full_heap(clients, jobs):
    ranked = sorted(clients, key=client_order_key)
    return [Assignment(c, j) for c, j in zip(ranked, heapq.nsmallest(len(ranked), jobs, key=job_order_key))]


def timed(function, clients, jobs, repeat):
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function(clients, jobs)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), min(times), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    clients, jobs = market(args.clients, args.jobs)
    print(
        f"python {platform.python_version()} on {platform.machine()}: "
        f"{args.clients:,} clients x {args.jobs:,} ready jobs, median of {args.repeat}"
    )
    median, best, got = timed(match, clients, jobs, args.repeat)
    sort_median, sort_best, by_sort = timed(full_sort, clients, jobs, max(3, args.repeat // 2))
    heap_median, heap_best, by_heap = timed(full_heap, clients, jobs, max(3, args.repeat // 2))
    assert got == by_sort == by_heap, "match disagrees with a full sort"
    print(f"match (sampled price floor + sort of candidates): median {median:.1f} ms, best {best:.1f} ms")
    print(
        f"baseline sorted(all jobs):                       median {sort_median:.1f} ms, best {sort_best:.1f} ms"
        f"  ({sort_median / median:.1f}x slower)"
    )
    print(
        f"baseline heapq.nsmallest(all jobs):              median {heap_median:.1f} ms, best {heap_best:.1f} ms"
        f"  ({heap_median / median:.1f}x slower)"
    )
    verdict = "PASS" if median <= GOAL_MS else "FAIL"
    print(f"goal ≤ {GOAL_MS:g} ms: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
