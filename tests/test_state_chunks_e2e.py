"""A job whose state is 100 MB runs to its exact result with a real ``twistd market`` on a stock
MariaDB (max_allowed_packet left at its default, 16 MiB) and a real ``twistd worker`` with
``--memory 1536`` (MB, the job's address space) and ``--output 160`` (MB, what a slice may send
back): every slice fetches the state by chunks and checks the next one in by chunks (issue 20,
item 4). The market's peak resident memory during it is printed and bounded."""

from __future__ import annotations

import os
import time

import pytest

from market import tasklet
from market.jobs import submission
from market.store import Database, upgrade
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market, Worker, stop_all
from tests.support import MySQLDatabases, fresh_url, need_program

SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []
MEMORY_MB = 1536

# 100 MiB of bytes kept in the job's variables from its first line to its end: every state it
# freezes carries them (bytes(range(256)) does not compress to anything small in the codec)
BIG = """
def main(megabytes, rounds):
    block = bytes(range(256)) * (4096 * megabytes)
    total = 0
    for r in range(rounds):
        i = 0
        while i < 2000:
            total = (total + block[(r * 7919 + i * 104729) % len(block)]) % 1000003
            i = i + 1
    return [len(block), total]
"""
ARGS = [100, 10000]  # a few seconds of work: several slices of at most 0.5 s


def expected() -> list[int]:
    """The job run as plain Python, here: the answer is computed, not written down."""
    scope: dict = {}
    exec(compile(BIG, "big", "exec"), scope)
    return scope["main"](*ARGS)


def peak_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process, MB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


@pytest.fixture
def mariadb(tmp_path):
    dbs = MySQLDatabases()
    url = fresh_url("mysql", tmp_path, dbs)
    db = Database(url)
    upgrade(db)
    packet = db.transact(lambda tx: tx.scalar("SELECT @@max_allowed_packet"))
    assert packet <= 16 * 1024 * 1024, "this test is about a stock MariaDB: max_allowed_packet 16 MiB"
    yield url, db
    db.close()
    dbs.drop_all()


def test_a_job_with_a_100_mb_state_runs_to_its_exact_result_on_a_stock_mariadb(mariadb, tmp_path):
    need_program("bwrap")
    url, db = mariadb
    processes: list = []
    try:
        market = Market(
            url,
            str(tmp_path),
            "--window",
            "0.2",
            "--threshold",
            "1",
            "--test-job-size",
            "30",
            "--grace",
            "120",
            "--min-slice",
            "0.3",
            "--max-slice",
            "0.5",
        ).start()
        processes.append(market)
        rss_before, _ = peak_rss_mb(market.proc.pid)
        owner, _ = md.account(db, "owner", grant=10_000_000)
        host, _ = md.account(db, "host", grant=0)
        job = submission.prepare(BIG, "main", ARGS)
        job_id = db.transact(submission.submit, owner, job, "big state", 5, time.time())
        cid, token = md.client(db, host, "bigworker", 50.0)
        worker = Worker(
            market.url,
            cid,
            token,
            str(tmp_path),
            "--slice",
            "1",
            "--memory",
            str(MEMORY_MB),
            "--output",
            "160",
            *SANDBOX_USER,
        ).start()
        processes.append(worker)
        deadline = time.time() + 600
        while time.time() < deadline and db.transact(jsql.job_row, job_id)["status"] != "finished":
            time.sleep(0.5)
        row = db.transact(jsql.job_row, job_id)
        assert row["status"] == "finished", (row, worker.logtext()[-3000:], market.logtext()[-3000:])
        assert row["outcome"] == "finished", row["error"]
        assert tasklet.decode_result(bytes(row["result"])) == expected()
        states = db.transact(
            lambda tx: tx.all(
                "SELECT seq, chunks, size, LENGTH(data) AS inline FROM states WHERE job_id = ?", (job_id,)
            )
        )
        chunked = [s for s in states if s["chunks"]]
        # at least one 100 MB state went through the chunked check-in (and every later slice
        # fetched it by chunks), stored with no bytes in its row
        assert len(chunked) >= 2 and all(s["size"] > 100 * 1024 * 1024 and s["inline"] == 0 for s in chunked), states
        assert all(s["chunks"] == -(-s["size"] // (1024 * 1024)) for s in chunked)
        assert db.transact(sql.audit)["balanced"]
        rss_after, peak = peak_rss_mb(market.proc.pid)
        print(
            f"\n100 MB state job: {len(chunked)} chunked check-in(s), slices {row['slices']};"
            f" market RSS {rss_before:.0f} MB at start, {rss_after:.0f} MB after, peak {peak:.0f} MB;"
            f" worker --memory {MEMORY_MB}"
        )
        # the market never held a whole state: its peak stays well under one 100 MB state above its start
        assert peak - rss_before < 100, (rss_before, peak)
    finally:
        stop_all(processes)
