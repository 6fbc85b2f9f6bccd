"""``sim SCENARIO.toml [--seed N] [--out DIR] [--no-plots] [--per-job]``: run an experiment.

Prints a table (one line per sweep point) and, with ``--out``, writes ``results.csv``,
``results.json``, the scenario's plots and (``--per-job``) one CSV of jobs per run there.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from sim.distributions import ScenarioError

__all__ = ["main"]


def shipped_scenarios() -> list[str]:
    """The scenarios installed with the package (``sim/scenarios/*.toml``), by name."""
    from importlib import resources

    folder = resources.files("sim").joinpath("scenarios")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def _scenario(text: str) -> Path:
    """A path as given; a bare name that is no file is a shipped scenario (``sim policies``)."""
    path = Path(text)
    if path.exists() or path.suffix or text not in shipped_scenarios():
        return path
    from importlib import resources

    return Path(str(resources.files("sim").joinpath("scenarios", f"{text}.toml")))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sim",
        description="Simulate the market's pooling and matching (the production code) on "
        "simulated time. See docs/sim.md.",
    )
    parser.add_argument(
        "scenario",
        type=_scenario,
        help="a scenario file (TOML), or the name of a shipped one: " + ", ".join(shipped_scenarios()),
    )
    parser.add_argument("--seed", type=int, default=None, help="override the scenario's run.seed")
    parser.add_argument(
        "--out", type=Path, default=None, help="directory for results.csv, results.json and plots (created if missing)"
    )
    parser.add_argument("--no-plots", action="store_true", help="write no PNG files")
    parser.add_argument(
        "--per-job",
        action="store_true",
        help="also write jobs-N.csv (one row per job: wait, turnaround, speed...) for every run into --out",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the experiment a scenario file describes; returns the exit status."""
    args = _parser().parse_args(argv)
    # imported here so `sim --help` answers at once
    from sim.plots import check_plots, draw_plots
    from sim.report import table, write_csv, write_json
    from sim.runner import run_experiment
    from sim.scenario import load_experiment

    try:
        experiment = load_experiment(args.scenario, args.seed)
        check_plots(experiment.plots, [name for name, _ in experiment.runs[0][0]])
    except ScenarioError as e:
        print(f"sim: {e}", file=sys.stderr)
        return 2
    seed = experiment.runs[0][1].seed

    def progress(index: int, total: int) -> None:
        if not args.quiet:
            print(f"sim: {experiment.name}: run {index + 1} of {total}", file=sys.stderr)

    if args.per_job and args.out is None:
        print("sim: --per-job writes into the --out directory; give one", file=sys.stderr)
        return 2
    if args.out is not None:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            print(f"sim: cannot create the output directory {str(args.out)!r}: {e.strerror}", file=sys.stderr)
            return 1
    rows = run_experiment(experiment, progress, args.out if args.per_job else None)
    print(f"# {experiment.name} (seed {seed})")
    sys.stdout.write(table(rows))
    if args.out is not None:
        write_csv(args.out / "results.csv", rows)
        write_json(args.out / "results.json", experiment, seed, rows)
        if not args.no_plots:
            try:
                for path in draw_plots(experiment.plots, rows, args.out):
                    if not args.quiet:
                        print(f"sim: wrote {path}", file=sys.stderr)
            except ScenarioError as e:
                print(f"sim: {e}", file=sys.stderr)
                return 2
            except ImportError:
                print(
                    "sim: plots need matplotlib — pip install 'community-market[sim]', or pass --no-plots",
                    file=sys.stderr,
                )
                return 1
    return 0
