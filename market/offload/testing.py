"""An in-process stand-in for :class:`~market.offload.pool.HelperPool`, for tests of code that calls
a pool where starting processes is not what is tested (the pool's own tests start real helpers).

It runs the registered function at once, in this process, with no time or memory limit, and
answers the same way: a Deferred of the value, or of the function's market error.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.internet import defer

from market.core.errors import InternalError
from market.offload.registry import FUNCTIONS, split
from market.settings import OffloadSettings


class InlinePool:
    """``call(name, *args)`` like a pool, run inline; ``calls`` lists the names called, in order."""

    def __init__(self, settings: OffloadSettings | None = None, functions: frozenset[str] | set[str] = FUNCTIONS):
        self.settings = settings or OffloadSettings()
        self.functions = frozenset(functions)
        self.calls: list[str] = []

    def call(self, name: str, *args: Any, owner: object = None, seconds: float | None = None) -> defer.Deferred:
        if name not in self.functions:
            return defer.fail(InternalError(f"{name} is not a function helpers may run (market.offload.registry)"))
        self.calls.append(name)
        module, function = split(name)
        return defer.maybeDeferred(getattr(importlib.import_module(module), function), *args)
