"""Helpers shared by the tasklet tests: run a job natively or slice by slice."""

from __future__ import annotations

import itertools
import pathlib

from market import tasklet

JOBS = pathlib.Path(__file__).parent


def source(name: str) -> str:
    return (JOBS / (name + ".py")).read_text()


def native(src: str, entry: str, args, kwargs=None):
    """Plain CPython call of the unmodified module; ('error', type) if it raises."""
    ns = {"__name__": "native_job"}
    exec(compile(src, "<native>", "exec", dont_inherit=True), ns)  # not this file's __future__ imports
    try:
        head, *rest = entry.split(".")  # Class.method: a @staticmethod or @classmethod entry
        fn = ns[head]
        for part in rest:
            fn = getattr(fn, part)
        value = fn(*args, **(kwargs or {}))
        if hasattr(value, "__next__"):  # a generator job: drain it
            try:
                while True:
                    next(value)
            except StopIteration as stop:
                value = stop.value
    except Exception as exc:
        return ("error", type(exc).__name__)
    # compare through the codec's plain view, as the server would see it
    classes = {k: v for k, v in ns.items() if isinstance(v, type) and v.__module__ == "native_job"}
    return tasklet.decode_result(tasklet.codec.encode(value, classes))


def frozen(src: str, entry: str, args, kwargs=None, budgets=(1,), max_hops=100000):
    """Run to completion, passing the state through bytes between every slice.

    Returns (value-or-('error', type), hops).
    """
    env = tasklet.start(src, entry, args, kwargs or {})
    budgets = itertools.cycle(budgets)
    for hops in range(1, max_hops + 1):
        out = tasklet.run_slice(env, src, 60.0, budget=next(budgets))
        if out.finished:
            if out.error is not None:
                return ("error", out.error.split(":")[0]), hops
            return tasklet.decode_result(out.result), hops
        assert out.envelope is not None
        assert tasklet.read_header(out.envelope).seq == tasklet.read_header(env).seq + 1
        env = out.envelope
    raise AssertionError("job did not finish in %d hops" % max_hops)
