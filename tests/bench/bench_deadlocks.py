"""Deadlocks with several front ends on one MariaDB (issue 20 item 3): N ``twistd market``
processes on a private ``mariadbd`` (so no other test's load is counted), simulated workers spread
over them, job owners that are also worker owners (payments cross between the same accounts).
Prints the InnoDB deadlocks counted by the server over the run, the accepted check-ins, and the
last deadlock InnoDB detected.

    python tests/bench/bench_deadlocks.py --frontends 2 --seconds 10 --workers 24 --members 4
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time

import pymysql

from tests.servers import Market, stop_all
from tests.test_db_frozen import Load, PrivateMariaDB


def status(port: int) -> tuple[int, str]:
    conn = pymysql.connect(host="127.0.0.1", port=port, user="root")
    with conn.cursor() as c:
        c.execute("SHOW GLOBAL STATUS LIKE 'Innodb_deadlocks'")
        row = c.fetchone()
        c.execute("SHOW ENGINE INNODB STATUS")
        text = c.fetchone()[2]
    conn.close()
    m = re.search(r"LATEST DETECTED DEADLOCK\n-+\n(.*?)\n-{5,}\nTRANSACTIONS", text, re.S)
    return int(row[1]) if row else -1, m.group(1) if m else ""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frontends", type=int, default=2)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=24)
    p.add_argument("--members", type=int, default=4, help="accounts that own jobs and workers")
    p.add_argument("--jobs", type=int, default=48)
    args = p.parse_args()
    from market.store import Database, upgrade
    from tests import marketdata as md

    root = tempfile.mkdtemp(prefix="bench-deadlocks-")
    server = PrivateMariaDB(root).create().start()
    markets = []
    try:
        url = server.create_database("market")
        db = Database(url)
        upgrade(db)
        members = [md.account(db, f"m{i}", grant=100_000_000)[0] for i in range(args.members)]
        for j in range(args.jobs):
            md.job(db, members[j % len(members)], 10 + j % 7, f"j{j}")
        clients = [md.client(db, members[(w + 1) % len(members)], f"w{w}", 10.0 + w) for w in range(args.workers)]
        db.close()
        markets = [
            Market(url, root, "--window", "0.2", "--threshold", "1", "--grace", "20").start()
            for _ in range(args.frontends)
        ]
        loads = [Load(markets[i % len(markets)].url, clients[i :: len(markets)]) for i in range(len(markets))]
        before, _ = status(server.port)
        for load in loads:
            load.start()
        time.sleep(args.seconds)
        for load in loads:
            load.stop()
        after, last = status(server.port)
        calls = sum(len(load.calls) for load in loads)
        failed = sum(1 for load in loads for c in load.calls if c[2] != "ok")
        accepted = sum(len(leases) for load in loads for leases in load.accepted.values())
        print(
            f"{args.frontends} front ends, {args.workers} workers, {args.members} members, {args.seconds:g} s:"
            f" deadlocks {after - before}, accepted check-ins {accepted} ({accepted / args.seconds:.0f}/s),"
            f" calls {calls}, failed calls {failed}"
        )
        if last:
            print("last deadlock:\n" + last[:4000])
    finally:
        stop_all(markets)
        server.stop()


if __name__ == "__main__":
    main()
