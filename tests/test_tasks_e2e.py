"""pythia-style tasks through the real dispatcher and a real worker: submit, match, run, pay, cancel."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from market.jobs import taskbundle
from market.rpc.client import blocking
from market.store import Database, upgrade
from market.store import accounts as sql
from tests import marketdata as md
from tests.servers import Market, Worker, env, stop_all
from tests.support import need_program

TASKS = os.path.join(os.path.dirname(__file__), "tasks")
SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []
HELLO = {
    "environment": "busybox",
    "taskfs": "hello-world.sfs",
    "limits": {"time": 60, "memory": 32, "disk": 50, "output": 1024},
}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    need_program("bwrap")
    workdir = tmp_path_factory.mktemp("tasks")
    url = f"sqlite:{workdir}/market.sqlite"
    db = Database(url)
    upgrade(db)
    owner, token = md.account(db, "owner")
    host, _ = md.account(db, "host", grant=0)
    server = Market(
        url, str(workdir), "--window", "0.2", "--threshold", "1", "--test-job-size", "30", "--grace", "3"
    ).start()
    cid, ctoken = md.client(db, host, "tasker")
    # --slice bounds how long a task may run on this worker: 60 s, the hello-world task's own limit
    worker = Worker(server.url, cid, ctoken, str(workdir), "--slice", "60", *SANDBOX_USER).start()
    rpc = blocking(server.url, "account/owner", token)
    yield {
        "db": db,
        "rpc": rpc,
        "owner": owner,
        "host": host,
        "server": server,
        "token": token,
        "workdir": str(workdir),
    }
    stop_all([worker, server])
    db.close()


def submit(m, folder, limits=None, input_data=None, price="0.50"):
    spec = dict(HELLO, limits=dict(HELLO["limits"], **(limits or {})))
    bundle = taskbundle.pack(spec, taskbundle.archive_taskfs(os.path.join(TASKS, folder)), input_data)
    import xmlrpc.client

    return m["rpc"].task(m["owner"], xmlrpc.client.Binary(bundle), price, folder)


def outcome(m, job_id, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = m["rpc"].status(job_id)
        if status["status"] in ("finished", "cancelled"):
            row = m["rpc"].outcome(job_id)
            return row["outcome"], (row["result"].data if row["result"] is not None else b"").decode()
        time.sleep(0.1)
    raise AssertionError(f"task {job_id} did not end in {timeout} s")


def test_hello_world_as_in_the_pythia_document(market):
    assert outcome(market, submit(market, "hello-world")) == ("success", "Hello world!\n")


def test_input_lines_are_fed_on_stdin(market):
    assert outcome(market, submit(market, "greet", input_data=b"Alice\nBob\n")) == (
        "success",
        "Hello Alice!\nHello Bob!\n",
    )


def test_output_limit_exactly_and_one_under(market):
    assert outcome(market, submit(market, "abcde", {"output": 5})) == ("success", "abcde")
    assert outcome(market, submit(market, "abcde", {"output": 4})) == ("overflow", "abcd")


def test_an_endless_writer_overflows_quickly(market):
    started = time.time()
    status, out = outcome(market, submit(market, "endless", {"output": 100}))
    assert status == "overflow" and len(out) == 100 and time.time() - started < 10


def test_a_sleeper_times_out_with_what_it_printed(market):
    assert outcome(market, submit(market, "sleeper", {"time": 2})) == ("timeout", "Start\n")


def test_cancelling_a_running_task_aborts_it_within_two_seconds(market):
    job_id = submit(market, "sleeper", {"time": 60})
    deadline = time.time() + 30
    while market["rpc"].status(job_id)["status"] != "running" and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    cancelled_at = time.time()
    market["rpc"].cancel(job_id)
    assert outcome(market, job_id)[0] == "abort"
    # the worker really stops it: the lease is answered (rejected: the job was cancelled) within 2 s
    db = market["db"]
    deadline = time.time() + 5
    while time.time() < deadline:
        d = db.transact(
            lambda tx: tx.one(
                "SELECT status, checked_in_at FROM leases WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,)
            )
        )
        if d["checked_in_at"]:
            break
        time.sleep(0.05)
    assert d["checked_in_at"] - cancelled_at < 2.0


def test_tasks_are_paid_for_the_time_they_ran(market):
    before = market["db"].transact(sql.balance, market["host"])
    outcome(market, submit(market, "hello-world", price="1.00"))
    assert market["db"].transact(sql.balance, market["host"]) > before
    assert market["db"].transact(sql.audit)["balanced"]


def test_an_unknown_environment_is_refused_at_submission(market):
    import xmlrpc.client

    spec = dict(HELLO, environment="windows95")
    bundle = taskbundle.pack(spec, taskbundle.archive_taskfs(os.path.join(TASKS, "hello-world")))
    with pytest.raises(xmlrpc.client.Fault) as e:
        market["rpc"].task(market["owner"], xmlrpc.client.Binary(bundle), "0.10", "bad")
    assert e.value.faultCode == 1 and "unknown environment 'windows95'" in e.value.faultString


def test_market_submit_task_cli(market):
    r = subprocess.run(
        [
            "python",
            "-m",
            "market",
            "submit-task",
            os.path.join(TASKS, "hello-world.task"),
            "--taskfs",
            os.path.join(TASKS, "hello-world"),
            "--name",
            "hello",
            "--price",
            "0.10",
            "--server",
            market["server"].url,
            "--account",
            "owner",
            "--token",
            market["token"],
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    job_id = int(r.stdout)
    assert outcome(market, job_id) == ("success", "Hello world!\n")
    r = subprocess.run(
        [
            "python",
            "-m",
            "market",
            "result",
            str(job_id),
            "--server",
            market["server"].url,
            "--account",
            "owner",
            "--token",
            market["token"],
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.stdout == "Hello world!\n" and "success" in r.stderr


def test_a_fork_bomb_is_contained_and_the_task_still_ends_normally(market):
    started = time.time()
    assert outcome(market, submit(market, "forkbomb", {"time": 30})) == ("success", "Start\nDone\n")
    assert time.time() - started < 20  # long before its 30 s limit
    # and the worker keeps serving
    assert outcome(market, submit(market, "hello-world")) == ("success", "Hello world!\n")


def test_a_disk_flood_is_contained_and_the_task_still_ends_normally(market):
    started = time.time()
    assert outcome(market, submit(market, "flood", {"time": 30})) == ("success", "Start\nDone\n")
    assert time.time() - started < 20
