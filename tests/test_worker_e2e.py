"""Real ``twistd market`` + real ``twistd worker`` processes running real jobs in the real sandbox."""

from __future__ import annotations

import os
import signal
import time

import pytest

from market import tasklet
from market.jobs import submission
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market, Worker, stop_all
from tests.support import need_program

PRIMES = open(os.path.join(os.path.dirname(tasklet.__file__), "..", "examples", "primes.py")).read()
EXPECTED = {20_000: 2262, 50_000: 5133, 300_000: 25997, 600_000: 49098}
SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []


@pytest.fixture
def processes():
    running = []
    yield running
    stop_all(running)


def submit(db, account_id, limit, price, name=None):
    job = submission.prepare(PRIMES, "count_primes", [limit])
    return db.transact(submission.submit, account_id, job, name or f"primes {limit}", price, time.time())


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def result_of(db, job_id):
    row = db.transact(jsql.job_row, job_id)
    assert row["outcome"] == "finished", (row["outcome"], row["error"])
    return tasklet.decode_result(bytes(row["result"]))


def start_workers(server, db, host, processes, workdir, n, *options):
    workers = []
    for i in range(n):
        cid, token = md.client(db, host, f"worker{i}-{time.monotonic_ns() % 10**6}")
        w = Worker(server.url, cid, token, workdir, "--slice", "0.5", *SANDBOX_USER, *options).start()
        processes.append(w)
        workers.append((cid, w))
    return workers


def test_jobs_with_different_prices_all_finish_correctly_on_three_workers(db, db_url, tmp_path, processes):
    need_program("bwrap")
    server = Market(
        db_url, str(tmp_path), "--window", "0.3", "--threshold", "3", "--test-job-size", "30", "--grace", "5"
    ).start()
    processes.append(server)
    owner, _ = md.account(db, "owner")
    host, _ = md.account(db, "host", grant=0)
    jobs = {
        submit(db, owner, limit, price): limit
        for limit, price in [(20_000, 5), (50_000, 30), (300_000, 10), (600_000, 20)]
    }
    workers = start_workers(server, db, host, processes, str(tmp_path), 3)
    wait_until(lambda: all(db.transact(jsql.job_row, j)["status"] == "finished" for j in jobs), 120, "all jobs")
    for job_id, limit in jobs.items():
        assert result_of(db, job_id) == EXPECTED[limit]
    audit = db.transact(sql.audit)
    assert audit["balanced"] and db.transact(sql.balance, host) > 0
    assert all(w.proc.poll() is None for _, w in workers)  # the workers keep serving


def sqlite_market(tmp_path, processes, *options):
    """(db, server, owner, host) on a fresh SQLite market with a one-request pooling window."""
    need_program("bwrap")
    from market.store import Database, upgrade

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    server = Market(
        url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--test-job-size", "30", *options
    ).start()
    processes.append(server)
    owner, _ = md.account(db, "owner")
    host, _ = md.account(db, "host", grant=0)
    return db, server, owner, host


def test_kill_9_of_a_worker_mid_slice_rolls_the_job_back_and_another_worker_finishes_it(tmp_path, processes):
    db, server, owner, host = sqlite_market(tmp_path, processes, "--grace", "1", "--min-slice", "0.5")
    job_id = submit(db, owner, 600_000, 10)
    ((first, doomed),) = start_workers(server, db, host, processes, str(tmp_path), 1, "--slice", "2")
    wait_until(
        lambda: db.transact(
            lambda tx: tx.one(
                "SELECT id FROM leases WHERE job_id = ? AND client_id = ? AND status = 'out'", (job_id, first)
            )
        ),
        60,
        "the job to be leased to the first worker",
    )
    doomed.signal(signal.SIGKILL)
    doomed.wait(10)
    start_workers(server, db, host, processes, str(tmp_path), 1)
    wait_until(lambda: db.transact(jsql.job_row, job_id)["status"] == "finished", 120, "the job to finish")
    assert result_of(db, job_id) == EXPECTED[600_000]
    statuses = db.transact(
        lambda tx: [
            r["status"] for r in tx.all("SELECT status FROM leases WHERE job_id = ? AND client_id = ?", (job_id, first))
        ]
    )
    assert statuses[-1] in ("expired", "rejected")
    assert db.transact(sql.audit)["balanced"]


def test_sigterm_freezes_the_running_job_and_checks_its_progress_in(tmp_path, processes):
    db, server, owner, host = sqlite_market(tmp_path, processes, "--grace", "5")
    job_id = submit(db, owner, 10_000_000, 10)  # far longer than one 30 s slice
    ((cid, worker),) = start_workers(server, db, host, processes, str(tmp_path), 1, "--slice", "30")
    wait_until(
        lambda: db.transact(lambda tx: tx.one("SELECT id FROM leases WHERE job_id = ? AND status = 'out'", (job_id,))),
        60,
        "the lease",
    )
    time.sleep(1.5)  # let it compute
    stopped = time.time()
    worker.signal(signal.SIGTERM)
    # twistd shuts down cleanly, then re-raises SIGTERM on itself so the exit status says why
    assert worker.wait(20) in (0, -signal.SIGTERM)
    assert "stopping: freezing job" in worker.logtext()
    last = db.transact(
        lambda tx: tx.one(
            "SELECT status, checked_in_at, accepted_ms FROM leases WHERE job_id = ? ORDER BY id DESC LIMIT 1",
            (job_id,),
        )
    )
    assert last["status"] == "accepted", last
    assert last["checked_in_at"] - stopped < 5 and last["accepted_ms"] >= 1000
    state = db.transact(jsql.committed_state, job_id)
    assert state["seq"] == 1
    assert db.transact(jsql.job_row, job_id)["progress"] > 0


@pytest.mark.parametrize("python", ["/usr/bin/python3", "/usr/bin/pypy3"])
def test_a_worker_runs_jobs_on_each_supported_job_interpreter(tmp_path, processes, python):
    """Jobs run inside the sandbox on the worker's --python: Debian's CPython and PyPy 3.9."""
    need_program(os.path.basename(python))
    db, server, owner, host = sqlite_market(tmp_path, processes, "--grace", "5")
    job_id = submit(db, owner, 50_000, 10)
    ((_, worker),) = start_workers(server, db, host, processes, str(tmp_path), 1, "--python", python)
    wait_until(lambda: db.transact(jsql.job_row, job_id)["status"] == "finished", 120, "the job to finish")
    assert result_of(db, job_id) == EXPECTED[50_000]
    assert f"jobs run on {'PyPy 3.9' if 'pypy' in python else 'CPython 3.'}" in worker.logtext()


def test_a_worker_refuses_a_job_interpreter_older_than_the_runtime_supports(tmp_path):
    import subprocess

    from tests.servers import TWISTD, env

    fake = tmp_path / "python2.7"
    fake.write_text("#!/bin/sh\necho cpython 2 7\n")
    fake.chmod(0o755)
    out = subprocess.run(
        [*TWISTD, "-n", "worker", "--server", "127.0.0.1:9", "--client", "1", "--token", "x", "--python", str(fake)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert out.returncode != 0
    assert "is CPython 2.7; jobs need CPython or PyPy 3.9 or newer" in out.stdout + out.stderr


def test_cancel_stops_the_running_slice_at_its_next_freeze(tmp_path, processes):
    """Issue 19: the worker asks ``alive`` while a slice runs; a cancelled job's slice freezes at
    once instead of running to the end of its 30 s, and its state is refused."""
    db, server, owner, host = sqlite_market(tmp_path, processes, "--grace", "5")
    job_id = submit(db, owner, 10_000_000, 10)  # far longer than one 30 s slice
    start_workers(server, db, host, processes, str(tmp_path), 1, "--slice", "30")
    wait_until(
        lambda: db.transact(lambda tx: tx.one("SELECT id FROM leases WHERE job_id = ? AND status = 'out'", (job_id,))),
        60,
        "the lease",
    )
    time.sleep(1.0)  # let it compute
    cancelled = time.time()
    db.transact(jsql.cancel_job, owner, job_id, cancelled)  # what XML-RPC cancel and the web's button do
    lease = wait_until(
        lambda: db.transact(
            lambda tx: tx.one(
                "SELECT status, checked_in_at FROM leases WHERE job_id = ? AND status <> 'out'"
                " ORDER BY id DESC LIMIT 1",
                (job_id,),
            )
        ),
        10,
        "the slice to stop (it was granted 30 s)",
    )
    assert lease["status"] == "rejected" and lease["checked_in_at"] - cancelled < 5, lease
    assert db.transact(jsql.job_row, job_id)["status"] == "cancelled"
    assert db.transact(sql.audit)["balanced"]
