"""``twistd worker``: options and the service."""

from __future__ import annotations

import os

from twisted.python import usage

from market.rpc.client import DEFAULT_SERVER


class Options(usage.Options):
    synopsis = "--client ID --token TOKEN [options]"
    optFlags = [
        ["idle-only", None, "ask for work only while this machine is idle"],
        ["insecure-no-sandbox", None, "run jobs WITHOUT isolation when no sandbox is available (trusted jobs only)"],
        [
            "no-verify",
            None,
            "do not offer to verify other workers' slices by replay (on by default: verification leases are"
            " paid like any other and cost the worker's owner nothing)",
        ],
        ["once", None, "stop after the first job's result (one the market answered without a speed: not a probe)"],
    ]
    optParameters = [
        ["client", None, None, "this client's id (from: market client register)"],
        ["token", None, None, "this client's token (or $MARKET_CLIENT_TOKEN)"],
        ["token-file", None, None, "read the token from this file"],
        ["slice", None, 60.0, "slice length to propose, seconds; also the longest a task may run here", float],
        ["cpu", None, 100, "CPU share for jobs, percent of one core (1-100)", int],
        ["sandbox", None, "auto", "auto | full | degraded"],
        ["user", None, None, "unprivileged user that runs jobs (required when started as root)"],
        ["memory", None, 512, "the most memory one slice or task may use, all its processes together, MB", int],
        ["disk", None, 256, "the most disk one task may use: its /tmp and its unpacked task filesystem, MB", int],
        ["output", None, 48, "the most one slice or task may send back (a job's state, a task's output), MB", int],
        [
            "python",
            None,
            "/usr/bin/python3",
            "interpreter that runs jobs inside the sandbox: CPython >= 3.9 or PyPy >= 3.9",
        ],
    ]

    def __init__(self):
        super().__init__()
        self["servers"] = []

    def opt_server(self, url: str) -> None:
        self["servers"].append(url)

    # usage.Options prints a handler's docstring as its help: one paragraph, no indentation
    opt_server.__doc__ = (
        "the market's XML-RPC URL (http://HOST:7080/RPC2, or HOST:7080); repeat it, or give a"
        " comma-separated list, for several front ends of one market: the worker moves to another at"
        " once when one cannot be reached [default: $MARKET_SERVER or http://127.0.0.1:7080/RPC2]"
    )

    def postOptions(self):
        if self["client"] is None:
            raise usage.UsageError("--client ID is required (register one with: market client register ACCOUNT)")
        try:
            self["client"] = int(self["client"])
        except ValueError:
            raise usage.UsageError("--client must be a number") from None
        token = self["token"] or os.environ.get("MARKET_CLIENT_TOKEN")
        if self["token-file"]:
            try:
                with open(self["token-file"]) as f:
                    token = f.read().strip()
            except OSError as e:
                raise usage.UsageError(f"cannot read --token-file: {e.strerror}") from None
        if not token:
            raise usage.UsageError("--token TOKEN is required (it was printed once by: market client register)")
        self["token"] = token
        if self["sandbox"] not in ("auto", "full", "degraded"):
            raise usage.UsageError("--sandbox must be auto, full or degraded")
        if not 1 <= self["cpu"] <= 100:
            raise usage.UsageError("--cpu must be between 1 and 100")
        if self["slice"] <= 0:
            raise usage.UsageError("--slice must be more than 0")
        from market.sandbox.limits import Caps, LimitsError

        try:
            self.caps = Caps(
                memory_mb=self["memory"],
                seconds=self["slice"],
                disk_mb=self["disk"],
                output_bytes=self["output"] << 20,
            )
        except LimitsError as e:
            option = {"memory_mb": "--memory", "disk_mb": "--disk", "output_bytes": "--output"}
            name = next((o for f, o in option.items() if str(e).startswith(f)), "--slice")
            raise usage.UsageError(f"{name}: {e}") from None
        from market.core.errors import MarketError
        from market.rpc.client import server_urls
        from market.worker.interpreter import UnsupportedInterpreter, check

        try:
            self["servers"] = server_urls(self["servers"] or [os.environ.get("MARKET_SERVER") or DEFAULT_SERVER])
        except MarketError as e:
            raise usage.UsageError(f"--server: {e}") from None
        self["server"] = self["servers"][0]
        try:
            self.interpreter = check(self["python"])
        except UnsupportedInterpreter as e:
            raise usage.UsageError(str(e)) from None


def makeService(options):
    from twisted.logger import Logger

    from market.worker.service import WorkerService

    Logger().info("jobs run on {what} ({path})", what=options.interpreter.describe(), path=options["python"])
    return WorkerService(
        server=options["servers"],
        client_id=options["client"],
        token=options["token"],
        slice_seconds=options["slice"],
        cpu_percent=options["cpu"],
        idle_only=bool(options["idle-only"]),
        sandbox_mode=options["sandbox"],
        insecure=bool(options["insecure-no-sandbox"]),
        user=options["user"],
        memory_mb=options["memory"],
        disk_mb=options["disk"],
        output_mb=options["output"],
        python=options["python"],
        once=bool(options["once"]),
        verify=not options["no-verify"],
        interpreter=options.interpreter.header_name(),
    )
