"""States of any size (issue 20, item 4): check-in and fetch of large states by chunks against a
real ``twistd market`` on MariaDB (stock max_allowed_packet), with the market's resident memory.

    PYTHONPATH=$PWD python tests/bench/bench_states.py [MB ...]   (default: 10 100)

For each size: a state sent whole in one ``state`` call (only up to state-body, 16 MiB: the
same-run baseline), a state sent by chunks (``state_put`` x N + ``state``), and the next lease's
fetch by chunks (``state_get`` x N); seconds, MB/s, and the market's VmRSS/VmHWM after each.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import xmlrpc.client

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from market.rpc.client import blocking
from market.store import Database, upgrade
from tests import marketdata as md
from tests.servers import Market
from tests.support import MySQLDatabases

MiB = 1024 * 1024


def memory(pid: int) -> str:
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    rss, hwm = (int(fields[k].split()[0]) // 1024 for k in ("VmRSS", "VmHWM"))
    return f"market RSS {rss} MB, peak {hwm} MB"


def main(sizes: list[int]) -> None:
    dbs = MySQLDatabases()
    work = tempfile.mkdtemp()
    url = dbs.create()
    db = Database(url)
    upgrade(db)
    owner, _ = md.account(db, "owner", grant=10**9)
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, 1)
    cid, token = md.client(db, host, "bench", 50.0)
    market = Market(url, work, "--window", "0.05", "--threshold", "1", "--grace", "600").start()
    try:
        rpc = blocking(market.url, f"client/{cid}", token)
        pid = market.proc.pid
        print(f"uptime: {os.popen('uptime').read().strip()}")
        print(f"start: {memory(pid)}")
        lease = rpc.request(cid, 60, {"chunks": True})
        for mb in sizes:
            if mb * MiB * 4 // 3 + 64 * 1024 < 16 * MiB:  # fits state-body (16 MiB) as base64
                state = md.next_state_of(db, job_id, os.urandom(mb * MiB))
                t = time.perf_counter()
                assert rpc.state(lease["stateid"], xmlrpc.client.Binary(state))["status"] == "accepted"
                took = time.perf_counter() - t
                print(f"{mb} MB whole (one call): {took:.2f} s, {len(state) / MiB / took:.0f} MB/s; {memory(pid)}")
                time.sleep(0.1)
                lease = rpc.request(cid, 60, {"chunks": True})
            state = md.next_state_of(db, job_id, os.urandom(mb * MiB))
            t = time.perf_counter()
            count = -(-len(state) // MiB)
            for i in range(count):
                rpc.state_put(lease["stateid"], i, xmlrpc.client.Binary(state[i * MiB : (i + 1) * MiB]))
            answer = rpc.state(lease["stateid"], xmlrpc.client.Binary(b""), {"chunks": count, "size": len(state)})
            assert answer["status"] == "accepted", answer
            took = time.perf_counter() - t
            print(f"{mb} MB by {count} chunks: {took:.2f} s, {len(state) / MiB / took:.0f} MB/s; {memory(pid)}")
            time.sleep(0.1)
            lease = rpc.request(cid, 60, {"chunks": True})
            t = time.perf_counter()
            fetched = b"".join(rpc.state_get(lease["stateid"], i).data for i in range(lease["state_chunks"]))
            took = time.perf_counter() - t
            assert fetched == state
            print(f"{mb} MB fetched by chunks: {took:.2f} s, {len(state) / MiB / took:.0f} MB/s; {memory(pid)}")
    finally:
        market.stop()
        db.close()
        dbs.drop_all()


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10, 100])
