"""What opening replay checks costs a group commit of check-ins, in-process (no HTTP, no reactor).

    python tests/bench/bench_checkin_verify.py [--rounds 200] [--batch 16] [--backends sqlite,mariadb]

``jobs.checkin_many`` runs a batch of ``--batch`` accepted check-ins (one per job, 0.5 KB states)
with verification ON (the market's defaults; every worker is under watch, so every check-in
opens a check: the worst case) and OFF (``verify=None``), alternating batch by batch on the same
database, so both see the same table sizes and load. Printed per backend: the median wall time
and the median CPU time of this thread per check-in, ON and OFF, and their ratio; for MariaDB
also mariadbd's CPU per check-in over all ON batches and all OFF batches (machine-wide: other
clients of the server count too). The checkouts between batches are not timed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from market.core import verification  # noqa: E402
from market.store import Database, upgrade  # noqa: E402
from market.store import jobs as sql_jobs  # noqa: E402
from tests import marketdata as md  # noqa: E402
from tests.support import MySQLDatabases, mysql_reachable  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def _mariadbd_cpu() -> float | None:
    found = subprocess.run(["pidof", "mariadbd"], capture_output=True, text=True).stdout.split()
    if not found:
        return None
    with open(f"/proc/{found[0]}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def run(url: str, args) -> dict:
    db = Database(url)
    upgrade(db)
    owner = md.account(db, "owner", grant=10**13)[0]
    host = md.account(db, "host", grant=0)[0]
    jobs = [md.job(db, owner, 100_000, f"j{i}") for i in range(args.batch)]
    clients = [md.client(db, host, f"w{i}", 1e6)[0] for i in range(args.batch)]
    settings = verification.Settings()
    timing: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
    server = {"on": 0.0, "off": 0.0}
    try:
        for r in range(args.rounds):
            mode = "on" if r % 2 == 0 else "off"
            now = time.time()
            leases = db.transact(sql_jobs.checkout_many, [(j, c, 10.0) for j, c in zip(jobs, clients)], 60.0, now)
            batch = []
            for j, c in zip(jobs, clients):
                lease = leases[j]
                state = md.next_state(bytes(lease["state"]), payload=b"s" * 512 + b"%d" % r)
                facts, interpreter, mark = sql_jobs.state_facts_and_origin(state)
                check = sql_jobs.SliceCheck(0.5, interpreter, mark, 1e6) if mode == "on" else None
                batch.append(sql_jobs.CheckIn(lease["stateid"], c, state, now + 0.01, facts=facts, check=check))
            before_server = _mariadbd_cpu() if url.startswith("mysql") else None
            t0, c0 = time.perf_counter(), time.thread_time()
            answers = db.transact(sql_jobs.checkin_many, batch, settings if mode == "on" else None)
            t1, c1 = time.perf_counter(), time.thread_time()
            if before_server is not None:
                server[mode] += (_mariadbd_cpu() or 0.0) - before_server
            if any(not isinstance(a, dict) or a["status"] != "accepted" for a in answers):
                raise SystemExit(f"a check-in was not accepted: {answers}")
            timing[mode].append(((t1 - t0) / len(batch), (c1 - c0) / len(batch)))
        opened = db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM checks"))
    finally:
        db.close()
    out = {}
    for mode, rows in timing.items():
        out[mode] = (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
    out["checks"] = opened
    out["server"] = {m: v / (len(timing[m]) * args.batch) for m, v in server.items()}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=200, help="batches, alternating ON and OFF")
    parser.add_argument("--batch", type=int, default=16, help="check-ins per transaction")
    parser.add_argument("--backends", default="sqlite,mariadb")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.rounds} batches of {args.batch} check-ins, ON/OFF alternating")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        for backend in args.backends.split(","):
            dbs = None
            if backend == "sqlite":
                url = f"sqlite:{d}/bench.sqlite"
            elif mysql_reachable():
                dbs = MySQLDatabases()
                url = dbs.create()
            else:
                print("mariadb: not reachable on 127.0.0.1:3306, skipped")
                continue
            try:
                r = run(url, args)
            finally:
                if dbs:
                    dbs.drop_all()
            (won, con), (woff, coff) = r["on"], r["off"]
            line = (
                f"{backend:8s}: per check-in, wall ON {won * 1e6:.0f} us / OFF {woff * 1e6:.0f} us"
                f" (+{(won - woff) * 1e6:.0f} us, {woff / won:.2f}), this thread's CPU ON {con * 1e6:.0f} us /"
                f" OFF {coff * 1e6:.0f} us (+{(con - coff) * 1e6:.0f} us); {r['checks']} checks opened"
            )
            if backend != "sqlite":
                line += f"; mariadbd CPU ON {r['server']['on'] * 1e6:.0f} us / OFF {r['server']['off'] * 1e6:.0f} us"
            print(line)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
