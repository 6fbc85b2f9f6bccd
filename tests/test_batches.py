"""Batches (parameter sweeps) through the real parts: ``market batch`` against a real ``twistd
market`` (and a real worker), XML-RPC ``batch``/``batch_add`` bounds, the store's chunks."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
import xmlrpc.client

import pytest

from market.jobs import batches
from market.store import batches as sql_batches
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import MARKET, Market, Worker, env, stop_all
from tests.support import need_program

SWEEP = """\
def sweep(n, k=1):
    total = 0
    for i in range(n):
        total += i * k
    return [n, k, total]
"""


def native(n, k=1):
    return [n, k, sum(i * k for i in range(n))]


SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []


@pytest.fixture
def processes():
    running: list = []
    yield running
    stop_all(running)


def member_market(tmp_path, processes, *options):
    """(db, server, owner id, run) on a fresh SQLite market: ``run(*args)`` runs ``market`` as ann."""
    from market.store import Database, upgrade

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    server = Market(url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--test-job-size", "30", *options)
    processes.append(server.start())
    owner, token = md.account(db, "ann")
    (tmp_path / "sweep.py").write_text(SWEEP)
    e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="ann", MARKET_TOKEN=token)

    def run(*args):
        return subprocess.run([*MARKET, *args], capture_output=True, text=True, env=e, timeout=120, cwd=tmp_path)

    return db, server, owner, run


def wait_until(predicate, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def batch_jobs(db, owner, batch_id):
    return db.transact(sql_batches.batch_jobs, owner, batch_id, 0, 1000)


def test_a_batch_of_five_runs_to_the_end_on_a_real_worker_and_its_results_equal_the_native_ones(tmp_path, processes):
    need_program("bwrap")
    db, server, owner, run = member_market(tmp_path, processes)
    sets = [[3000], [5000, 2], {"n": 7000, "k": 3}, 11, [9000]]
    (tmp_path / "sets.jsonl").write_text("\n".join(json.dumps(s) for s in sets) + "\n")
    r = run("batch", "submit", "sweep.py", "sweep", "sets.jsonl", "--name", "sweep", "--price", "50")
    assert r.returncode == 0, r.stderr
    batch_id = int(r.stdout.strip())
    jobs = batch_jobs(db, owner, batch_id)
    assert [j["batch_index"] for j in jobs] == [0, 1, 2, 3, 4] and {j["status"] for j in jobs} == {"ready"}
    host, _ = md.account(db, "host", grant=0)
    cid, token = md.client(db, host, "box")
    processes.append(Worker(server.url, cid, token, str(tmp_path), "--slice", "0.5", *SANDBOX_USER).start())
    wait_until(
        lambda: all(j["status"] == "finished" for j in batch_jobs(db, owner, batch_id)), 180, "the batch to finish"
    )
    expected = [native(3000), native(5000, 2), native(7000, 3), native(11), native(9000)]

    r = run("batch", "results", str(batch_id))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["index"] for x in lines] == [0, 1, 2, 3, 4]
    assert [x["result"] for x in lines] == expected
    assert {x["outcome"] for x in lines} == {"finished"} and {x["verification"] for x in lines} <= {
        "unverified",
        "verified",
    }
    assert [x["job"] for x in lines] == [j["id"] for j in jobs]

    r = run("batch", "results", str(batch_id), "--format", "csv", "--output", "out.csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO((tmp_path / "out.csv").read_text())))
    assert [json.loads(row["result"]) for row in rows] == expected
    assert [int(row["index"]) for row in rows] == [0, 1, 2, 3, 4]

    r = run("batch", "status", str(batch_id))
    assert r.returncode == 0, r.stderr
    assert "100.0 %" in r.stdout and "finished 5" in r.stdout and "cost so far" in r.stdout
    summary = db.transact(sql_batches.summary, owner, batch_id)
    assert summary["paid"] > 0 and summary["counts"] == {"finished": 5}


def test_price_and_cancel_act_on_every_job_of_the_batch_and_on_no_other(tmp_path, processes):
    db, server, owner, run = member_market(tmp_path, processes)
    (tmp_path / "sets.csv").write_text('n,k\n10,1\n20,2\n30,"3"\n')
    r = run("batch", "submit", "sweep.py", "sweep", "sets.csv", "--name", "csv sweep", "--price", "0.05")
    assert r.returncode == 0, r.stderr
    batch_id = int(r.stdout.strip())
    lone = md.job(db, owner, 5)
    # a held job of the batch goes back on the ready list with its new price
    first = batch_jobs(db, owner, batch_id)[0]["id"]
    db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'held' WHERE id = ?", (first,)))

    r = run("batch", "price", str(batch_id), "0.25")
    assert r.returncode == 0 and "3 jobs now pay 0.25" in r.stdout, r.stderr
    jobs = batch_jobs(db, owner, batch_id)
    assert [j["price"] for j in jobs] == [25, 25, 25] and {j["status"] for j in jobs} == {"ready"}
    assert db.transact(jsql.job_row, lone)["price"] == 5

    r = run("batch", "cancel", str(batch_id))
    assert r.returncode == 0 and "3 jobs cancelled" in r.stdout, r.stderr
    assert {j["status"] for j in batch_jobs(db, owner, batch_id)} == {"cancelled"}
    assert db.transact(jsql.job_row, lone)["status"] == "ready"
    # once over, a new price changes nothing
    assert "0 jobs now pay" in run("batch", "price", str(batch_id), "0.30").stdout


def test_a_batch_over_max_batch_is_refused_before_any_work(tmp_path, processes):
    db, server, owner, run = member_market(tmp_path, processes, "--max-batch", "3")
    (tmp_path / "sets.json").write_text(json.dumps([[1], [2], [3], [4]]))
    r = run("batch", "submit", "sweep.py", "sweep", "sets.json", "--name", "big", "--price", "0.05")
    assert r.returncode != 0 and "max-batch" in r.stderr and "Traceback" not in r.stderr
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM batches")) == 0
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0


def test_batch_add_refuses_too_many_states_too_large_a_state_and_more_jobs_than_the_batch_was_made_for(
    tmp_path, processes
):
    from market.accounts import issue_api_token
    from market.rpc import faults
    from market.rpc.client import blocking

    db, server, owner, _ = member_market(tmp_path, processes, "--max-argument-set", "4 KiB")
    proxy = blocking(server.url, "account/ann", issue_api_token(db, owner))
    states = batches.prepare_states(SWEEP, "sweep", [([n], {}) for n in range(3)])
    batch_id = proxy.batch(owner, SWEEP, "0.05", "small", "sweep", 2)
    with pytest.raises(xmlrpc.client.Fault) as e:
        proxy.batch_add(batch_id, [xmlrpc.client.Binary(states[0])] * (batches.CHUNK + 1))
    assert e.value.faultCode == faults.TOO_LARGE
    big = batches.prepare_states(SWEEP, "sweep", [(["x" * 5000], {})])[0]
    with pytest.raises(xmlrpc.client.Fault) as e:
        proxy.batch_add(batch_id, [xmlrpc.client.Binary(big)])
    assert e.value.faultCode == faults.TOO_LARGE and "4,096" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault):
        proxy.batch_add(batch_id, [xmlrpc.client.Binary(s) for s in states])  # 3 into a batch of 2
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0  # the chunk is all or nothing
    ids = proxy.batch_add(batch_id, [xmlrpc.client.Binary(s) for s in states[:2]])
    assert len(ids) == 2
    # each state got its job id in its header
    from market.tasklet import envelope

    for job_id in ids:
        data = db.transact(jsql.committed_state, job_id)["data"]
        assert envelope.read_header(bytes(data)).job_id == job_id
    # another module's states do not join the batch
    other = batches.prepare_states(SWEEP + "\n", "sweep", [([1], {})])
    batch2 = proxy.batch(owner, SWEEP, "0.05", "other", "sweep", 2)
    with pytest.raises(xmlrpc.client.Fault):
        proxy.batch_add(batch2, [xmlrpc.client.Binary(other[0])])
    # and a stranger's batch is no batch
    stranger, _ = md.account(db, "bob")
    bob = blocking(server.url, "account/bob", issue_api_token(db, stranger))
    with pytest.raises(xmlrpc.client.Fault) as e:
        bob.batch_status(batch_id)
    assert e.value.faultCode == faults.NOT_FOUND


def test_argument_files_in_json_jsonl_and_csv_read_as_the_same_sets():
    as_json = batches.read_argument_sets('[[1, 2], {"n": 3}, 4]', "json", 10)
    as_jsonl = batches.read_argument_sets('[1, 2]\n\n{"n": 3}\n4\n', "jsonl", 10)
    assert as_json == as_jsonl == [([1, 2], {}), ([], {"n": 3}), ([4], {})]
    assert batches.read_argument_sets('n,k\n3,"x"\n4,plain\n', "csv", 10) == [
        ([], {"n": 3, "k": "x"}),
        ([], {"n": 4, "k": "plain"}),
    ]
    from market.core.errors import TooLarge

    with pytest.raises(TooLarge):
        batches.read_argument_sets("\n".join("[1]" for _ in range(11)), "jsonl", 10)


def test_a_batch_whose_copies_of_the_module_would_exceed_the_bound_is_refused_before_any_work(tmp_path, processes):
    from market.accounts import issue_api_token
    from market.rpc import faults
    from market.rpc.client import blocking

    db, server, owner, _ = member_market(tmp_path, processes)
    proxy = blocking(server.url, "account/ann", issue_api_token(db, owner))
    module = SWEEP + "# padding\n" * 4000  # ~44 KB: 10,000 copies are over 256 MiB
    with pytest.raises(xmlrpc.client.Fault) as e:
        proxy.batch(owner, module, "0.05", "heavy", "sweep", 10_000)
    assert e.value.faultCode == faults.TOO_LARGE and "split the batch" in e.value.faultString
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM batches")) == 0
