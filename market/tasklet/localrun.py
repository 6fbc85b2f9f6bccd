"""``market run-local MODULE.py FUNCTION [ARGS...] --slice SECONDS``.

Runs a job to completion the way the market would, but on this machine: every
slice runs in a FRESH process (``python -m market.tasklet.slicemain``), so the
state really goes through bytes between slices.  Prints the result and the
number of hops (slices).  Exit status: 0 done, 1 the job raised, 2 refused.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from . import decode_result, start
from .envelope import EnvelopeError
from .slicemain import decode_response, encode_request
from .validator import JobRefused

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import List, Optional

__all__ = ["main", "parse_argument"]

# the directory holding the top-level package, for the child's sys.path
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_MODULE = (__package__ or "market.tasklet") + ".slicemain"


def parse_argument(text: str):
    """A JSON literal if it parses as one, otherwise the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _child_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONHASHSEED", "0")  # same set/dict-of-str order in every hop
    return env


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point for ``market run-local``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="market run-local",
        description="Run a job locally, freezing and thawing it in a fresh process every slice.",
    )
    parser.add_argument("module", help="the job module (a .py file)")
    parser.add_argument("function", help="the job function in it")
    parser.add_argument("args", nargs="*", help="arguments: JSON literals, else strings")
    parser.add_argument("--slice", type=float, default=1.0, dest="seconds", help="slice length in seconds (default 1)")
    parser.add_argument("--budget", type=int, default=None, help="also stop every N back-edges (for testing)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the slices (default: this one)")
    opts = parser.parse_args(argv)
    try:
        with open(opts.module, encoding="utf-8") as f:
            source = f.read()
    except OSError as exc:
        print("cannot read %s: %s" % (opts.module, exc.strerror), file=sys.stderr)
        return 2
    try:
        envelope = start(source, opts.function, [parse_argument(a) for a in opts.args], {})
    except JobRefused as exc:
        print("%s: %s" % (opts.module, exc), file=sys.stderr)
        return 2
    hops = 0
    env = _child_env()
    while True:
        hops += 1
        proc = subprocess.run(
            [opts.python, "-m", _MODULE],
            input=encode_request(envelope, source, opts.seconds, opts.budget),
            stdout=subprocess.PIPE,
            env=env,
        )
        try:
            outcome = decode_response(proc.stdout)
        except EnvelopeError as exc:
            print("slice %d rejected: %s" % (hops, exc), file=sys.stderr)
            return 2
        except Exception:
            print("slice %d: the slice process failed (exit status %d)" % (hops, proc.returncode), file=sys.stderr)
            return 1
        if outcome.finished:
            break
        if outcome.envelope is None:  # never: an unfinished slice carries the frozen state
            print("slice %d returned no state" % hops, file=sys.stderr)
            return 1
        envelope = outcome.envelope
    if outcome.error is not None or outcome.result is None:  # no result: never without an error
        print("job failed after %d hop%s: %s" % (hops, "" if hops == 1 else "s", outcome.error or "no result"))
        return 1
    print("result: %r" % (decode_result(outcome.result),))
    print("hops: %d" % hops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
