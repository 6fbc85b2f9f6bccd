"""PNG plots of an experiment (matplotlib, Agg backend), as its ``[[plot]]`` tables ask::

    [[plot]]
    file = "wait.png"             # written into --out
    kind = "line"                 # line (default) | deciles | scatter
    x = "pool.window"             # line: a sweep parameter; scatter: a metric
    y = ["mean_pool_wait", "value_ratio"]   # one panel per metric
    series = "pool.threshold"     # optional: one line per value of this parameter
    where = { "pool.threshold" = 50 }       # optional: only these runs
    logx = true                   # optional
    title = "..."                 # optional

``deciles`` draws a decile metric (``speed_by_price_decile``, ``progress_by_price_decile``)
with one line per run; a line plot over a parameter with text values (policies) draws bars.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sim.distributions import ScenarioError
from sim.report import RunRow, run_label, short_name

__all__ = ["draw_plots", "check_plots"]

_DECILE_METRICS = ("speed_by_price_decile", "progress_by_price_decile", "wait_by_price_decile")
_KINDS = ("line", "deciles", "scatter")


def check_plots(plots: Sequence[Mapping[str, Any]], parameters: Sequence[str]) -> None:
    """Refuse ``[[plot]]`` tables that name unknown metrics or parameters — before a long run
    rather than after it. ``parameters`` are the experiment's sweep parameters."""
    from sim.metrics import SCALAR_METRICS
    from sim.trust import TRUST_METRICS

    scalars = SCALAR_METRICS + TRUST_METRICS

    for number, spec in enumerate(plots, 1):
        where = f"[[plot]] number {number}"
        if not isinstance(spec, Mapping) or "file" not in spec or "y" not in spec:
            raise ScenarioError(f"{where} needs file and y")
        kind = spec.get("kind", "line")
        if kind not in _KINDS:
            raise ScenarioError(f"{where}: unknown kind {kind!r}; known: {', '.join(_KINDS)}")
        metrics = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        known = _DECILE_METRICS if kind == "deciles" else scalars
        for metric in metrics:
            if metric not in known:
                raise ScenarioError(f"{where}: y {metric!r} is not a {kind} metric; known: {', '.join(known)}")
        if kind == "line" and spec.get("x") not in parameters:
            raise ScenarioError(
                f"{where}: x must be one of the swept parameters ({', '.join(parameters) or 'none: add a [sweep]'})"
            )
        if kind == "scatter" and spec.get("x") not in scalars:
            raise ScenarioError(f"{where}: x must be a metric for a scatter plot")
        for name in [spec.get("series")] + [key for key, _ in _flat(spec.get("where", {}))]:
            if name is not None and name not in parameters:
                raise ScenarioError(f"{where}: {name!r} is not a swept parameter")


_LABELS = {
    "mean_pool_wait": "mean wait in the pool (s)",
    "value_ratio": "value captured / offline bound",
    "utilization": "utilization (busy / online time)",
    "wait_mean": "mean wait to first dispatch (s)",
    "wait_p95": "95th percentile wait to first dispatch (s)",
    "starved_share": "share of jobs starved",
    "jain_fairness": "Jain's fairness index (progress rate)",
    "turnaround_mean": "mean turnaround (s)",
    "quote_honesty": "share of quoted jobs that got the quoted speed",
    "speed_by_price_decile": "mean speed while running (ops/s)",
    "progress_by_price_decile": "progress per second in the system (ops/s)",
    "wait_by_price_decile": "mean wait to first dispatch (s)",
    "never_dispatched_share": "share of jobs never dispatched",
    "wait_max": "longest wait to first dispatch (s)",
    "transfer_share": "share of online time moving states",
    "lost_share": "share of online time lost to rolled-back slices",
    "throughput_jobs_per_hour": "jobs finished per hour",
    "windows_closed": "windows closed",
}


def draw_plots(plots: Sequence[Mapping[str, Any]], rows: Sequence[RunRow], out: Path) -> list[Path]:
    """Draw every requested plot into ``out``; returns the files written."""
    if not plots:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for spec in plots:
        if "file" not in spec or "y" not in spec:
            raise ScenarioError("every [[plot]] needs file and y")
        selected = [row for row in rows if _matches(row[0], spec.get("where", {}))]
        metrics = spec["y"] if isinstance(spec["y"], list) else [spec["y"]]
        width = max(6.4, 5.0 * len(metrics))
        fig, axes = plt.subplots(1, len(metrics), figsize=(width, 4.2), squeeze=False)
        kind = spec.get("kind", "line")
        for ax, metric in zip(axes[0], metrics):
            if kind == "line":
                _line(ax, spec, metric, selected)
            elif kind == "deciles":
                _deciles(ax, spec, metric, selected)
            elif kind == "scatter":
                _scatter(ax, spec, metric, selected)
            else:
                raise ScenarioError(f"unknown plot kind {kind!r}: line, deciles or scatter")
            ax.set_ylabel(_LABELS.get(metric, metric))
            ax.grid(True, alpha=0.3)
        if "title" in spec:
            fig.suptitle(textwrap.fill(spec["title"], int(width * 11)), fontsize="medium")
        fig.tight_layout()
        path = out / spec["file"]
        fig.savefig(path, dpi=90, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def _matches(params: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    return all(params.get(key) == value for key, value in _flat(where))


def _flat(table: Mapping[str, Any], prefix: str = ""):
    for key, value in table.items():
        if isinstance(value, Mapping):
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _groups(spec: Mapping[str, Any], rows: Sequence[RunRow]) -> dict[Any, list[RunRow]]:
    series = spec.get("series")
    groups: dict[Any, list[RunRow]] = {}
    for row in rows:
        groups.setdefault(row[0].get(series) if series else None, []).append(row)
    return groups


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _name(spec: Mapping[str, Any], value: Any) -> str:
    series = spec.get("series", "")
    return f"{short_name(series)}={_short(value)}" if series else ""


def _line(ax, spec, metric, rows) -> None:
    x = spec.get("x")
    if x is None:
        raise ScenarioError("a line plot needs x (a sweep parameter)")
    groups = _groups(spec, rows)
    categorical = any(isinstance(p[x], str) for p, _ in rows)
    if categorical:
        categories = list(dict.fromkeys(p[x] for p, _ in rows))
        width = 0.8 / max(1, len(groups))
        for i, (value, group) in enumerate(groups.items()):
            heights = {p[x]: m[metric] for p, m in group}
            ax.bar(
                [c + i * width for c in range(len(categories))],
                [heights.get(c, 0.0) for c in categories],
                width,
                label=_name(spec, value) or None,
            )
        ax.set_xticks([c + width * (len(groups) - 1) / 2 for c in range(len(categories))])
        ax.set_xticklabels(categories, rotation=20)
    else:
        for value, group in groups.items():
            points = sorted((p[x], m[metric]) for p, m in group)
            ax.plot([a for a, _ in points], [b for _, b in points], marker="o", label=_name(spec, value) or None)
        if spec.get("logx"):
            ax.set_xscale("log")
    if spec.get("logy"):
        ax.set_yscale("log")
    ax.set_xlabel(x)
    if spec.get("series"):
        ax.legend(fontsize="small")


def _deciles(ax, spec, metric, rows) -> None:
    for params, m in rows:
        series = spec.get("series")
        label = _name(spec, params[series]) if series else run_label(params)
        ax.plot(range(1, 11), m[metric], marker="o", label=label)
    ax.set_xticks(range(1, 11))
    ax.set_xlabel("price decile (1 = cheapest 10% of jobs)")
    if spec.get("logy"):
        ax.set_yscale("log")
    ax.legend(fontsize="small")


def _scatter(ax, spec, metric, rows) -> None:
    x = spec.get("x")
    if x is None:
        raise ScenarioError("a scatter plot needs x (a metric)")
    for value, group in _groups(spec, rows).items():
        ax.plot([m[x] for _, m in group], [m[metric] for _, m in group], marker="o", label=_name(spec, value) or None)
        for params, m in group:
            label = run_label(params) if len(params) > 1 else _short(next(iter(params.values()), ""))
            ax.annotate(label, (m[x], m[metric]), fontsize="x-small", textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel(_LABELS.get(x, x))
    if spec.get("series"):
        ax.legend(fontsize="small")
