"""``market demo`` (``make demo`` from a clone): the main job on embedded SQLite, from nothing.

Creates a fresh market in ``./demo`` (or ``--dir``): accounts alice (submits) and bob (owns a machine), starts a
real ``twistd -n market`` and a real ``twistd -n worker`` (sandboxed; as root it runs jobs as
``nobody``), submits the sample job ``market/examples/primes.py`` with 1-second slices, waits
for it, prints the result, the slices it took and what alice paid bob, then stops both.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from market import accounts, tasklet
from market.core import money
from market.jobs import submission
from market.ports import free_port, listening
from market.rpc.client import blocking
from market.store import accounts as sql
from market.store import open_database

DEMO_DIR = "demo"
LIMIT = 1_000_000
TWISTD = [sys.executable, "-c", "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"]


def wait_for(port: int, proc: subprocess.Popen, log: str) -> None:
    for _ in range(300):
        if proc.poll() is not None:
            raise SystemExit(f"demo: the server stopped; see {log}")
        if listening(port, timeout=0.2):
            return
        time.sleep(0.1)
    raise SystemExit(f"demo: the server did not start; see {log}")


def struct(answer: object) -> dict[str, Any]:
    """An XML-RPC struct answer (``status``, ``outcome``), which ``xmlrpc.client`` types as any value."""
    if not isinstance(answer, dict):
        raise SystemExit(f"demo: the server answered {answer!r} where a struct was expected")
    return answer


def sieve_count(limit: int) -> int:
    """The same answer by another method, to check the market's."""
    marks = bytearray([1]) * limit
    marks[:2] = b"\x00\x00"
    for i in range(2, int(limit**0.5) + 1):
        if marks[i]:
            marks[i * i :: i] = bytearray(len(range(i * i, limit, i)))
    return sum(marks)


def main(directory: str = DEMO_DIR) -> int:
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    workdir = os.path.abspath(directory)
    url = f"sqlite:{workdir}/market.sqlite"
    db = open_database(url)
    alice = accounts.create_account(db, "alice", "alice@example.org", "demo-password", confirm=False)
    bob = accounts.create_account(db, "bob", "bob@example.org", "demo-password", confirm=False)
    token = accounts.issue_api_token(db, alice.id)
    client = accounts.register_client(db, bob.id, "bobs-laptop")
    port = free_port()
    rpc_url = f"http://127.0.0.1:{port}/RPC2"
    print(f"market: {url}; accounts alice and bob (100.00 credits each); bob's client {client.id}")

    # the twistd children import this very market package, installed or run from a clone
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p))
    server_log, worker_log = f"{workdir}/market.log", f"{workdir}/worker.log"
    server = subprocess.Popen(
        [
            *TWISTD,
            "-n",
            "--pidfile=",
            f"--logfile={server_log}",
            "market",
            "--db",
            url,
            "--rpc",
            f"tcp:{port}:interface=127.0.0.1",
            "--window",
            "0.5",
            "--threshold",
            "1",
            "--test-job-size",
            "40",
        ],
        cwd=workdir,
        env=env,
    )
    worker = None
    try:
        wait_for(port, server, server_log)
        print(f"twistd market serving XML-RPC at {rpc_url} (log: {server_log})")
        worker_args = ["--server", rpc_url, "--client", str(client.id), "--slice", "1"]
        env["MARKET_CLIENT_TOKEN"] = client.token  # not in the arguments, which ps shows to everyone
        if os.geteuid() == 0:
            worker_args += ["--user", "nobody"]
        from market.sandbox import probe

        found = probe("nobody" if os.geteuid() == 0 else None)
        if found.level == "none":
            # the sample job is ours and trusted; a real worker refuses untrusted jobs without a sandbox
            print(
                f"WARNING: no sandbox on this machine ({found.describe()}); the demo's worker runs the"
                " sample job WITHOUT isolation (--insecure-no-sandbox). Install bubblewrap for the real thing."
            )
            worker_args += ["--insecure-no-sandbox"]
        worker = subprocess.Popen(
            [*TWISTD, "-n", "--pidfile=", f"--logfile={worker_log}", "worker", *worker_args], cwd=workdir, env=env
        )
        print(f"twistd worker started for client {client.id} (log: {worker_log})")

        from importlib import resources

        source = resources.files("market.examples").joinpath("primes.py").read_text(encoding="utf-8")
        rpc = blocking(rpc_url, "account/alice", token)
        # what market submit does: validate, compile and freeze once, then XML-RPC job + init
        job = submission.prepare(source, "count_primes", [LIMIT])
        job_id = submission.submit_over_rpc(rpc, alice.id, job, "count primes", money.parse_price("0.05"))
        print(f"submitted job {job_id}: count_primes({LIMIT}) at 0.05 credits/second, 1-second slices")
        deadline = time.time() + 240
        status = struct(rpc.status(job_id))
        while status["status"] != "finished" and time.time() < deadline:
            if worker.poll() is not None:
                print(f"demo: the worker stopped; see {worker_log}", file=sys.stderr)
                return 1
            time.sleep(0.5)
            new = struct(rpc.status(job_id))
            if new["slices"] != status["slices"]:
                print(f"  slice {new['slices']} checked in, progress {100 * (new['progress'] or 0):.0f}%")
            status = new
        if status["status"] != "finished":
            print("demo: the job did not finish in time", file=sys.stderr)
            return 1
        outcome = struct(rpc.outcome(job_id))
        result = tasklet.decode_result(outcome["result"].data)
        expected = sieve_count(LIMIT)
        print(
            f"result: {result} primes below {LIMIT} (correct: {result == expected}); "
            f"{status['slices']} slices, {status['executed_seconds']:.1f} s executed"
        )
        for row in db.transact(sql.list_accounts):
            print(f"  {row['name']:<6} balance {money.format_cents(row['balance'])}")
        audit = db.transact(sql.audit)
        print(f"ledger balanced: {audit['balanced']}")
        return 0 if result == expected and audit["balanced"] else 1
    finally:
        for proc in (worker, server):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()


if __name__ == "__main__":
    sys.exit(main())
