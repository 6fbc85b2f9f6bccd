"""What a run is judged by. Every figure is computed from the run's jobs and clients alone.

Definitions (all times in simulated seconds, speed in probe operations per second):

- ``throughput_jobs_per_hour``: jobs finished per simulated hour; ``work_rate``: committed
  probe operations per second.
- ``utilization``: accepted execution time / online client time. ``lost_share``: time spent on
  slices that were rolled back (missed deadline, client left) / online client time.
  ``transfer_share``: time moving states of accepted slices / online client time.
- ``wait_*``: submission → first dispatch, over dispatched jobs. ``wait_max``: the longest
  wait, counting a job never dispatched as waiting until the end. ``turnaround_*``: submission
  → finish, over finished jobs.
- ``speed_by_price_decile``: jobs ranked by price into ten equal groups (decile 1 = cheapest);
  per group, committed operations / accepted execution seconds — the speed those jobs got while
  running (0 when the group never ran). ``progress_by_price_decile``: committed operations /
  time in the system — what an owner sees. ``wait_by_price_decile``: mean wait to first
  dispatch, a job never dispatched counting as waiting until the end.
- ``jain_fairness``: Jain's index (Σx)² / (n·Σx²) over the jobs' progress rates (operations per
  second in the system): 1 when every job progresses equally fast, 1/n when one job gets all.
- ``starved_share``: among jobs submitted at least ``starvation_bound`` before the end, the
  share not dispatched within ``starvation_bound``; ``never_dispatched_share``: among the same
  jobs, the share never dispatched at all.
- ``value_captured``: Σ price × speed × time = Σ price × committed operations (cents·ops/s);
  ``value_ratio`` divides it by an offline upper bound: all the online clients' capacity
  (Σ speed × online time) filled greedily with the highest-priced work, each job capped at its
  length and at what the fastest client could do between its submission and the end. The bound
  ignores arrival order and windows, so no scheduler reaches 1.
- ``owners_spend`` / ``workers_earnings``: cents moved for accepted execution (equal: the
  ledger is double-entry); ``earnings_per_online_hour_*``: per client.
- ``quote_honesty``: among jobs priced with the quote rule and submitted at least
  ``starvation_bound`` before the end, the share whose speed while running reached the speed
  they were quoted for (a job never dispatched counts as not honest).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from sim.engine import RunResult, SimJob, fewer_collections

__all__ = ["compute_metrics", "jain_index", "value_upper_bound", "SCALAR_METRICS"]

SCALAR_METRICS = (
    "jobs_submitted",
    "jobs_finished",
    "throughput_jobs_per_hour",
    "work_rate",
    "utilization",
    "lost_share",
    "transfer_share",
    "wait_mean",
    "wait_p50",
    "wait_p95",
    "wait_max",
    "never_dispatched",
    "never_dispatched_share",
    "turnaround_mean",
    "turnaround_p95",
    "jain_fairness",
    "starved_share",
    "value_captured",
    "value_upper_bound",
    "value_ratio",
    "owners_spend",
    "workers_earnings",
    "earnings_per_online_hour_mean",
    "earnings_per_online_hour_p10",
    "earnings_per_online_hour_p90",
    "quoted_jobs",
    "quote_honesty",
    "windows_closed",
    "mean_pool_wait",
    "events",
)


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index of ``values`` (1.0 for an empty or all-zero list)."""
    total = sum(values)
    squares = sum(v * v for v in values)
    if not values or squares == 0:
        return 1.0
    return total * total / (len(values) * squares)


def _percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def value_upper_bound(result: RunResult) -> float:
    """The offline bound on Σ price × operations described in the module docstring."""
    end = result.scenario.duration
    capacity = sum(c.speed * c.online_seconds for c in result.clients)
    fastest = max((c.speed for c in result.clients), default=0.0)
    bound = 0.0
    for job in sorted(result.jobs, key=lambda j: (-j.price, j.id)):
        if capacity <= 0:
            break
        work = min(job.length, fastest * (end - job.submitted_at), capacity)
        bound += job.price * work
        capacity -= work
    return bound


def _deciles(jobs: Sequence[SimJob], end: float) -> tuple[list[float], list[float], list[float]]:
    ranked = sorted(jobs, key=lambda j: (j.price, j.id))
    speed, progress, wait = [], [], []
    for d in range(10):
        group = ranked[d * len(ranked) // 10 : (d + 1) * len(ranked) // 10]
        work = sum(j.done for j in group)
        seconds = sum(j.exec_seconds for j in group)
        in_system = sum(_time_in_system(j, end) for j in group)
        speed.append(work / seconds if seconds else 0.0)
        progress.append(work / in_system if in_system else 0.0)
        wait.append(_mean([_censored_wait(j, end) for j in group]))
    return speed, progress, wait


def _censored_wait(job: SimJob, end: float) -> float:
    return (job.first_dispatch if job.first_dispatch is not None else end) - job.submitted_at


def _time_in_system(job: SimJob, end: float) -> float:
    return (job.finished_at if job.finished_at is not None else end) - job.submitted_at


def _ran_as_quoted(job: SimJob) -> bool:
    """Whether a job priced with the quote rule ran at least at the speed it was quoted for."""
    quoted = job.quoted_speed
    return quoted is not None and job.exec_seconds > 0 and job.done / job.exec_seconds >= quoted * (1 - 1e-9)


def compute_metrics(result: RunResult) -> dict[str, Any]:
    """All the figures of one run, as a flat dict (decile lists included)."""
    with fewer_collections():
        metrics = _metrics(result)
        if result.trust is not None:
            from sim.trust import trust_metrics

            metrics.update(trust_metrics(result))
        return metrics


def _metrics(result: RunResult) -> dict[str, Any]:
    s = result.scenario
    end, bound = s.duration, s.starvation_bound
    jobs, clients = result.jobs, result.clients
    finished = [j for j in jobs if j.finished_at is not None]
    dispatched = [j for j in jobs if j.first_dispatch is not None]
    online = sum(c.online_seconds for c in clients)
    # of a dispatched (finished) job these are its actual wait (turnaround), nothing censored
    waits = [_censored_wait(j, end) for j in dispatched]
    turnarounds = [_time_in_system(j, end) for j in finished]
    eligible = [j for j in jobs if j.submitted_at <= end - bound]
    starved = [j for j in eligible if _censored_wait(j, end) > bound]
    unserved = [j for j in eligible if j.first_dispatch is None]
    progress = [j.done / _time_in_system(j, end) for j in jobs if _time_in_system(j, end) > 0]
    speed_deciles, progress_deciles, wait_deciles = _deciles(jobs, end)
    captured = float(sum(j.price * j.done for j in jobs))
    upper = value_upper_bound(result)
    spend = sum(j.paid for j in jobs)
    hourly = [c.earnings / (c.online_seconds / 3600) for c in clients if c.online_seconds > 0]
    quoted = [j for j in eligible if j.quoted_speed is not None]
    honest = [j for j in quoted if _ran_as_quoted(j)]
    return {
        "jobs_submitted": len(jobs),
        "jobs_finished": len(finished),
        "throughput_jobs_per_hour": len(finished) / (end / 3600),
        "work_rate": sum(j.done for j in jobs) / end,
        "utilization": sum(c.busy_seconds for c in clients) / online if online else 0.0,
        "lost_share": sum(c.lost_seconds for c in clients) / online if online else 0.0,
        "transfer_share": sum(c.transfer_seconds for c in clients) / online if online else 0.0,
        "wait_mean": _mean(waits),
        "wait_p50": _percentile(waits, 0.5),
        "wait_p95": _percentile(waits, 0.95),
        "wait_max": max((_censored_wait(j, end) for j in jobs), default=0.0),
        "never_dispatched": len(jobs) - len(dispatched),
        "never_dispatched_share": len(unserved) / len(eligible) if eligible else 0.0,
        "turnaround_mean": _mean(turnarounds),
        "turnaround_p95": _percentile(turnarounds, 0.95),
        "jain_fairness": jain_index(progress),
        "starved_share": len(starved) / len(eligible) if eligible else 0.0,
        "value_captured": captured,
        "value_upper_bound": upper,
        "value_ratio": captured / upper if upper else 0.0,
        "owners_spend": spend,
        "workers_earnings": sum(c.earnings for c in clients),
        "earnings_per_online_hour_mean": _mean(hourly),
        "earnings_per_online_hour_p10": _percentile(hourly, 0.1),
        "earnings_per_online_hour_p90": _percentile(hourly, 0.9),
        "quoted_jobs": len(quoted),
        "quote_honesty": len(honest) / len(quoted) if quoted else math.nan,
        "windows_closed": result.pool.windows_closed,
        "mean_pool_wait": result.pool.mean_wait,
        "events": result.events,
        "speed_by_price_decile": speed_deciles,
        "progress_by_price_decile": progress_deciles,
        "wait_by_price_decile": wait_deciles,
    }
