"""Operator commands for the sandbox: ``python -m market.sandbox probe|run|task``.

    python -m market.sandbox probe [--user nobody]
    python -m market.sandbox run [--user nobody] [--wall 10] [--memory 256] ... -- CMD ARGS
    python -m market.sandbox task FILE.task [--user nobody] [--input FILE] [--envdir DIR]

Exit status: 0 for ok/success, 1 for any other outcome, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import os
import sys

from .limits import Limits, LimitsError


def _default_user() -> str | None:
    return "nobody" if os.geteuid() == 0 else None


def _probe(args: argparse.Namespace) -> int:
    from .probe import SandboxLevel, probe

    found = probe(args.user)
    print(found.describe())
    return 0 if found.level != SandboxLevel.NONE else 1


def _run(args: argparse.Namespace) -> int:
    from .runner import run_sync

    if not args.command:
        print("sandbox run: give the command after --", file=sys.stderr)
        return 2
    try:
        limits = Limits(
            wall_seconds=args.wall,
            cpu_seconds=args.cpu or args.wall,
            memory_mb=args.memory,
            output_bytes=args.output,
            disk_mb=args.disk,
            processes=args.processes,
            files=args.files,
        )
    except LimitsError as exc:
        print(f"sandbox run: {exc}", file=sys.stderr)
        return 2
    stdin = sys.stdin.buffer.read() if args.stdin else b""
    outcome = run_sync(args.command, stdin=stdin, limits=limits, user=args.user)
    sys.stdout.buffer.write(outcome.stdout)
    sys.stdout.flush()
    sys.stderr.buffer.write(outcome.stderr)
    print(
        f"[{outcome.status}] exit={outcome.exit_code} signal={outcome.signal} "
        f"wall={outcome.wall_seconds:.3f}s cpu={outcome.cpu_seconds}"
        + (f" — {outcome.message}" if outcome.message else ""),
        file=sys.stderr,
    )
    return 0 if outcome.status == "ok" else 1


def _task(args: argparse.Namespace) -> int:
    from twisted.internet import task as ttask

    from .task import TaskError, TaskOutcome, load_task, run_task

    try:
        task, taskfs = load_task(args.file)
    except TaskError as exc:
        print(f"[error] {exc}", file=sys.stderr)
        return 1
    data = open(args.input, "rb").read() if args.input else None
    result: dict[str, TaskOutcome] = {}

    def main(reactor):
        d = run_task(reactor, task, taskfs, input=data, user=args.user, envdir=args.envdir)
        return d.addCallback(lambda outcome: result.__setitem__("outcome", outcome))

    try:
        ttask.react(main)
    except SystemExit as exit_:  # react() always exits; we print first
        if exit_.code not in (0, None):
            raise
    outcome = result["outcome"]
    sys.stdout.write(outcome.output)
    print(
        f"[{outcome.status}] exit={outcome.exit_code} wall={outcome.wall_seconds:.3f}s"
        + (f" — {outcome.message}" if outcome.message else ""),
        file=sys.stderr,
    )
    return 0 if outcome.status == "success" else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m market.sandbox``."""
    parser = argparse.ArgumentParser(prog="python -m market.sandbox", description="Probe and use the job sandbox.")
    sub = parser.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("probe", help="show which sandbox layers work here")
    p.add_argument("--user", default=_default_user())
    p.set_defaults(func=_probe)
    r = sub.add_parser("run", help="run one command in the sandbox")
    r.add_argument("--user", default=_default_user())
    r.add_argument("--wall", type=float, default=10.0)
    r.add_argument("--cpu", type=float, default=None)
    r.add_argument("--memory", type=int, default=256, help="MB")
    r.add_argument("--output", type=int, default=1 << 20, help="bytes")
    r.add_argument("--disk", type=int, default=64, help="MB")
    r.add_argument("--processes", type=int, default=64)
    r.add_argument("--files", type=int, default=64)
    r.add_argument("--stdin", action="store_true", help="pass this command's stdin")
    r.add_argument("command", nargs=argparse.REMAINDER)
    r.set_defaults(func=_run)
    t = sub.add_parser("task", help="run a pythia-style .task file")
    t.add_argument("file")
    t.add_argument("--user", default=_default_user())
    t.add_argument("--input", help="file whose bytes are the task's stdin")
    t.add_argument("--envdir", help="extra environments directory")
    t.set_defaults(func=_task)
    args = parser.parse_args(argv)
    if getattr(args, "command", None) and args.command[0] == "--":
        args.command = args.command[1:]
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
