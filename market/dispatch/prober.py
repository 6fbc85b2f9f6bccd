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


#: the most bytes a test job's answer takes (an integer of up to ~500 bits); longer is wrong unread
MAX_ANSWER = 80
#: values a test job's answer may decode to (it is one integer)
MAX_ANSWER_VALUES = 16


def answer_is_right(result: bytes | None, size: int) -> bool:
    """Is ``result`` the test job's answer for ``size``? Decoded as data only, within a budget of
    bytes and values, in a helper process (``market.offload``): a worker's answer is a stranger's
    bytes, and a crafted one (a set of integers sharing one hash) takes seconds to decode."""
    from market import tasklet

    if result is None or len(result) > MAX_ANSWER:
        return False
    try:
        value = tasklet.decode_result(result, max_nodes=MAX_ANSWER_VALUES)
    except Exception:
        return False
    return type(value) is int and value == tasklet.probe_expected(size)


def verdict(right: bool, size: int, seconds: float) -> tuple[bool, float]:
    """(correct, speed) for a finished test job whose answer was right or not."""
    from market import tasklet

    if not right:
        return False, 0.0
    return True, tasklet.probe_operations(size) / max(seconds, 1e-6)
