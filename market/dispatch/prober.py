"""Speed measurement with test jobs (the paper's spec 1e): pure rules, no I/O.

A client whose last measured speed is missing or older than the probe interval gets a test job:
cubic nested loops whose answer the server knows. Speed = operations / server-measured seconds.
"""

from __future__ import annotations

import functools
from typing import Any


def needs_probe(last: dict[str, Any] | None, now: float, interval: float) -> bool:
    return last is None or now - float(last["measured_at"]) >= interval


@functools.lru_cache(maxsize=4)
def make_test_job(size: int):
    """(source, entry, initial envelope) of a test job of ``size`` (size**3 operations).

    The same for every test job of a size, so built once: a client asking for one is answered
    without compiling anything on the reactor thread."""
    from market import tasklet

    envelope = tasklet.start(tasklet.PROBE_SOURCE, "probe", tasklet.probe_arguments(size), {})
    return tasklet.PROBE_SOURCE, "probe", envelope


def verdict(result: bytes | None, size: int, seconds: float):
    """(correct, speed) for a finished test job. The result is decoded as data only."""
    from market import tasklet

    try:
        value = tasklet.decode_result(result) if result is not None else None
    except Exception:
        return False, 0.0
    if value != tasklet.probe_expected(size):
        return False, 0.0
    return True, tasklet.probe_operations(size) / max(seconds, 1e-6)
