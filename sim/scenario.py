"""Scenario files: what to simulate, and which parameter to sweep for an experiment.

A scenario is a TOML file with four tables (every key optional; defaults in ``DEFAULTS``)::

    [run]      name, description, duration (s), seed, starvation_bound (s)
    [pool]     window (s), threshold (requests), slice (s), transfer (s), allowance (s),
               policy, aging_rate
    [clients]  count, speed (probe ops/s), online / offline (session lengths, s: churn),
               miss_rate (share of slices whose check-in misses the deadline),
               max_retry (s), backoff
    [jobs]     initial, rate (arrivals/s), price (cents/s), length (probe operations),
               quote_share, quote_speed (ops/s)
    [trust]    verification by replay and cheating workers (``sim.trust``; absent: no
               cheaters, no replays): cheaters (share of the clients), cheat (none | instant |
               skip | forge | slow; none: no cheaters, the cost of verifying honest work),
               cheat_share (share of its slices a cheater cheats on), skip (share of a slice's
               steps a skip or slow cheater leaves out), rejoin (a caught cheater comes back as
               a new client), turncoats (cheaters start as trusted workers, not under watch),
               new_market (every client starts under watch, honest ones too: a market that just
               opened; otherwise honest clients start trusted),
               liars (cheaters also lie when they verify), verifiers (share of the clients that
               opt in to verify), fraction, watch_slices, wait_seconds, margin
               (``market.core.verification.Settings``), replay_slowdown (a replay counts every
               back-edge: its speed is the machine's / this), scope (job | all: which of a
               loser's jobs are reversed and rolled back)

plus an optional ``[sweep]`` table whose values are lists (``pool.window = [0.1, 1, 10]``):
one run per combination, in file order, all with the same seed (common random numbers, so
differences between runs come from the parameter, not from luck). Parameters that must move
together share one quoted key joined by ``+`` and take lists of tuples::

    "clients.online.mean+clients.offline.mean" = [[600, 200], [3600, 1200]]

Optional ``[[plot]]`` tables are read by ``sim.plots``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from market.core import verification
from market.core.matcher import DEFAULT_AGING_RATE, POLICIES
from sim.distributions import Distribution, ScenarioError, parse_distribution

__all__ = ["DEFAULTS", "Scenario", "Trust", "Experiment", "load_experiment", "parse_experiment", "ScenarioError"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "run": {"name": "scenario", "description": "", "duration": 3600.0, "seed": 1, "starvation_bound": 600.0},
    "pool": {
        "window": 1.0,
        "threshold": 100,
        "slice": 300.0,
        "transfer": 0.0,
        "allowance": 30.0,
        "policy": "paper",
        "aging_rate": DEFAULT_AGING_RATE,
    },
    "clients": {
        "count": 100,
        "speed": {"dist": "lognormal", "median": 1e6, "sigma": 0.5},
        "online": None,
        "offline": None,
        "miss_rate": 0.0,
        "max_retry": 60.0,
        "backoff": 2.0,
    },
    "jobs": {
        "initial": 0,
        "rate": 0.1,
        "price": {"dist": "lognormal", "median": 10, "sigma": 1.0},
        "length": {"dist": "exponential", "mean": 3e8},
        "quote_share": 0.0,
        "quote_speed": None,
    },
    "trust": {
        "cheaters": 0.1,
        "cheat": "instant",
        "cheat_share": 1.0,
        "skip": 0.5,
        "rejoin": True,
        "turncoats": False,
        "new_market": False,
        "liars": False,
        "verifiers": 1.0,
        "fraction": verification.DEFAULT_FRACTION,
        "watch_slices": verification.DEFAULT_WATCH_SLICES,
        "wait_seconds": verification.DEFAULT_WAIT_SECONDS,
        "margin": verification.DEFAULT_MARGIN,
        "replay_slowdown": 1.5,
        "scope": "all",
        "hold": False,
        "watch_slice": True,
        "refute_early": 0.0,
    },
}
CHEATS = ("none", "instant", "skip", "forge", "slow")
SCOPES = ("job", "all")
_DISTRIBUTIONS = {"clients.speed", "clients.online", "clients.offline", "jobs.price", "jobs.length", "jobs.quote_speed"}


@dataclass(frozen=True)
class Trust:
    """Cheating workers and verification by replay (the ``[trust]`` table; see the module
    docstring and ``sim.trust``)."""

    cheaters: float
    cheat: str
    cheat_share: float
    skip: float
    rejoin: bool
    turncoats: bool
    new_market: bool
    liars: bool
    verifiers: float
    settings: verification.Settings
    replay_slowdown: float
    scope: str
    hold: bool = False  # verification.on_hold: no paid lease while a check of one's work is disputed
    watch_slice: bool = True  # verification.slice_seconds: a worker under watch gets a shorter slice (as the market)
    #: what if a replay could refute a made-up state once past its claimed position: it stops after
    #: this many times the slice's claimed steps (0: it runs to its cap, as the runtime does today)
    refute_early: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """One fully specified simulation run."""

    name: str
    duration: float
    seed: int
    starvation_bound: float
    window: float
    threshold: int
    slice: float
    transfer: float
    allowance: float
    policy: str
    aging_rate: float
    clients: int
    speed: Distribution
    online: Distribution | None
    offline: Distribution | None
    miss_rate: float
    max_retry: float
    backoff: float
    initial_jobs: int
    arrival_rate: float
    price: Distribution
    length: Distribution
    quote_share: float
    quote_speed: Distribution | None
    trust: Trust | None = None  # None: no [trust] table, the market before verification


@dataclass(frozen=True)
class Experiment:
    """A scenario file: its runs (one per sweep point) and its plot requests."""

    name: str
    description: str
    sweep: tuple[tuple[str, tuple[Any, ...]], ...]
    runs: tuple[tuple[tuple[tuple[str, Any], ...], Scenario], ...]
    plots: tuple[Mapping[str, Any], ...]


def load_experiment(path: Path, seed: int | None = None) -> Experiment:
    """Read a scenario file; ``seed`` overrides ``run.seed``."""
    import tomllib

    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise ScenarioError(f"no scenario file {str(path)!r}") from None
    except tomllib.TOMLDecodeError as e:
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    document.setdefault("run", {}).setdefault("name", Path(path).stem)
    return parse_experiment(document, seed)


def parse_experiment(document: Mapping[str, Any], seed: int | None = None) -> Experiment:
    """Build an experiment from an already parsed TOML document."""
    unknown = set(document) - set(DEFAULTS) - {"sweep", "plot"}
    if unknown:
        raise ScenarioError(
            f"unknown table(s) {', '.join(sorted(unknown))}; known: {', '.join(list(DEFAULTS) + ['sweep', 'plot'])}"
        )
    base = copy.deepcopy(DEFAULTS)
    base["trust"]["enabled"] = "trust" in document
    for table, values in document.items():
        if table in DEFAULTS:
            if not isinstance(values, Mapping):
                raise ScenarioError(f"[{table}] must be a table")
            for key, value in values.items():
                _set(base, f"{table}.{key}", value)
    if seed is not None:
        base["run"]["seed"] = seed
    sweep = tuple(_flatten_sweep(document.get("sweep", {})))
    runs = []
    for combination in itertools.product(*(values for _, values in sweep)):
        config = copy.deepcopy(base)
        params = tuple(pair for (path, _), value in zip(sweep, combination) for pair in _split(path, value))
        for path, value in params:
            _set(config, path, value)
        runs.append((params, _scenario(config)))
    plots = document.get("plot", [])
    if isinstance(plots, Mapping):
        plots = [plots]
    return Experiment(base["run"]["name"], base["run"]["description"], sweep, tuple(runs), tuple(plots))


def _split(path: str, value: Any) -> list[tuple[str, Any]]:
    if "+" not in path:
        return [(path, value)]
    paths = path.split("+")
    if not isinstance(value, list) or len(value) != len(paths):
        raise ScenarioError(f"[sweep] {path!r} takes lists of {len(paths)} values, not {value!r}")
    return list(zip(paths, value))


def _flatten_sweep(table: Mapping[str, Any], prefix: str = ""):
    for key, value in table.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten_sweep(value, path + ".")
        elif isinstance(value, list) and value:
            yield path, tuple(value)
        else:
            raise ScenarioError(f"[sweep] {path} must be a non-empty list of values")


def _set(config: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    table, key = parts[0], parts[1] if len(parts) > 1 else None
    if table not in DEFAULTS or key not in DEFAULTS[table]:
        raise ScenarioError(
            f"unknown setting {path!r}; [{table}] knows {', '.join(DEFAULTS.get(table, {})) or 'nothing'}"
        )
    if len(parts) == 2:
        config[table][key] = value
        return
    # a distribution's parameter, e.g. clients.online.mean
    current = config[table][key]
    if not isinstance(current, Mapping) or len(parts) != 3:
        raise ScenarioError(f"cannot set {path!r}: {table}.{key} is not a distribution table")
    config[table][key] = {**current, parts[2]: value}


def _trust(t: dict[str, Any]) -> Trust | None:
    if not t.get("enabled"):
        return None
    shares = {k: float(t[k]) for k in ("cheaters", "cheat_share", "skip", "verifiers", "fraction")}
    for key, value in shares.items():
        if not 0 <= value <= 1:
            raise ScenarioError(f"trust.{key} is a share between 0 and 1, not {value!r}")
    if t["cheat"] not in CHEATS:
        raise ScenarioError(f"trust.cheat {t['cheat']!r} is not one of {', '.join(CHEATS)}")
    if t["scope"] not in SCOPES:
        raise ScenarioError(f"trust.scope {t['scope']!r} is not one of {', '.join(SCOPES)}")
    settings = verification.Settings(
        fraction=shares["fraction"],
        watch_slices=int(t["watch_slices"]),
        wait_seconds=_number("trust.wait_seconds", t["wait_seconds"], 0),
        margin=_number("trust.margin", t["margin"], 0),
    )
    return Trust(
        cheaters=shares["cheaters"],
        cheat=str(t["cheat"]),
        cheat_share=shares["cheat_share"],
        skip=shares["skip"],
        rejoin=bool(t["rejoin"]),
        turncoats=bool(t["turncoats"]),
        new_market=bool(t["new_market"]),
        liars=bool(t["liars"]),
        verifiers=shares["verifiers"],
        settings=settings,
        replay_slowdown=_number("trust.replay_slowdown", t["replay_slowdown"], 0),
        scope=str(t["scope"]),
        hold=bool(t["hold"]),
        watch_slice=bool(t["watch_slice"]),
        refute_early=0.0 if t["refute_early"] == 0 else _number("trust.refute_early", t["refute_early"], 0),
    )


def _scenario(c: dict[str, Any]) -> Scenario:
    run, pool, clients, jobs = c["run"], c["pool"], c["clients"], c["jobs"]

    def dist(path: str) -> Distribution | None:
        table, key = path.split(".")
        spec = c[table][key]
        return None if spec is None else parse_distribution(path, spec)

    def required(path: str) -> Distribution:
        found = dist(path)
        if found is None:
            raise ScenarioError(f"{path} is required: a distribution table")
        return found

    if pool["policy"] not in POLICIES:
        raise ScenarioError(f"pool.policy {pool['policy']!r} is not one of {', '.join(POLICIES)}")
    if (clients["online"] is None) != (clients["offline"] is None):
        raise ScenarioError("clients.online and clients.offline go together (session lengths for churn)")
    scenario = Scenario(
        name=str(run["name"]),
        duration=_number("run.duration", run["duration"], 0),
        seed=int(run["seed"]),
        starvation_bound=_number("run.starvation_bound", run["starvation_bound"], 0),
        window=_number("pool.window", pool["window"], 0),
        threshold=int(pool["threshold"]),
        slice=_number("pool.slice", pool["slice"], 0),
        transfer=float(pool["transfer"]),
        allowance=float(pool["allowance"]),
        policy=str(pool["policy"]),
        aging_rate=float(pool["aging_rate"]),
        clients=int(clients["count"]),
        speed=required("clients.speed"),
        online=dist("clients.online"),
        offline=dist("clients.offline"),
        miss_rate=float(clients["miss_rate"]),
        max_retry=_number("clients.max_retry", clients["max_retry"], 0),
        backoff=float(clients["backoff"]),
        initial_jobs=int(jobs["initial"]),
        arrival_rate=float(jobs["rate"]),
        price=required("jobs.price"),
        length=required("jobs.length"),
        quote_share=float(jobs["quote_share"]),
        quote_speed=dist("jobs.quote_speed"),
        trust=_trust(c["trust"]),
    )
    if scenario.threshold < 1:
        raise ScenarioError("pool.threshold must be at least 1")
    if not 0 <= scenario.miss_rate <= 1 or not 0 <= scenario.quote_share <= 1:
        raise ScenarioError("clients.miss_rate and jobs.quote_share are shares between 0 and 1")
    if scenario.clients < 0 or scenario.initial_jobs < 0 or scenario.arrival_rate < 0:
        raise ScenarioError("clients.count, jobs.initial and jobs.rate must not be negative")
    if scenario.backoff < 1 or scenario.allowance < 0:
        raise ScenarioError("clients.backoff must be at least 1 and pool.allowance not negative")
    if not 0 <= scenario.transfer <= scenario.allowance:
        raise ScenarioError(
            "pool.transfer must be between 0 and pool.allowance (the deadline is "
            "slice + allowance, so a longer transfer would miss every deadline)"
        )
    return scenario


def _number(path: str, value: Any, above: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > above:
        raise ScenarioError(f"{path} must be a number greater than {above}, not {value!r}")
    return float(value)
