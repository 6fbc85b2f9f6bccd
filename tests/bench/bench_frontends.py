"""One front end vs several on one MariaDB database, in the same run: check-ins/s, price order across
front ends, "no work" answers while work is ready, and the latency of ``request``.

    python tests/bench/bench_frontends.py [--seconds 10] [--workers 32] [--frontends 1,2]
                                          [--window 0.5] [--threshold 16]

For each count of front ends, a fresh MariaDB database, that many ``twistd -n market`` processes
and ``--workers`` simulated worker processes spread round-robin over them; each loops ``request``
then ``state`` (a 0.5 KB state, as bench_dispatch.py). There are always twice as many ready jobs
as workers, all affordable and runnable by everyone, with distinct prices; the workers have
distinct speeds. Printed per run:

- accepted check-ins per second over the measured interval (after a warm-up);
- price order: the leases of one window share their checkout time (one transaction); over every
  pair of leases in one window with strictly different prices and speeds, the share that gave the
  dearer job to the faster worker (the issue's figure: 100 %);
- "no work" answers (every one is wrong here: ready work always waits);
- ``request`` latency p50/p99, for requests answered by the matcher's own front end and by another
  (through the database);
- CPU per accepted check-in: all front ends together, and mariadbd.
To pin to one core: ``taskset -c 0 python tests/bench/bench_frontends.py ...`` (everything it
starts inherits the mask).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing as mp
import os
import sys
import tempfile
import time
import xmlrpc.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from bench_dispatch import _pid_of, cpu_seconds  # noqa: E402
from leanrpc import LeanRPC  # noqa: E402

from market.store import Database, upgrade  # noqa: E402
from market.store import accounts as sql_accounts  # noqa: E402
from market.store import frontends as sql_frontends  # noqa: E402
from tests import marketdata as md  # noqa: E402
from tests.servers import Market  # noqa: E402
from tests.support import MySQLDatabases, mysql_reachable  # noqa: E402


def worker(url, port, cid, token, start_at, end_at, out):
    """Cycles until ``end_at``; reports each request (asked, answered, status) and each accepted
    check-in's time."""
    rpc = LeanRPC(url, f"client/{cid}", token)
    asks, accepted = [], []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    while time.monotonic() < end_at:
        t = time.monotonic()
        lease = rpc.call("request", cid, 30)
        asks.append((t, time.monotonic(), lease["status"]))
        if lease["status"] != "work":
            continue
        leased = lease["state"]
        leased = leased.data if isinstance(leased, xmlrpc.client.Binary) else bytes(leased)
        state = xmlrpc.client.Binary(md.next_state(leased, payload=b"s" * 512 + b"%d" % lease["seq"]))
        answer = rpc.call("state", lease["stateid"], state)
        if answer["status"] == "accepted":
            accepted.append(time.monotonic())
    out.put((port, asks, accepted))


def price_order(db) -> tuple[int, int]:
    """(pairs in price order, pairs) over the windows of the run: leases with one checkout time."""
    rows = db.transact(
        lambda tx: tx.all(
            "SELECT l.checked_out_at AS at, l.price, s.speed FROM leases l JOIN jobs j ON j.id = l.job_id"
            " JOIN speeds s ON s.client_id = l.client_id WHERE j.kind = 'job' AND l.check_id IS NULL"
        )
    )
    windows: dict[float, list] = {}
    for r in rows:
        windows.setdefault(r["at"], []).append((int(r["price"]), float(r["speed"])))
    good = total = 0
    for leases in windows.values():
        for (p1, s1), (p2, s2) in itertools.combinations(leases, 2):
            if p1 == p2 or s1 == s2:
                continue
            total += 1
            good += (p1 > p2) == (s1 > s2)
    return good, total


def run(url, workdir, n, args):
    db = Database(url)
    upgrade(db)
    owner = md.account(db, "owner", grant=10**13)[0]
    host = md.account(db, "host", grant=0)[0]
    for i in range(args.workers * 2):
        md.job(db, owner, 100_000 + 37 * i, f"j{i}")  # distinct prices
    clients = [md.client(db, host, f"w{i}", 100.0 + 3 * i) for i in range(args.workers)]  # distinct speeds
    options = ["--grace", "60", "--max-per-address", str(max(128, args.workers + 16))]
    options += ["--window", str(args.window), "--threshold", str(args.threshold), *args.market.split()]
    servers = []
    try:
        for _ in range(n):
            servers.append(Market(url, workdir, *options).start())
        deadline = time.monotonic() + 10
        while not db.transact(sql_frontends.listing)["holder"] and time.monotonic() < deadline:
            time.sleep(0.1)
        shown = db.transact(sql_frontends.listing)
        holder_port = next(
            (s.port for s in servers for f in shown["frontends"] if f["matcher"] and f"tcp:{s.port}:" in f["rpc"]), None
        )
        start = time.monotonic() + 1.0 + 0.02 * args.workers
        begin, end = start + args.warmup, start + args.warmup + args.seconds
        out = mp.Queue()
        procs = [
            mp.Process(
                target=worker,
                args=(servers[i % n].url, servers[i % n].port, cid, tok, start, end, out),
            )
            for i, (cid, tok) in enumerate(clients)
        ]
        for p in procs:
            p.start()
        mariadbd = _pid_of("mariadbd")
        time.sleep(max(0.0, begin - time.monotonic()))
        cpu0 = sum(cpu_seconds(s.proc.pid) for s in servers), cpu_seconds(mariadbd) if mariadbd else 0.0
        time.sleep(max(0.0, end - time.monotonic()))
        cpu1 = sum(cpu_seconds(s.proc.pid) for s in servers), cpu_seconds(mariadbd) if mariadbd else 0.0
        results = [out.get(timeout=args.seconds + args.warmup + 60) for _ in procs]
        for p in procs:
            p.join()
        audit = db.transact(sql_accounts.audit)
        good, pairs = price_order(db)
    finally:
        for s in servers:
            s.stop()
        db.close()
    if not audit["balanced"]:
        raise SystemExit(f"the ledger does not balance after the run: {audit}")
    checkins = sum(1 for _, _, acc in results for t in acc if begin <= t < end)
    asks = [(port, a) for port, al, _ in results for a in al if begin <= a[0] < end]
    nowork = sum(1 for _, a in asks if a[2] != "work")

    def pct(values, q):
        values = sorted(values)
        return values[min(len(values) - 1, int(len(values) * q))] * 1000 if values else float("nan")

    local = [a[1] - a[0] for port, a in asks if port == holder_port and a[2] == "work"]
    remote = [a[1] - a[0] for port, a in asks if port != holder_port and a[2] == "work"]
    return {
        "rate": checkins / args.seconds,
        "good": good,
        "pairs": pairs,
        "nowork": nowork,
        "asks": len(asks),
        "local": (pct(local, 0.5), pct(local, 0.99), len(local)),
        "remote": (pct(remote, 0.5), pct(remote, 0.99), len(remote)),
        "cpu_frontends": (cpu1[0] - cpu0[0]) / max(checkins, 1) * 1000,
        "cpu_mariadbd": (cpu1[1] - cpu0[1]) / max(checkins, 1) * 1000,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--frontends", default="1,2", help="counts of front ends to run, in order")
    parser.add_argument("--window", type=float, default=0.5)
    parser.add_argument("--threshold", type=int, default=16)
    parser.add_argument("--market", default="", metavar="OPTIONS", help="more options for twistd market")
    args = parser.parse_args()
    if not mysql_reachable():
        raise SystemExit("needs the MariaDB of tests/support.py")
    mp.set_start_method("fork")
    print(
        f"{os.cpu_count()} CPUs (affinity {len(os.sched_getaffinity(0))}), load average {os.getloadavg()[0]:.2f};"
        f" {args.workers} worker processes; window {args.window:g} s, threshold {args.threshold};"
        f" {args.seconds:g} s measured after {args.warmup:g} s"
    )
    dbs = MySQLDatabases()
    base = None
    try:
        with tempfile.TemporaryDirectory() as d:
            for n in (int(x) for x in args.frontends.split(",")):
                r = run(dbs.create(), d, n, args)
                base = base or r["rate"]
                share = 100.0 * r["good"] / r["pairs"] if r["pairs"] else float("nan")
                print(
                    f"{n} front end(s): {r['rate']:,.0f} accepted check-ins/s ({r['rate'] / base:.2f}x the first run);"
                    f" price order {r['good']}/{r['pairs']} pairs = {share:.1f} %;"
                    f" no-work answers {r['nowork']} of {r['asks']} requests;"
                    f" request p50/p99 on the matcher's front end {r['local'][0]:.0f}/{r['local'][1]:.0f} ms"
                    f" ({r['local'][2]}), on the others {r['remote'][0]:.0f}/{r['remote'][1]:.0f} ms"
                    f" ({r['remote'][2]});"
                    f" CPU per check-in: front ends {r['cpu_frontends']:.2f} ms, mariadbd {r['cpu_mariadbd']:.2f} ms"
                )
    finally:
        dbs.drop_all()


if __name__ == "__main__":
    main()
