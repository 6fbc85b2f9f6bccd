"""Real processes for integration tests: ``twistd -n market`` and ``twistd -n worker``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from market.ports import free_port as free_port  # re-exported: the tests take ports from here
from market.ports import listening

# twistd itself, with this interpreter (``python -m twisted`` is ``twist``, which has other options),
# through the tests' launcher: cheap password hashes in the process, nowhere else (tests/launch.py)
TWISTD = [sys.executable, "-m", "tests.launch", "twistd"]
# the ``market`` command, the same way
MARKET = [sys.executable, "-m", "tests.launch", "market"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0, log: str | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = open(log).read()[-3000:] if log and os.path.exists(log) else ""
            raise RuntimeError(f"the server exited with {proc.returncode} before listening:\n{text}")
        if listening(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")


def terminate(proc: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = REPO + os.pathsep + e.get("PYTHONPATH", "")
    return e


class Market:
    """A running ``twistd -n market`` on 127.0.0.1 (restartable, killable)."""

    def __init__(self, db_url: str, workdir: str, *options: str):
        self.db_url = db_url
        self.workdir = workdir
        self.options = list(options)
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = os.path.join(workdir, f"market-{self.port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/RPC2"

    def start(self) -> Market:
        argv = [
            *TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={self.log}",
            "market",
            "--db",
            self.db_url,
            "--rpc",
            f"tcp:{self.port}:interface=127.0.0.1",
            *self.options,
        ]
        self.proc = subprocess.Popen(
            argv, cwd=self.workdir, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        wait_for_port(self.port, self.proc, log=self.log)
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        terminate(self.proc, 15)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logtext(self) -> str:
        return open(self.log).read() if os.path.exists(self.log) else ""


class Worker:
    """A running ``twistd -n worker``."""

    def __init__(self, server_url: str, client_id: int, token: str, workdir: str, *options: str):
        self.args = ["--server", server_url, "--client", str(client_id), "--token", token, *options]
        self.workdir = workdir
        self.log = os.path.join(workdir, f"worker-{client_id}-{time.monotonic_ns()}.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        argv = [*TWISTD, "-n", "--pidfile=", f"--logfile={self.log}", "worker", *self.args]
        self.proc = subprocess.Popen(
            argv, cwd=self.workdir, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        return self

    def signal(self, sig) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        terminate(self.proc, 20)

    def logtext(self) -> str:
        return open(self.log).read() if os.path.exists(self.log) else ""


def stop_all(processes: list) -> None:
    for p in processes:
        try:
            p.stop()
        except Exception:
            pass
