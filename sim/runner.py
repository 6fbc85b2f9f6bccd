"""Run every point of an experiment and collect its metrics."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sim.metrics import compute_metrics
from sim.report import RunRow, write_jobs_csv
from sim.scenario import Experiment
from sim.trust import simulate

__all__ = ["run_experiment"]


def run_experiment(
    experiment: Experiment, progress: Callable[[int, int], None] | None = None, per_job: Path | None = None
) -> list[RunRow]:
    """One ``(sweep parameters, metrics)`` row per run, in sweep order; with ``per_job``, also
    ``jobs-<run number>.csv`` there for every run."""
    rows: list[RunRow] = []
    for index, (params, scenario) in enumerate(experiment.runs):
        if progress is not None:
            progress(index, len(experiment.runs))
        result = simulate(scenario)
        if per_job is not None:
            write_jobs_csv(per_job / f"jobs-{index + 1}.csv", result)
        rows.append((dict(params), compute_metrics(result)))
    return rows
