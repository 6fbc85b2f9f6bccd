"""Dispatcher throughput: workers in separate processes doing request -> state cycles.

Prints accepted check-ins per second and check-in latency p50/p99 (the pooling-window wait of
``request`` is excluded, as the issue asks), for SQLite and MariaDB, against a real
``twistd -n market``. Also a baseline in the same run: a bare Twisted XML-RPC echo method, so the
ratio says how much of the cost is ours rather than the HTTP/XML-RPC stack's.

    python tests/bench/bench_dispatch.py [--seconds 10] [--workers 8]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
import xmlrpc.client

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from leanrpc import LeanRPC  # noqa: E402
from market.store import Database, upgrade  # noqa: E402
from market.store import accounts as sql_accounts  # noqa: E402
from tests import marketdata as md  # noqa: E402
from tests.servers import Market  # noqa: E402
from tests.support import MySQLDatabases, mysql_reachable  # noqa: E402


def worker(url, cid, token, seconds, out):
    rpc = LeanRPC(url, f"client/{cid}", token)
    state = xmlrpc.client.Binary(md.fake_state(seq=1, payload=b"s" * 512))
    latencies, accepted, paid = [], 0, 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lease = rpc.call("request", cid, 30)
        if lease["status"] != "work":
            continue
        t = time.perf_counter()
        answer = rpc.call("state", lease["stateid"], state)
        latencies.append(time.perf_counter() - t)
        accepted += answer["status"] == "accepted"
        paid += answer["paid"]
    out.put((accepted, latencies, paid))


def run(url_db, workdir, workers, seconds, members):
    """``members`` job owners and as many worker owners: 1 puts every payment on the same two rows."""
    db = Database(url_db)
    upgrade(db)
    owners = [md.account(db, f"owner{i}", grant=10**12)[0] for i in range(members)]
    hosts = [md.account(db, f"host{i}", grant=0)[0] for i in range(members)]
    # 1000.00 credits/s: even a check-in a millisecond after its checkout pays, so every cycle
    # moves money through the ledger (at 0.01/s a few milliseconds would round down to nothing)
    for i in range(workers * 2):
        md.job(db, owners[i % members], 100_000, f"j{i}")
    clients = [md.client(db, hosts[i % members], f"w{i}", 100.0 + i) for i in range(workers)]
    server = Market(url_db, workdir, "--window", "0.005", "--threshold", str(workers), "--grace", "60").start()
    try:
        out = mp.Queue()
        procs = [mp.Process(target=worker, args=(server.url, cid, tok, seconds, out)) for cid, tok in clients]
        started = time.monotonic()
        for p in procs:
            p.start()
        results = [out.get(timeout=seconds + 60) for _ in procs]
        elapsed = time.monotonic() - started
        for p in procs:
            p.join()
        audit = db.transact(sql_accounts.audit)
    finally:
        server.stop()
        db.close()
    accepted = sum(r[0] for r in results)
    paid = sum(r[2] for r in results)
    if not audit["balanced"] or paid <= 0:
        raise SystemExit(f"the ledger does not balance after the run, or nothing was paid: {audit}, paid {paid}")
    lat = sorted(x for r in results for x in r[1])
    return accepted / elapsed, lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000


def echo_baseline(workers, seconds):
    """A bare twisted.web.xmlrpc method on the same machine: the stack's own ceiling."""
    import subprocess

    from tests.servers import free_port, wait_for_port

    port = free_port()
    code = ("from twisted.web import xmlrpc, server; from twisted.internet import reactor\n"
            "class E(xmlrpc.XMLRPC):\n    def xmlrpc_state(self, a, b):\n        return {'status': 'accepted'}\n"
            f"reactor.listenTCP({port}, server.Site(E()), interface='127.0.0.1'); reactor.run()\n")
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        wait_for_port(port, proc)
        out = mp.Queue()

        def loop(q):
            rpc = LeanRPC(f"http://127.0.0.1:{port}/", "client/1", "token")
            n, end = 0, time.monotonic() + seconds
            state = xmlrpc.client.Binary(b"s" * 600)
            while time.monotonic() < end:
                rpc.call("state", 1, state)
                n += 1
            q.put(n)

        procs = [mp.Process(target=loop, args=(out,)) for _ in range(workers)]
        t = time.monotonic()
        for p in procs:
            p.start()
        total = sum(out.get(timeout=seconds + 30) for _ in procs)
        elapsed = time.monotonic() - t
        for p in procs:
            p.join()
        return total / elapsed
    finally:
        proc.kill()
        proc.wait()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--members", type=int, default=8, help="job owners (and as many worker owners)")
    args = parser.parse_args()
    mp.set_start_method("fork")
    os.environ.setdefault("MARKET_CHEAP_HASHES", "1")
    baseline = echo_baseline(args.workers, args.seconds)
    print(f"baseline: bare twisted.web.xmlrpc echo, {args.workers} client processes: {baseline:,.0f} calls/s")
    print(f"market: {args.workers} workers, {args.members} job owners and {args.members} worker owners")
    with tempfile.TemporaryDirectory() as d:
        rate, p50, p99 = run(f"sqlite:{d}/bench.sqlite", d, args.workers, args.seconds, args.members)
        print(f"sqlite : {rate:,.0f} accepted check-ins/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms"
              f"  ({rate / baseline:.2f} of baseline)")
        if mysql_reachable():
            dbs = MySQLDatabases()
            try:
                rate, p50, p99 = run(dbs.create(), d, args.workers, args.seconds, args.members)
            finally:
                dbs.drop_all()
            print(f"mariadb: {rate:,.0f} accepted check-ins/s  p50 {p50:.1f} ms  p99 {p99:.1f} ms"
                  f"  ({rate / baseline:.2f} of baseline)")
        else:
            print("mariadb: not reachable on 127.0.0.1:3306, skipped")


if __name__ == "__main__":
    main()
