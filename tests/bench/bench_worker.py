"""Per-slice overhead of a real worker: request + sandbox launch + thaw + freeze + check-in.

A real ``twistd market`` (SQLite) and a real ``twistd worker`` (full sandbox) run a job whose
frozen state is ~100 KB, in 0.2 s slices. From the dispatch rows the server recorded:

  cycle overhead  = time between consecutive check-outs - the slice the job computed
  lease overhead  = checked-in - checked-out - the slice (launch, thaw, freeze, upload; no request)

Baseline in the same run: the same slice run in-process (``tasklet.run_slice``: thaw + freeze with
no sandbox, no process, no network).

    python tests/bench/bench_worker.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from market import tasklet
from market.jobs import submission
from market.store import Database, upgrade
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market, Worker

SOURCE = """
def main(n, rounds):
    words = ["w%07d" % i for i in range(n)]
    total = 0
    for r in range(rounds):
        for w in words:
            total += len(w)
    return total
"""
SLICE = 0.2


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    n = 10_000
    state0 = tasklet.start(SOURCE, "main", [n, 10**6], {})
    # in-process baseline: thaw + run SLICE + freeze, no sandbox
    envelope = tasklet.run_slice(state0, SOURCE, SLICE).envelope
    base = []
    for _ in range(10):
        t = time.perf_counter()
        envelope = tasklet.run_slice(envelope, SOURCE, SLICE).envelope
        base.append(time.perf_counter() - t - SLICE)
    print(f"state size: {len(envelope) / 1024:.0f} KiB")
    print(f"baseline (in-process thaw + freeze): median {1000 * statistics.median(base):.1f} ms")

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:{d}/bench.sqlite"
        db = Database(url)
        upgrade(db)
        owner, _ = md.account(db, "owner", grant=10**9)
        host, _ = md.account(db, "host", grant=0)

        job = submission.prepare(SOURCE, "main", [n, 10**6])
        job_id = db.transact(submission.submit, owner, job, "bench", 1, time.time())
        cid, token = md.client(db, host, "bench")
        server = Market(
            url,
            d,
            "--window",
            "0.02",
            "--threshold",
            "1",
            "--grace",
            "5",
            "--min-slice",
            "0.05",
            "--test-job-size",
            "30",
        ).start()
        user = ["--user", "nobody"] if os.geteuid() == 0 else []
        worker = Worker(server.url, cid, token, d, "--slice", str(SLICE), *user).start()
        try:
            time.sleep(args.seconds)
        finally:
            worker.stop()
            server.stop()
        rows = db.transact(
            lambda tx: tx.all(
                "SELECT checked_out_at, checked_in_at, status FROM leases WHERE job_id = ? ORDER BY id", (job_id,)
            )
        )
        size = len(db.transact(jsql.committed_state, job_id)["data"])
        db.close()
    accepted = [r for r in rows if r["status"] == "accepted"][2:]  # skip warm-up
    lease = [r["checked_in_at"] - r["checked_out_at"] - SLICE for r in accepted]
    cycle = [b["checked_out_at"] - a["checked_out_at"] - SLICE for a, b in zip(accepted, accepted[1:])]
    print(f"committed state: {size / 1024:.0f} KiB; {len(accepted)} slices measured")
    print(
        f"lease overhead (launch + thaw + freeze + upload): median {1000 * statistics.median(lease):.1f} ms"
        f"  p90 {1000 * sorted(lease)[int(len(lease) * 0.9)]:.1f} ms"
    )
    print(
        f"cycle overhead (+ request and pooling): median {1000 * statistics.median(cycle):.1f} ms"
        f" = {100 * statistics.median(cycle) / 60:.3f} % of a 60 s slice;"
        f" {statistics.median(cycle) / statistics.median(base):.1f}x the in-process baseline"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
