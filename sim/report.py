"""An experiment's results as a table (stdout), ``results.csv`` and ``results.json``.

Nothing here writes a timestamp, a host name or a wall-clock duration: the same seed gives
byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.engine import RunResult
from sim.metrics import SCALAR_METRICS
from sim.scenario import Experiment

__all__ = ["RunRow", "table", "write_csv", "write_json", "write_jobs_csv", "run_label", "short_name"]

RunRow = tuple[Mapping[str, Any], Mapping[str, Any]]  # (sweep parameters, metrics)

# (header, metric, format) for the stdout table; the files carry every metric
_COLUMNS = (
    ("finished", "jobs_finished", "{:.0f}"),
    ("util%", "utilization", "{:.1%}"),
    ("wait s", "wait_mean", "{:.0f}"),
    ("wait95 s", "wait_p95", "{:.0f}"),
    ("turn s", "turnaround_mean", "{:.0f}"),
    ("starved", "starved_share", "{:.1%}"),
    ("jain", "jain_fairness", "{:.3f}"),
    ("value", "value_ratio", "{:.1%}"),
    ("quote ok", "quote_honesty", "{:.0%}"),
    ("pool wait", "mean_pool_wait", "{:.2f}"),
)


def run_label(params: Mapping[str, Any]) -> str:
    """``window=1 threshold=50`` — the sweep point, short names."""
    return " ".join(f"{short_name(path)}={_short(value)}" for path, value in params.items()) or "run"


def short_name(path: str) -> str:
    """``pool.window`` → ``window``; a distribution's parameter keeps its owner:
    ``clients.online.mean`` → ``online.mean``."""
    return ".".join(path.split(".")[1:]) if path.count(".") >= 2 else path.rsplit(".", 1)[-1]


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _cell(fmt: str, value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return fmt.format(value)


def table(rows: Sequence[RunRow]) -> str:
    """A fixed-width table: one line per run, the sweep point first, then the key metrics;
    the last two columns are the mean speed (Mops/s) the cheapest and dearest price deciles got."""
    headers = ["run"] + [h for h, _, _ in _COLUMNS] + ["d1 Mops", "d10 Mops"]
    lines = []
    for params, m in rows:
        speeds = m["speed_by_price_decile"]
        lines.append(
            [run_label(params)]
            + [_cell(f, m[key]) for _, key, f in _COLUMNS]
            + [f"{speeds[0] / 1e6:.2f}", f"{speeds[-1] / 1e6:.2f}"]
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(headers)]
    out = io.StringIO()
    for line in [headers] + lines:
        cells = [line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:], widths[1:])]
        out.write("  ".join(cells).rstrip() + "\n")
    return out.getvalue()


def write_csv(path: Path, rows: Sequence[RunRow]) -> None:
    """One row per run: sweep parameters, every scalar metric, then both decile series."""
    params = list(rows[0][0]) if rows else []
    from sim.trust import TRUST_METRICS

    # a run with a [trust] table also has the trust figures; older experiments' files stay as they were
    extra = [k for k in TRUST_METRICS if rows and k in rows[0][1]]
    deciles = [f"{name}_d{i}" for name in ("speed", "progress", "wait") for i in range(1, 11)]
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(params + list(SCALAR_METRICS) + extra + deciles)
        for p, m in rows:
            writer.writerow(
                [p[name] for name in params]
                + [_plain(m[k]) for k in SCALAR_METRICS]
                + [_plain(m[k]) for k in extra]
                + [_plain(v) for v in m["speed_by_price_decile"]]
                + [_plain(v) for v in m["progress_by_price_decile"]]
                + [_plain(v) for v in m["wait_by_price_decile"]]
            )


def write_json(path: Path, experiment: Experiment, seed: int, rows: Sequence[RunRow]) -> None:
    """The experiment, its seed and every run's parameters and metrics."""
    document = {
        "experiment": experiment.name,
        "description": experiment.description,
        "seed": seed,
        "sweep": {name: list(values) for name, values in experiment.sweep},
        "runs": [{"params": dict(p), "metrics": {k: _json_number(v) for k, v in m.items()}} for p, m in rows],
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


_JOB_COLUMNS = (
    "job",
    "price",
    "submitted_at",
    "length",
    "done",
    "first_dispatch",
    "finished_at",
    "wait",
    "turnaround",
    "exec_seconds",
    "speed",
    "slices",
    "rollbacks",
    "paid",
    "quoted_speed",
)


def write_jobs_csv(path: Path, result: RunResult) -> None:
    """One row per job of one run: its wait (submission → first dispatch), turnaround
    (submission → finish), mean speed while running, slices, rollbacks and payments. Empty
    cells: never dispatched, not finished, not quoted."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(_JOB_COLUMNS)
        for j in result.jobs:
            wait = None if j.first_dispatch is None else j.first_dispatch - j.submitted_at
            turnaround = None if j.finished_at is None else j.finished_at - j.submitted_at
            speed = j.done / j.exec_seconds if j.exec_seconds else None
            writer.writerow(
                [
                    _plain(v)
                    for v in (
                        j.id,
                        j.price,
                        j.submitted_at,
                        j.length,
                        j.done,
                        j.first_dispatch,
                        j.finished_at,
                        wait,
                        turnaround,
                        j.exec_seconds,
                        speed,
                        j.slices,
                        j.rollbacks,
                        j.paid,
                        j.quoted_speed,
                    )
                ]
            )


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_json_number(v) for v in value]
    return value
