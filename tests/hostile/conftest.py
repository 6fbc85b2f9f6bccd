"""The hostile suite's report for the benchmark: with ``$HOSTILE_REPORT`` set, each test appends one
JSON line with its outcome and the figures of every instrument it ran (tests/hostile/support.py)."""

from __future__ import annotations

import json
import os
import time

import pytest

from tests.hostile import support


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.hostile_outcome = report.outcome


@pytest.fixture(autouse=True)
def hostile_figures(request):
    support.INSTRUMENTS.clear()
    started = time.monotonic()
    yield
    path = os.environ.get("HOSTILE_REPORT")
    if not path:
        return
    record = {
        "test": request.node.nodeid,
        "outcome": getattr(request.node, "hostile_outcome", "error"),
        "seconds": round(time.monotonic() - started, 1),
        "instruments": [i.figures() for i in support.INSTRUMENTS if hasattr(i, "figures")],
    }
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
