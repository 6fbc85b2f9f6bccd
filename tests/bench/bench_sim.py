"""Benchmark: 10,000 simulated clients for one simulated day with 1 s pooling windows.

    python tests/bench/bench_sim.py [--clients N] [--hours H] [--slice S] [--churn]

Goal: ≤ 60 s wall time. The market is kept slightly overloaded (arriving work = 1.05 × the
clients' capacity) so clients work rather than poll; slices are 10 minutes. Prints the figures
docs/benchmarks-sim.md records.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sim.engine import simulate
from sim.metrics import compute_metrics
from sim.scenario import parse_experiment

GOAL_SECONDS = 60.0


def scenario(clients: int, hours: float, slice_seconds: float, churn: bool):
    speed_median, sigma = 1e6, 0.5
    capacity = clients * speed_median * 1.1331  # lognormal mean = median * exp(sigma^2 / 2)
    length = 3e9  # probe operations: ~45 min on a median client
    online = (
        {"online": {"dist": "exponential", "mean": 4 * 3600}, "offline": {"dist": "exponential", "mean": 3600}}
        if churn
        else {}
    )
    share_online = 0.8 if churn else 1.0
    document = {
        "run": {"name": "bench", "duration": hours * 3600, "seed": 1, "starvation_bound": 3600},
        "pool": {"window": 1.0, "threshold": clients, "slice": slice_seconds, "policy": "paper"},
        "clients": {
            "count": clients,
            "speed": {"dist": "lognormal", "median": speed_median, "sigma": sigma},
            "miss_rate": 0.01,
            **online,
        },
        "jobs": {
            "initial": clients,
            "rate": 1.05 * share_online * capacity / length,
            "length": {"dist": "exponential", "mean": length},
            "price": {"dist": "lognormal", "median": 10, "sigma": 1.0},
            "quote_share": 0.01,
        },
    }
    return parse_experiment(document).runs[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--slice", type=float, default=600.0)
    parser.add_argument("--churn", action="store_true", help="4 h sessions, 1 h away")
    args = parser.parse_args()
    s = scenario(args.clients, args.hours, args.slice, args.churn)
    started, cpu_started = time.perf_counter(), time.process_time()
    result = simulate(s)
    simulated = time.perf_counter() - started
    metrics = compute_metrics(result)
    total = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    dispatches = sum(j.slices for j in result.jobs)
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(
        f"clients {s.clients}, simulated {s.duration / 3600:g} h, window {s.window:g} s, "
        f"slice {s.slice:g} s, churn {'yes' if args.churn else 'no'}"
    )
    print(
        f"jobs submitted {metrics['jobs_submitted']}, finished {metrics['jobs_finished']}, "
        f"dispatches {dispatches}, windows {result.pool.windows_closed}, "
        f"events {result.events}"
    )
    print(f"utilization {metrics['utilization']:.1%}, mean pool wait {metrics['mean_pool_wait']:.2f} s")
    print(
        f"wall: simulation {simulated:.1f} s, metrics {total - simulated:.1f} s, total {total:.1f} s "
        f"({result.events / simulated:,.0f} events/s, {dispatches / simulated:,.0f} dispatches/s)"
    )
    print(f"cpu: {cpu:.1f} s ({cpu / total:.0%} of the wall time; less means other load)")
    verdict = "PASS" if total <= GOAL_SECONDS else "FAIL"
    print(f"goal ≤ {GOAL_SECONDS:g} s: {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
