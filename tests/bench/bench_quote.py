"""Benchmark: the report and ``quote`` on a market of 100,000 clients and 1,000,000 jobs.

    python tests/bench/bench_quote.py [--dir /tmp/bench-quote] [--clients N] [--jobs N] [--runs 3]

Builds (or reuses) a SQLite market in ``--dir`` with bulk inserts, writes the report with the
streaming writer (``market.report.write_report``) in a child process, then runs ``python -m quote``
as a child process with and without ``--no-validate``. Wall time and the child's peak RSS
(``ru_maxrss`` from ``wait4``) are printed against the budgets: quote <= 5 s and <= 300 MB,
report <= 30 s. Exit status 1 if a budget is missed; the validating quote's time is reported but
not judged (documented in docs/benchmarks-quote.md: libxml2's XSD validation roughly doubles it).
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

QUOTE_SECONDS, QUOTE_MB, REPORT_SECONDS = 5.0, 300.0, 30.0
STATUSES = ["ready"] * 55 + ["running"] * 10 + ["held"] * 5 + ["finished"] * 25 + ["new"] * 3 + ["cancelled"] * 2
DISPATCH_STATUSES = ["accepted"] * 80 + ["out"] * 5 + ["rejected"] * 5 + ["expired"] * 5 + ["finished"] * 5


def build(path: str, clients: int, jobs: int, dispatches: int, seed: int = 7) -> None:
    """A market with the given sizes, inserted in bulk (the bench may write SQL directly)."""
    from market.store import Database, upgrade

    upgrade(Database("sqlite:" + path))
    rng = random.Random(seed)
    now = 1_795_000_000.0
    accounts = max(10, clients // 100)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts (id, name, email, balance, created_at) VALUES (?, ?, ?, ?, ?)",
        ((i, f"member{i}", f"member{i}@example.org", 10**9, now) for i in range(1, accounts + 1)))
    conn.executemany(
        "INSERT INTO clients (id, account_id, name, token_hash, created_at, status, suspect, sandbox_level)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ((i, rng.randint(1, accounts), f"client{i}", "0" * 64, now,
          "active" if rng.random() < 0.8 else "inactive", 1 if rng.random() < 0.02 else 0, "bwrap")
         for i in range(1, clients + 1)))
    conn.executemany(
        "INSERT INTO speeds (client_id, speed, operations, seconds, measured_at) VALUES (?, ?, ?, ?, ?)",
        ((i, s, int(s), 1.0, now + rng.random() * 100)
         for i in range(1, clients + 1) if rng.random() < 0.95
         for s in (rng.lognormvariate(15, 0.6),)))
    conn.executemany(
        "INSERT INTO jobs (id, account_id, kind, name, price, source, source_sha256, entry, status,"
        " submitted_at, executed_ms, slices) VALUES (?, ?, 'job', ?, ?, '', '', 'main', ?, ?, ?, ?)",
        ((i, rng.randint(1, accounts), f"job {i}", rng.randint(1, 2000), rng.choice(STATUSES),
          now + i * 0.01, rng.randint(0, 10**7), rng.randint(0, 50))
         for i in range(1, jobs + 1)))
    conn.executemany(
        "INSERT INTO dispatches (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
        " checked_in_at, status) VALUES (?, 0, ?, ?, 60, ?, ?, ?)",
        ((rng.randint(1, jobs), rng.randint(1, clients), t, t + 75, None if st == "out" else t + 61, st)
         for _ in range(dispatches)
         for t, st in ((now + rng.random() * 10**5, rng.choice(DISPATCH_STATUSES)),)))
    conn.execute("COMMIT")
    conn.close()


def run_child(argv: list) -> tuple:
    """Run a child process; returns (wall s, CPU s, peak RSS MB, exit code, stdout bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dir", default="/tmp/bench-quote")
    p.add_argument("--clients", type=int, default=100_000)
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--dispatches", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--speed", default="3000000", help="SPEED passed to quote")
    args = p.parse_args()

    os.makedirs(args.dir, exist_ok=True)
    tag = f"{args.clients}c-{args.jobs}j-{args.dispatches}d"
    db_path = os.path.join(args.dir, f"market-{tag}.sqlite")
    report_path = os.path.join(args.dir, f"report-{tag}.xml")
    if not os.path.exists(db_path):
        t = time.perf_counter()
        build(db_path + ".tmp", args.clients, args.jobs, args.dispatches)
        os.replace(db_path + ".tmp", db_path)
        print(f"built {db_path} in {time.perf_counter() - t:.1f} s")

    ok = True
    script = ("import sys; from market.store import Database; from market.report import write_report; "
              "c = write_report(Database(sys.argv[1]), sys.argv[2]); "
              "print(c.clients, c.jobs, c.dispatches)")
    wall, cpu, rss, code, out = run_child([sys.executable, "-c", script, "sqlite:" + db_path, report_path])
    size = os.path.getsize(report_path) / 1e6
    print(f"report: {out.decode().strip()} (clients jobs dispatches), {size:.0f} MB, "
          f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MB  [budget {REPORT_SECONDS:.0f} s]")
    ok &= code == 0 and wall <= REPORT_SECONDS

    for extra in ([], ["--no-validate"]):
        walls, cpus, rsss = [], [], []
        answer = b""
        for _ in range(args.runs):
            wall, cpu, rss, code, answer = run_child(
                [sys.executable, "-m", "quote", report_path, args.speed, *extra])
            ok &= code == 0
            walls.append(wall)
            cpus.append(cpu)
            rsss.append(rss)
        label = " ".join(["quote", "REPORT", args.speed, *extra])
        median = sorted(walls)[len(walls) // 2]
        print(f"{label}: answer {answer.decode().strip()}; wall best {min(walls):.2f} s, median {median:.2f} s; "
              f"CPU best {min(cpus):.2f} s; peak RSS max {max(rsss):.0f} MB  "
              f"[budget {QUOTE_SECONDS:.0f} s, {QUOTE_MB:.0f} MB]")
        ok &= max(rsss) <= QUOTE_MB
        if extra:
            ok &= min(walls) <= QUOTE_SECONDS
        elif min(walls) > QUOTE_SECONDS:
            # known and documented (docs/benchmarks-quote.md): libxml2's XSD validator roughly
            # doubles the streaming pass; --no-validate is the fast path for trusted large reports
            print("  validating run is over the 5 s budget (documented; --no-validate is within it)")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
