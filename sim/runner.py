"""Run every point of an experiment and collect its metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from sim.engine import simulate
from sim.metrics import compute_metrics
from sim.report import RunRow
from sim.scenario import Experiment

__all__ = ["run_experiment"]


def run_experiment(experiment: Experiment,
                   progress: Optional[Callable[[int, int], None]] = None) -> list[RunRow]:
    """One ``(sweep parameters, metrics)`` row per run, in sweep order."""
    rows: list[RunRow] = []
    for index, (params, scenario) in enumerate(experiment.runs):
        if progress is not None:
            progress(index, len(experiment.runs))
        rows.append((dict(params), compute_metrics(simulate(scenario))))
    return rows
