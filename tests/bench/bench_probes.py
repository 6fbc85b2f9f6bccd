"""Secret probes on a real market: the speeds one sandboxed worker is measured at, probe after
probe, and what the server's check of an answer costs.

A real ``twistd market`` (SQLite, ``--probe-interval 6``, ``--probe-seconds`` as given) and a real
``twistd worker`` (full sandbox, ``--slice 10``) run for ``--seconds``; every speed row is printed.
Then ``prober.answer_is_right`` is timed in-process against the whole chain for a few sizes.

    python tests/bench/bench_probes.py [--probe-seconds 3] [--seconds 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from market import tasklet
from market.dispatch import prober
from market.store import Database, upgrade
from tests import cheaphashes
from tests import marketdata as md
from tests.servers import Market, Worker, stop_all

SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []


def speeds(probe_seconds: str, seconds: float) -> None:
    cheaphashes.install()
    workdir = tempfile.mkdtemp()
    url = f"sqlite:{workdir}/m.sqlite"
    db = Database(url)
    upgrade(db)
    options = ("--window", "0.2", "--threshold", "1", "--probe-interval", "6", "--probe-seconds", probe_seconds)
    market = Market(url, workdir, *options).start()
    host, _ = md.account(db, "host", grant=0)
    client_id, token = md.client(db, host, "box")
    worker = Worker(market.url, client_id, token, workdir, "--slice", "10", *SANDBOX_USER).start()
    try:
        time.sleep(seconds)
    finally:
        stop_all([worker, market])
    rows = db.transact(
        lambda tx: tx.all("SELECT speed, operations, seconds FROM speeds WHERE client_id = ? ORDER BY id", (client_id,))
    )
    for r in rows:
        print(f"probe: {r['operations']:>10} steps  {r['seconds']:.3f} s  {r['speed']:>12,.0f} steps/s")


def check_cost() -> None:
    secret = bytes(range(32))
    for steps in (216_000, 4_974_000, 12_906_800):
        values = prober.expected(secret, 5, steps)
        answer = tasklet.codec.encode(values)
        began = time.perf_counter()
        for _ in range(20):
            assert prober.answer_is_right(answer, secret, 5, steps)
        check = (time.perf_counter() - began) / 20
        began = time.perf_counter()
        prober.expected(secret, 5, steps)
        whole = time.perf_counter() - began
        ratio = check / whole
        print(f"check of {steps:>10} steps: {check * 1000:7.1f} ms, whole chain {whole * 1000:7.0f} ms ({ratio:.3f})")
    began = time.perf_counter()
    for job_id in range(100):
        prober.make_probe(secret, 1000 + job_id, 12_906_800)
    print(f"building a probe: {(time.perf_counter() - began) * 10:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe-seconds", default="3")
    parser.add_argument("--seconds", type=float, default=40.0)
    args = parser.parse_args()
    speeds(args.probe_seconds, args.seconds)
    check_cost()


if __name__ == "__main__":
    main()
