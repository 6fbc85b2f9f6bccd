"""Random quantities a scenario describes: client speeds, job prices and lengths, sessions.

A scenario writes a distribution as a bare number (a constant) or as a table::

    speed = { dist = "lognormal", median = 1e6, sigma = 0.5 }
    price = { dist = "choice", values = [1, 10, 100], weights = [6, 3, 1] }

Every draw takes the caller's ``random.Random``: the simulator keeps one stream per kind of
quantity, so adding clients does not change the jobs a seed produces.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Distribution", "parse_distribution", "ScenarioError"]


class ScenarioError(ValueError):
    """A scenario file says something the simulator cannot run; the message says what."""


@dataclass(frozen=True)
class Distribution:
    """A named distribution with its parameters; ``draw(rng)`` samples it."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    _p: dict = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        # draws happen once per simulated job and session: keep the lookup table ready
        object.__setattr__(self, "_p", dict(self.params))

    def param(self, name: str) -> Any:
        """One parameter's value."""
        return self._p[name]

    def draw(self, rng: random.Random) -> float:
        """One sample, drawn with ``rng``."""
        p = self._p
        if self.kind == "constant":
            return float(p["value"])
        if self.kind == "uniform":
            return rng.uniform(p["low"], p["high"])
        if self.kind == "loguniform":
            return math.exp(rng.uniform(math.log(p["low"]), math.log(p["high"])))
        if self.kind == "exponential":
            return rng.expovariate(1.0 / p["mean"])
        if self.kind == "lognormal":
            return rng.lognormvariate(math.log(p["median"]), p["sigma"])
        if self.kind == "pareto":
            return p["minimum"] * rng.paretovariate(p["alpha"])
        if self.kind == "choice":
            return float(rng.choices(p["values"], weights=p.get("weights"))[0])
        raise AssertionError(self.kind)  # parse_distribution admits no other kind

    def mean(self) -> float:
        """The distribution's mean (used for sizing and the docs, never for draws)."""
        p = dict(self.params)
        if self.kind == "constant":
            return float(p["value"])
        if self.kind == "uniform":
            return (p["low"] + p["high"]) / 2
        if self.kind == "loguniform":
            return (p["high"] - p["low"]) / (math.log(p["high"]) - math.log(p["low"]))
        if self.kind == "exponential":
            return float(p["mean"])
        if self.kind == "lognormal":
            return p["median"] * math.exp(p["sigma"] ** 2 / 2)
        if self.kind == "pareto":
            a = p["alpha"]
            return math.inf if a <= 1 else p["minimum"] * a / (a - 1)
        if self.kind == "choice":
            weights = p.get("weights") or [1] * len(p["values"])
            return sum(v * w for v, w in zip(p["values"], weights)) / sum(weights)
        raise AssertionError(self.kind)


_REQUIRED = {
    "constant": ("value",),
    "uniform": ("low", "high"),
    "loguniform": ("low", "high"),
    "exponential": ("mean",),
    "lognormal": ("median", "sigma"),
    "pareto": ("minimum", "alpha"),
    "choice": ("values",),
}
_OPTIONAL = {"choice": ("weights",)}


def parse_distribution(where: str, spec: int | float | Mapping[str, Any]) -> Distribution:
    """Read a distribution from a scenario value; ``where`` names it in error messages."""
    if isinstance(spec, bool):
        raise ScenarioError(f"{where}: expected a number or a distribution table, not {spec!r}")
    if isinstance(spec, (int, float)):
        return Distribution("constant", (("value", spec),))
    if not isinstance(spec, Mapping) or "dist" not in spec:
        raise ScenarioError(f'{where}: expected a number or a table like {{ dist = "exponential", mean = 60 }}')
    kind = spec["dist"]
    if kind not in _REQUIRED:
        raise ScenarioError(f"{where}: unknown dist {kind!r}; known: {', '.join(sorted(_REQUIRED))}")
    allowed = set(_REQUIRED[kind]) | set(_OPTIONAL.get(kind, ()))
    given = set(spec) - {"dist"}
    missing = [name for name in _REQUIRED[kind] if name not in spec]
    if missing:
        raise ScenarioError(f"{where}: dist {kind!r} needs {', '.join(missing)}")
    if given - allowed:
        raise ScenarioError(f"{where}: dist {kind!r} takes no {', '.join(sorted(given - allowed))}")
    params = tuple((name, _freeze(spec[name])) for name in sorted(given))
    distribution = Distribution(kind, params)
    _check(where, distribution)
    return distribution


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _check(where: str, d: Distribution) -> None:
    p = dict(d.params)
    positive = {"mean", "median", "minimum", "alpha"} & set(p)
    for name in positive:
        if not p[name] > 0:
            raise ScenarioError(f"{where}: {name} must be greater than 0")
    if "sigma" in p and p["sigma"] < 0:
        raise ScenarioError(f"{where}: sigma must not be negative")
    if d.kind in ("uniform", "loguniform") and not p["low"] <= p["high"]:
        raise ScenarioError(f"{where}: low must not exceed high")
    if d.kind == "loguniform" and not p["low"] > 0:
        raise ScenarioError(f"{where}: loguniform needs low > 0")
    if d.kind == "choice":
        if not p["values"]:
            raise ScenarioError(f"{where}: choice needs at least one value")
        if "weights" in p and len(p["weights"]) != len(p["values"]):
            raise ScenarioError(f"{where}: choice needs as many weights as values")
