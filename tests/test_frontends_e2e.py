"""Several real ``twistd market`` front ends on one MariaDB database: one elected matcher runs the
one pooling window (price order across front ends), the role moves within seconds when its holder
is killed (kill -9), and every job still ends exact, with no overlapping leases and a balanced
ledger. Also: a second front end on one SQLite database refuses to start, saying why."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from market.rpc.client import blocking
from market.store import Database, upgrade
from market.store import accounts as sql
from market.store import frontends as fsql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import TWISTD, Market, Worker, env, free_port, stop_all
from tests.support import mysql_reachable, need, need_program
from tests.test_worker_e2e import EXPECTED, SANDBOX_USER, result_of, submit, wait_until


@pytest.fixture
def processes():
    running = []
    yield running
    stop_all(running)


@pytest.fixture
def mariadb(mysql_databases):
    need(mysql_reachable(), "MariaDB")
    url = mysql_databases.create()
    db = Database(url)
    upgrade(db)
    yield url, db
    db.close()


def holder(db):
    return db.transact(fsql.listing)["holder"]


def frontend_of(db, server: Market) -> str:
    rows = db.transact(fsql.listing)["frontends"]
    (mine,) = [f["id"] for f in rows if f"tcp:{server.port}:" in f["rpc"] and f["stopped_at"] is None]
    return mine


def start_markets(url, tmp_path, processes, n, *options):
    servers = []
    for _ in range(n):
        m = Market(url, str(tmp_path), *options).start()
        processes.append(m)
        servers.append(m)
    return servers


def test_the_dearer_job_goes_to_the_faster_worker_whichever_front_end_each_asked(mariadb, tmp_path, processes):
    url, db = mariadb
    a, b = start_markets(url, tmp_path, processes, 2, "--window", "1.5", "--threshold", "100")
    wait_until(lambda: holder(db), 10, "a matcher")
    owner, _ = md.account(db, "owner", grant=10**7)
    host, _ = md.account(db, "host", grant=0)
    prices = (100, 600, 300, 500, 200, 400)
    jobs = {p: md.job(db, owner, p, f"p{p}") for p in prices}
    speeds = (10.0, 60.0, 30.0, 50.0, 20.0, 40.0)
    clients = {s: md.client(db, host, f"c{s}", s) for s in speeds}
    # alternate: every other worker asks b; whichever holds the role, half ask through the database
    server_of = {s: (a if i % 2 else b) for i, s in enumerate(speeds)}
    answers = {}

    def ask(s):
        cid, token = clients[s]
        answers[s] = blocking(server_of[s].url, f"client/{cid}", token).request(cid, 5)

    threads = [threading.Thread(target=ask, args=(s,)) for s in speeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    got = {s: answers[s]["job"] for s in speeds}
    # six workers, six jobs, strictly ordered prices and speeds: all 15 pairs in price order
    assert got == {s: jobs[p] for s, p in zip(sorted(speeds), sorted(prices))}
    issued = db.transact(
        lambda tx: {r["client_id"]: r["frontend"] for r in tx.all("SELECT client_id, frontend FROM leases")}
    )
    ids = {a: frontend_of(db, a), b: frontend_of(db, b)}
    assert {clients[s][0]: ids[server_of[s]] for s in speeds} == issued
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM work_requests")) == 0


def _overlaps(db) -> list:
    """Pairs of leases of one job (not replays) out at the same time, and states committed twice."""
    rows = db.transact(
        lambda tx: tx.all(
            "SELECT id, job_id, state_id, status, checked_out_at, checked_in_at, deadline FROM leases"
            " WHERE check_id IS NULL ORDER BY job_id, id"
        )
    )
    bad = []
    by_job: dict[int, list] = {}
    for r in rows:
        by_job.setdefault(r["job_id"], []).append(r)
    for leases in by_job.values():
        for before, after in zip(leases, leases[1:]):
            end = (
                before["deadline"]
                if before["checked_in_at"] is None
                else min(before["checked_in_at"], before["deadline"])
            )
            if after["checked_out_at"] < end - 1e-3:
                bad.append((before["id"], after["id"]))
        committed = [r["state_id"] for r in leases if r["status"] in ("accepted", "finished")]
        if len(committed) != len(set(committed)):
            bad.append(("a state committed twice", committed))
    return bad


def test_kill_9_of_the_matchers_front_end_hands_the_role_over_and_every_job_ends_exact(mariadb, tmp_path, processes):
    need_program("bwrap")
    url, db = mariadb
    options = ("--window", "0.3", "--threshold", "4", "--test-job-size", "30", "--grace", "3")
    servers = start_markets(url, tmp_path, processes, 3, *options)
    first = wait_until(lambda: holder(db), 10, "a matcher")
    ids = {frontend_of(db, s): s for s in servers}
    doomed = ids[first]
    owner, _ = md.account(db, "owner", grant=10**7)
    host, _ = md.account(db, "host", grant=0)
    jobs = {
        submit(db, owner, limit, price): limit
        for limit, price in [(300_000, 10), (600_000, 30), (300_000, 20), (600_000, 5)]
    }
    for i, server in enumerate(servers * 2):  # two workers on each front end
        cid, token = md.client(db, host, f"w{i}")
        processes.append(Worker(server.url, cid, token, str(tmp_path), "--slice", "0.5", *SANDBOX_USER).start())
    # work flows through all three front ends before the kill
    wait_until(
        lambda: (
            db.transact(lambda tx: tx.scalar("SELECT COUNT(DISTINCT frontend) FROM leases WHERE frontend IS NOT NULL"))
            == 3
        ),
        60,
        "leases issued by all three front ends",
    )
    killed_at = time.time()
    doomed.kill9()
    new = wait_until(lambda: (h := holder(db)) not in (None, first) and h, 15, "another front end to take the role")
    taken = time.time() - killed_at
    assert taken < 10, f"the role was taken {taken:.1f} s after its holder was killed"
    assert new in ids and ids[new] is not doomed
    # the survivors keep leasing under the new matcher
    wait_until(
        lambda: db.transact(
            lambda tx: tx.scalar(
                "SELECT COUNT(*) FROM leases WHERE frontend <> ? AND checked_out_at > ?", (first, killed_at + taken)
            )
        ),
        30,
        "leases after the handover",
    )
    wait_until(lambda: all(db.transact(jsql.job_row, j)["status"] == "finished" for j in jobs), 180, "every job")
    for job_id, limit in jobs.items():
        assert result_of(db, job_id) == EXPECTED[limit]
    assert _overlaps(db) == []
    assert db.transact(sql.audit)["balanced"]
    shown = db.transact(fsql.listing)
    assert [f["live"] for f in shown["frontends"] if f["id"] == first] == [False]


def test_a_second_front_end_on_one_sqlite_database_refuses_to_start_and_says_what_to_do(tmp_path, processes):
    url = f"sqlite:{tmp_path}/one.sqlite"
    db = Database(url)
    upgrade(db)
    processes.append(Market(url, str(tmp_path)).start())
    port = free_port()
    second = subprocess.run(
        [*TWISTD, "-n", "--pidfile=", "market", "--db", url, "--rpc", f"tcp:{port}:interface=127.0.0.1"],
        cwd=str(tmp_path),
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert "SQLite serves one front end only" in second.stderr and "MariaDB" in second.stderr
    assert len([f for f in db.transact(fsql.listing)["frontends"] if f["live"]]) == 1
