"""Probes through a real ``twistd market``: right answers give speeds, wrong ones suspects."""

from __future__ import annotations

import subprocess
import xmlrpc.client

import pytest

from market import tasklet
from market.dispatch import prober
from market.rpc.client import blocking
from market.store import clients as csql
from tests import marketdata as md
from tests.servers import Market, env


@pytest.fixture
def server(db, db_url, tmp_path):
    m = Market(db_url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--test-job-size", "20").start()
    yield m
    m.stop()


def run_to_end(lease):
    envelope = lease["state"].data
    while True:
        out = tasklet.run_slice(envelope, lease["module"], 5.0)
        if out.finished:
            return out.result
        envelope = out.envelope


def test_a_new_client_gets_a_test_job_and_a_right_answer_records_its_speed(db, server):
    host, _ = md.account(db, "host")
    cid, token = md.client(db, host, "newbox")
    rpc = blocking(server.url, f"client/{cid}", token)
    lease = rpc.request(cid, 10)
    # a probe looks like a job: kind "job", a neutral entry, the slice the client asked for
    assert lease["kind"] == "job" and lease["status"] == "work" and lease["slice"] == 10
    assert "probe" not in lease["module"] + lease["entry"] and "test" not in lease["module"] + lease["entry"]
    answer = rpc.result(lease["stateid"], xmlrpc.client.Binary(run_to_end(lease)))
    assert answer["status"] == "finished" and answer["speed"] > 0
    measured = db.transact(csql.last_speed, cid)
    assert measured["speed"] == pytest.approx(answer["speed"])
    operations = db.transact(lambda tx: tx.scalar("SELECT operations FROM speeds WHERE client_id = ?", (cid,)))
    assert operations == prober.operations(20**3)  # a first probe: test-job-size cubed steps
    # measured now: the next request joins the pool (no work there: nowork), not another test job
    assert rpc.request(cid, 10)["status"] == "nowork"


def test_a_wrong_answer_marks_the_client_suspect_and_records_nothing(db, server):
    host, _ = md.account(db, "host")
    cid, token = md.client(db, host, "liar")
    rpc = blocking(server.url, f"client/{cid}", token)
    lease = rpc.request(cid, 10)
    answer = rpc.result(lease["stateid"], xmlrpc.client.Binary(tasklet.codec.encode(42)))
    assert answer.get("suspect") is True
    assert db.transact(csql.last_speed, cid) is None
    assert db.transact(csql.client_by_id, cid)["suspect"] == 1
    with pytest.raises(xmlrpc.client.Fault) as e:
        rpc.request(cid, 10)
    assert e.value.faultCode == 3 and "suspended" in e.value.faultString


def test_market_submit_status_and_result_from_the_command_line(db, server, tmp_path):
    owner, token = md.account(db, "owner")
    module = tmp_path / "job.py"
    module.write_text("def main(n):\n    total = 0\n    for i in range(n):\n        total += i * i\n    return total\n")
    base = ["python", "-m", "market", "--db", server.db_url]
    auth = ["--server", server.url, "--account", "owner", "--token", token]
    r = subprocess.run(
        [*base, "submit", str(module), "main", "--name", "squares", "--price", "0.05", "--arg", "1000", *auth],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    job_id = int(r.stdout)
    # play the worker by hand: one client, measured, runs the job to its end
    host, _ = md.account(db, "host")
    cid, ctoken = md.client(db, host, "box", 100.0)
    rpc = blocking(server.url, f"client/{cid}", ctoken)
    lease = rpc.request(cid, 10)
    assert lease["job"] == job_id
    rpc.result(lease["stateid"], xmlrpc.client.Binary(run_to_end(lease)))
    r = subprocess.run([*base, "result", str(job_id), *auth], capture_output=True, text=True, env=env(), timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == str(sum(i * i for i in range(1000)))
    r = subprocess.run([*base, "status", *auth], capture_output=True, text=True, env=env(), timeout=60)
    assert "squares" in r.stdout and "finished" in r.stdout


def test_market_submit_refuses_code_outside_the_subset_with_line_numbers(db, server, tmp_path):
    _, token = md.account(db, "owner")
    module = tmp_path / "bad.py"
    module.write_text("import socket\n\ndef main():\n    return socket.gethostname()\n")
    r = subprocess.run(
        [
            "python",
            "-m",
            "market",
            "submit",
            str(module),
            "main",
            "--name",
            "bad",
            "--price",
            "1",
            "--server",
            server.url,
            "--account",
            "owner",
            "--token",
            token,
        ],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode == 2 and "line 1" in r.stderr and "Traceback" not in r.stderr


# -- a test job's answer is a stranger's bytes ---------------------------------------------------


SECRET = bytes(range(32))


def test_an_answer_is_right_only_if_it_is_the_probes_checkpoints():
    right = prober.expected(SECRET, 5, 2000)
    assert prober.answer_is_right(tasklet.codec.encode(right), SECRET, 5, 2000)
    assert not prober.answer_is_right(tasklet.codec.encode(right[:-1] + [right[-1] + 1]), SECRET, 5, 2000)
    assert not prober.answer_is_right(tasklet.codec.encode(right[:-1]), SECRET, 5, 2000)
    assert not prober.answer_is_right(tasklet.codec.encode([float(v) for v in right]), SECRET, 5, 2000)
    assert not prober.answer_is_right(tasklet.codec.encode(right[0]), SECRET, 5, 2000)
    assert not prober.answer_is_right(b"\x01\xff", SECRET, 5, 2000)
    assert not prober.answer_is_right(None, SECRET, 5, 2000)


def test_a_long_answer_is_wrong_without_being_decoded(monkeypatch):
    monkeypatch.setattr(tasklet, "decode_result", lambda *a, **k: pytest.fail("decoded"))
    flood = tasklet.codec.encode({(2**61 - 1) * k for k in range(1, 300)})
    assert len(flood) > prober.MAX_ANSWER
    assert not prober.answer_is_right(flood, SECRET, 5, 2000)


def test_a_hash_flooded_answer_is_judged_at_once_and_the_client_is_suspect(db, server):
    import time

    host, _ = md.account(db, "host")
    cid, token = md.client(db, host, "flooder")
    rpc = blocking(server.url, f"client/{cid}", token)
    lease = rpc.request(cid, 10)
    flood = tasklet.codec.encode({(2**61 - 1) * k for k in range(1, 40_000)})  # ~0.5 MB
    began = time.monotonic()
    answer = rpc.result(lease["stateid"], xmlrpc.client.Binary(flood))
    assert answer.get("suspect") is True and time.monotonic() - began < 2.0, sorted(answer.items())
    assert db.transact(csql.client_by_id, cid)["suspect"] == 1
