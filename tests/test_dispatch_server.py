"""``twistd -n market`` as a real process on SQLite and MariaDB: matching, leases, payments, holds,
restarts and malformed calls."""

from __future__ import annotations

import threading
import time
import xmlrpc.client

import pytest

from market.core import verification as policy
from market.rpc.client import blocking
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market


@pytest.fixture
def market_server(db, db_url, tmp_path):
    servers = []

    def start(*options):
        m = Market(db_url, str(tmp_path), *options).start()
        servers.append(m)
        return m

    yield start
    for m in servers:
        m.stop()


def worker_rpc(server, client_id, token):
    return blocking(server.url, f"client/{client_id}", token)


def trust(db, client_id: int) -> None:
    """Give a client the verified slices that take it out of watch."""
    db.transact(
        lambda tx: tx.execute(
            "UPDATE clients SET verified_slices = ? WHERE id = ?", (policy.DEFAULT_WATCH_SLICES, client_id)
        )
    )


def test_a_worker_under_watch_is_leased_an_eighth_of_its_slice_and_a_trusted_one_all_of_it(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1", "--min-slice", "1")
    owner, _ = md.account(db, "owner", grant=100_000)
    host, _ = md.account(db, "host")
    for name in ("a", "b"):
        md.job(db, owner, 100, name)
    (watched, wtoken), (trusted, ttoken) = (md.client(db, host, name, 10.0) for name in ("new", "old"))
    trust(db, trusted)
    lease = worker_rpc(server, watched, wtoken).request(watched, 16)
    assert lease["status"] == "work" and lease["slice"] == 16 * policy.WATCH_SLICE_SHARE
    granted = db.transact(lambda tx: tx.scalar("SELECT granted_seconds FROM leases WHERE id = ?", (lease["stateid"],)))
    assert granted == 16 * policy.WATCH_SLICE_SHARE  # the lease itself, not only the answer
    lease = worker_rpc(server, trusted, ttoken).request(trusted, 16)
    assert lease["status"] == "work" and lease["slice"] == 16


def test_the_highest_paying_job_goes_to_the_fastest_client_in_a_window(db, market_server):
    server = market_server("--window", "1.5", "--threshold", "3")
    owner, _ = md.account(db, "owner")
    host, _ = md.account(db, "host")
    jobs = {price: md.job(db, owner, price, f"p{price}") for price in (100, 300, 200)}
    clients = {speed: md.client(db, host, f"c{speed}", speed) for speed in (10.0, 30.0, 20.0)}
    for cid, _ in clients.values():  # out of watch: leased the slice they ask for
        trust(db, cid)
    answers = {}

    def ask(speed):
        cid, token = clients[speed]
        answers[speed] = worker_rpc(server, cid, token).request(cid, 5)

    threads = [threading.Thread(target=ask, args=(s,)) for s in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert {s: a["job"] for s, a in answers.items()} == {30.0: jobs[300], 20.0: jobs[200], 10.0: jobs[100]}
    assert all(a["status"] == "work" and a["slice"] == 5 for a in answers.values())


def test_accepted_check_in_commits_the_state_and_pays_the_client_owner(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1", "--grace", "5")
    owner, _ = md.account(db, "owner", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, 100)
    cid, token = md.client(db, host, "box", 50.0)
    rpc = worker_rpc(server, cid, token)
    lease = rpc.request(cid, 2)
    assert lease["job"] == job_id and lease["seq"] == 0
    time.sleep(0.3)
    state = xmlrpc.client.Binary(md.next_state(lease["state"].data))
    answer = rpc.state(lease["stateid"], state, {"progress": 0.5})
    assert answer["status"] == "accepted" and answer["paid"] > 0
    # the same check-in again is answered the same and pays nothing twice
    again = rpc.state(lease["stateid"], state)
    assert again["duplicate"] and again["status"] == "accepted"
    assert db.transact(sql.balance, host) == answer["paid"]
    assert db.transact(sql.balance, owner) == 10_000 - answer["paid"]
    assert db.transact(sql.audit)["balanced"]
    assert db.transact(jsql.committed_state, job_id)["seq"] == 1
    assert db.transact(jsql.job_row, job_id)["status"] == "ready"


def test_a_state_of_megabytes_is_hashed_before_its_transaction_and_its_payload_hash_is_kept(db, market_server):
    import hashlib

    server = market_server("--window", "0.2", "--threshold", "1", "--grace", "5")
    owner, _ = md.account(db, "owner", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, 100)
    cid, token = md.client(db, host, "box", 50.0)
    rpc = worker_rpc(server, cid, token)
    lease = rpc.request(cid, 2)
    payload = bytes(range(256)) * (3 * 4096)  # 3 MiB: over the size hashed on the reactor thread
    answer = rpc.state(lease["stateid"], xmlrpc.client.Binary(md.next_state(lease["state"].data, payload)))
    assert answer["status"] == "accepted"
    row = db.transact(
        lambda tx: tx.one("SELECT payload_sha256, digest, chunks FROM states WHERE job_id = ? AND seq = 1", (job_id,))
    )
    assert row["payload_sha256"] == hashlib.sha256(payload).hexdigest()
    # over one chunk (1 MiB): stored in chunks (issue 20), read back whole by committed_state
    assert row["chunks"] == 4
    assert row["digest"] == bytes(db.transact(jsql.committed_state, job_id)["data"])[-32:].hex()


def test_a_late_check_in_is_rejected_and_the_job_is_redispatched_from_its_previous_state(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1", "--grace", "0.3", "--min-slice", "0.2")
    owner, _ = md.account(db, "owner")
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, 100)
    cid, token = md.client(db, host, "slow", 5.0)
    rpc = worker_rpc(server, cid, token)
    lease = rpc.request(cid, 0.2)
    time.sleep(1.0)  # past slice + grace
    answer = rpc.state(lease["stateid"], xmlrpc.client.Binary(md.next_state(lease["state"].data)))
    assert answer["status"] in ("rejected", "expired") and answer["paid"] == 0
    assert db.transact(sql.balance, host) == 0
    again = rpc.request(cid, 0.2)
    assert again["job"] == job_id and again["seq"] == 0
    assert again["state"].data == bytes(db.transact(jsql.committed_state, job_id)["data"])  # state #0 again


def test_a_job_whose_owner_cannot_pay_is_held_not_dispatched(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1")
    poor, _ = md.account(db, "poor", grant=50)  # 0.50 credits
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, poor, 100)  # 1.00 per second; a 10 s slice costs 10.00
    cid, token = md.client(db, host, "box", 5.0)
    answer = worker_rpc(server, cid, token).request(cid, 10)
    assert answer["status"] == "nowork" and answer["retry_after"] >= 1
    assert db.transact(jsql.job_row, job_id)["status"] == "held"


def _hold(db, job_id):
    db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'held' WHERE id = ?", (job_id,)))


def test_a_held_job_is_released_when_its_owners_own_worker_earns(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1", "--grace", "5")
    owner, _ = md.account(db, "owner", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    theirs = md.job(db, owner, 100)
    mine = md.job(db, host, 100, "host's own")
    _hold(db, mine)  # as a window holds it: the host has nothing
    cid, token = md.client(db, host, "box", 50.0)
    rpc = worker_rpc(server, cid, token)
    lease = rpc.request(cid, 2)
    assert lease["job"] == theirs
    time.sleep(0.3)
    answer = rpc.state(lease["stateid"], xmlrpc.client.Binary(md.next_state(lease["state"].data)))
    assert answer["status"] == "accepted" and answer["paid"] > 0
    assert db.transact(jsql.job_row, mine)["status"] == "ready"  # the earnings released it
    assert db.transact(sql.audit)["balanced"]


def test_a_held_job_is_released_when_a_reservation_comes_back(db, market_server):
    server = market_server("--window", "0.2", "--threshold", "1", "--grace", "0.3", "--min-slice", "0.2")
    owner, _ = md.account(db, "owner", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    running = md.job(db, owner, 100, "running")
    waiting = md.job(db, owner, 100, "waiting")
    _hold(db, waiting)
    cid, token = md.client(db, host, "slow", 5.0)
    rpc = worker_rpc(server, cid, token)
    lease = rpc.request(cid, 0.2)
    assert lease["job"] == running
    assert db.transact(jsql.job_row, waiting)["status"] == "held"
    time.sleep(1.0)  # past slice + grace: the lease closes unpaid, its reservation returns
    answer = rpc.state(lease["stateid"], xmlrpc.client.Binary(md.next_state(lease["state"].data)))
    assert answer["status"] in ("rejected", "expired") and answer["paid"] == 0
    assert db.transact(jsql.job_row, waiting)["status"] == "ready"


def test_refusals_are_faults_with_codes(db, market_server):
    server = market_server("--window", "0.2")
    owner, owner_token = md.account(db, "owner")
    other, other_token = md.account(db, "other")
    host, _ = md.account(db, "host")
    cid, token = md.client(db, host, "box", 5.0)
    job_id = md.job(db, owner, 100)
    bad = blocking(server.url, f"client/{cid}", "wrong-token")
    with pytest.raises(xmlrpc.client.Fault) as e:
        bad.request(cid)
    assert e.value.faultCode == 2 and "credentials" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as e:
        blocking(server.url, "account/other", other_token).price(job_id, "9.00")
    assert e.value.faultCode == 4  # another member's job does not exist for you
    with pytest.raises(xmlrpc.client.Fault) as e:
        blocking(server.url, "account/owner", owner_token).price(job_id, "1.234")
    assert e.value.faultCode == 1 and "decimals" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as e:
        worker_rpc(server, cid, token).request("one")
    assert e.value.faultCode == 1 and "request(" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as e:
        worker_rpc(server, cid, token).state(1, xmlrpc.client.Binary(b"not an envelope"))
    assert e.value.faultCode == 1 and "envelope" in e.value.faultString
    with pytest.raises(xmlrpc.client.Fault) as e:
        worker_rpc(server, cid, token).nosuchmethod()
    assert "no method" in e.value.faultString
    assert server.alive()


def test_kill_9_under_load_then_restart_loses_nothing(db, db_url, market_server):
    server = market_server("--window", "0.1", "--threshold", "2", "--grace", "0.5", "--min-slice", "0.2")
    owner, _ = md.account(db, "owner", grant=100_000)
    host, _ = md.account(db, "host", grant=0)
    job_ids = [md.job(db, owner, 10 + i, f"j{i}") for i in range(6)]
    clients = [md.client(db, host, f"w{i}", 10.0 + i) for i in range(3)]
    stop = threading.Event()

    def hammer(cid, token):
        rpc = worker_rpc(server, cid, token)
        seq = 1
        while not stop.is_set():
            try:
                lease = rpc.request(cid, 0.2)
                if lease["status"] == "work":
                    rpc.state(lease["stateid"], xmlrpc.client.Binary(md.next_state(lease["state"].data)))
                    seq += 1
            except Exception:
                return

    threads = [threading.Thread(target=hammer, args=c) for c in clients]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.kill9()
    stop.set()
    for t in threads:
        t.join(10)
    committed_before = {j: db.transact(jsql.committed_state, j)["seq"] for j in job_ids}
    restarted = market_server("--window", "0.1", "--threshold", "2", "--grace", "0.5")
    deadline = time.time() + 10
    while time.time() < deadline:
        statuses = {db.transact(jsql.job_row, j)["status"] for j in job_ids}
        if statuses <= {"ready"}:
            break
        time.sleep(0.2)
    assert statuses <= {"ready"}, statuses  # open leases expired at restart; jobs back on the ready list
    assert {j: db.transact(jsql.committed_state, j)["seq"] for j in job_ids} == committed_before
    assert sum(committed_before.values()) > 0  # work was really being committed
    assert db.transact(sql.audit)["balanced"]
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM leases WHERE status = 'out'")) == 0
    assert restarted.alive()
