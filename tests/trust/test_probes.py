"""Secret probes against a real ``twistd market``: a scripted cheater (a real client id and token
speaking XML-RPC) answering at once, replaying an honest client's answer, reusing an answer made
before its lease, or running a tenth of the work is rated suspect and gets no speed; a real
``twistd worker`` is measured and runs a real job to its exact result."""

from __future__ import annotations

import xmlrpc.client

import pytest

from market.dispatch import prober
from market.store import clients as csql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market, Worker, stop_all
from tests.support import need_program
from tests.test_worker_e2e import EXPECTED, SANDBOX_USER, result_of, submit, wait_until
from tests.trust.probe_cheats import CheatingClient, guess, run_honestly, short_segments

OPTIONS = ("--window", "0.2", "--threshold", "1", "--test-job-size", "30", "--probe-seconds", "0.5")


@pytest.fixture
def processes():
    running: list = []
    yield running
    stop_all(running)


@pytest.fixture
def server(db, db_url, tmp_path, processes):
    m = Market(db_url, str(tmp_path), *OPTIONS).start()
    processes.append(m)
    return m


def cheater(db, server, name: str) -> CheatingClient:
    host, _ = md.account(db, f"{name}-owner", grant=0)
    client_id, token = md.client(db, host, name)
    return CheatingClient(server.url, client_id, token)


def assert_caught(db, client: CheatingClient, answer: dict) -> None:
    """Rated suspect, no speed recorded, refused further work."""
    assert answer.get("suspect") is True and "speed" not in answer
    assert db.transact(csql.last_speed, client.client_id) is None
    assert db.transact(csql.client_by_id, client.client_id)["suspect"] == 1
    with pytest.raises(xmlrpc.client.Fault) as refused:
        client.lease()
    assert refused.value.faultCode == 3 and "suspended" in refused.value.faultString


def test_a_probe_lease_looks_like_a_job_lease(db, server):
    client = cheater(db, server, "curious")
    lease = client.lease(7)
    assert lease["status"] == "work" and lease["kind"] == "job" and lease["slice"] == 7
    text = (lease["module"] + lease["entry"]).lower()
    assert "probe" not in text and "test" not in text


def test_answering_at_once_with_a_guess_is_caught(db, server):
    client = cheater(db, server, "guesser")
    lease = client.lease()
    assert_caught(db, client, client.answer(lease, guess(lease)))


def test_replaying_an_honest_clients_answer_is_caught(db, server):
    honest = cheater(db, server, "honest")
    lease = honest.lease()
    honest_answer = run_honestly(lease)
    assert "speed" in honest.answer(lease, honest_answer)
    client = cheater(db, server, "replayer")
    assert_caught(db, client, client.answer(client.lease(), honest_answer))


def test_running_a_tenth_of_each_segment_is_caught(db, server):
    client = cheater(db, server, "skipper")
    lease = client.lease()
    assert_caught(db, client, client.answer(lease, short_segments(lease, 0.1)))


def test_an_answer_made_before_the_lease_is_caught(db, db_url, tmp_path, processes):
    # a short probe interval: the client's second probe comes one interval after its first
    server = Market(db_url, str(tmp_path), *OPTIONS, "--probe-interval", "1").start()
    processes.append(server)
    client = cheater(db, server, "hoarder")
    first = client.lease()
    kept = run_honestly(first)
    speed = client.answer(first, kept)["speed"]
    wait_until(lambda: client.lease()["status"] == "work", 30, "the next probe")  # nowork until then
    second = db.transact(
        lambda tx: tx.one(
            "SELECT d.id, j.probe_size FROM leases d JOIN jobs j ON j.id = d.job_id"
            " WHERE d.client_id = ? AND d.status = 'out'",
            (client.client_id,),
        )
    )
    # sized to last --probe-seconds at the measured speed
    assert second["probe_size"] == prober.steps_for(speed, 0.5, 30**3)
    answer = client.rpc.result(second["id"], xmlrpc.client.Binary(kept))
    assert answer.get("suspect") is True and "speed" not in answer
    assert db.transact(csql.client_by_id, client.client_id)["suspect"] == 1


def test_an_honest_worker_is_measured_then_runs_a_job_to_its_exact_result_and_once_stops_it(tmp_path, processes):
    need_program("bwrap")
    from market.store import Database, upgrade

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    server = Market(url, str(tmp_path), *OPTIONS).start()
    processes.append(server)
    owner, _ = md.account(db, "owner")
    host, _ = md.account(db, "host", grant=0)
    job_id = submit(db, owner, 50_000, 10)
    client_id, token = md.client(db, host, "honest-worker")
    worker = Worker(server.url, client_id, token, str(tmp_path), "--slice", "2", "--once", *SANDBOX_USER).start()
    processes.append(worker)
    assert worker.wait(120) == 0, worker.logtext()[-3000:]  # --once: gone after the job's result
    speed = db.transact(csql.last_speed, client_id)
    assert speed is not None and speed["speed"] > 0 and db.transact(csql.client_by_id, client_id)["suspect"] == 0
    assert db.transact(jsql.job_row, job_id)["status"] == "finished"
    assert result_of(db, job_id) == EXPECTED[50_000]
    db.close()
