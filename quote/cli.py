"""``quote REPORT.xml SPEED``: the minimum price that gets a job run at SPEED or faster.

Prints the price in credits per second (``5.21``), or ``NotPossible`` when no active,
non-suspect client is that fast. ``REPORT.xml`` may be ``-`` for standard input. Exit codes:
0 answered (including NotPossible), 2 bad input (missing or malformed report, bad SPEED), with
one line on standard error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from quote import reader, rule

EXIT_USAGE = 2


class _Usage(Exception):
    pass


class _ArgumentParser(argparse.ArgumentParser):
    # argparse prints a multi-line usage block; the contract is one line on stderr
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _Usage(message)


def _parser() -> argparse.ArgumentParser:
    p = _ArgumentParser(
        prog="quote",
        description="Minimum price (credits per second) for a job to run on a client of at least SPEED, "
        "from a market report. See docs/quote.md.",
    )
    p.add_argument("report", metavar="REPORT.xml", help="the market's XML report ('-' for standard input)")
    p.add_argument("speed", metavar="SPEED", help="desired speed in probe operations per second (> 0)")
    p.add_argument(
        "--no-validate",
        dest="validate",
        action="store_false",
        help="skip the XSD check (trusted reports only; a malformed one may give a wrong answer)",
    )
    p.add_argument("--json", action="store_true", help="print n, the price and the counts as JSON")
    return p


def parse_speed(text: str) -> float:
    """SPEED must be a positive, finite number."""
    try:
        value = float(text)
    except ValueError:
        raise _Usage(f"SPEED must be a positive number of operations per second, not {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise _Usage(f"SPEED must be a positive number of operations per second, not {text!r}")
    return value


def _as_json(q: rule.Quote, view: reader.MarketView) -> str:
    return json.dumps(
        {
            "speed": q.speed,
            "possible": q.possible,
            "n": q.n,
            "price": None if q.price_cents is None else rule.format_cents(q.price_cents),
            "nth_price": None if q.nth_price_cents is None else rule.format_cents(q.nth_price_cents),
            "competing_jobs": q.competing,
            "jobs": view.jobs,
            "clients": view.clients,
            "eligible_clients": len(view.speeds),
            "dispatches": view.dispatches,
            "generated_at": view.generated_at,
        },
        sort_keys=True,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit code."""
    try:
        args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
        speed = parse_speed(args.speed)
        source = sys.stdin.buffer if args.report == "-" else args.report
        view = reader.read(source, validate=args.validate)
    except _Usage as e:
        print(f"quote: {e}", file=sys.stderr)
        return EXIT_USAGE
    except reader.ReportError as e:
        print(f"quote: {args.report}: {e}", file=sys.stderr)
        return EXIT_USAGE
    q = rule.quote(view.speeds, view.price_counts, speed)
    if args.json:
        print(_as_json(q, view))
    elif q.price_cents is not None:  # q.possible
        print(rule.format_cents(q.price_cents))
    else:
        print("NotPossible")
    return 0
