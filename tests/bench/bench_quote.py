"""Benchmark: the report and ``quote`` on a market of 100,000 clients and 1,000,000 jobs.

    python tests/bench/bench_quote.py [--dir /tmp/bench-quote] [--clients N] [--jobs N] [--runs 3]

Builds (or reuses) a SQLite market in ``--dir`` with bulk inserts, writes the report with the
streaming writer (``market.report.write_report``) in a child process, then runs ``quote`` as a
child process, ``--runs`` rounds of: validating (the default, split over the CPUs), ``--no-validate``
and, as the same-run baseline, the validating read in one single pass (``reader.read_one_pass``).
Wall time is measured around the child; CPU time and peak RSS come from the child's own rusage
(the quote process) and its RUSAGE_CHILDREN (the processes it forked for the split), reported
separately. Every figure is printed with the load average at that moment. Budgets: quote (both
modes) best wall <= 5 s and peak RSS (parent + forked children) <= 300 MB, report <= 30 s; the
three reads must give the same answer. Exit status 1 if a budget is missed.
"""

from __future__ import annotations

import argparse
import json
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

    db = Database("sqlite:" + path)
    upgrade(db)
    db.close()  # else its open connection keeps the WAL below from being merged before the rename
    rng = random.Random(seed)
    now = 1_795_000_000.0
    accounts = max(10, clients // 100)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO accounts (id, name, email, balance, created_at) VALUES (?, ?, ?, ?, ?)",
        ((i, f"member{i}", f"member{i}@example.org", 10**9, now) for i in range(1, accounts + 1)),
    )
    conn.executemany(
        "INSERT INTO clients (id, account_id, name, token_hash, created_at, status, suspect, sandbox_level)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            (
                i,
                rng.randint(1, accounts),
                f"client{i}",
                "0" * 64,
                now,
                "active" if rng.random() < 0.8 else "inactive",
                1 if rng.random() < 0.02 else 0,
                "bwrap",
            )
            for i in range(1, clients + 1)
        ),
    )
    conn.executemany(
        "INSERT INTO speeds (client_id, speed, operations, seconds, measured_at) VALUES (?, ?, ?, ?, ?)",
        (
            (i, s, int(s), 1.0, now + rng.random() * 100)
            for i in range(1, clients + 1)
            if rng.random() < 0.95
            for s in (rng.lognormvariate(15, 0.6),)
        ),
    )
    conn.executemany(
        "INSERT INTO jobs (id, account_id, kind, name, price, source, source_sha256, entry, status,"
        " submitted_at, executed_ms, slices) VALUES (?, ?, 'job', ?, ?, '', '', 'main', ?, ?, ?, ?)",
        (
            (
                i,
                rng.randint(1, accounts),
                f"job {i}",
                rng.randint(1, 2000),
                rng.choice(STATUSES),
                now + i * 0.01,
                rng.randint(0, 10**7),
                rng.randint(0, 50),
            )
            for i in range(1, jobs + 1)
        ),
    )
    conn.executemany(
        "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
        " checked_in_at, status) VALUES (?, 0, ?, ?, 60, ?, ?, ?)",
        (
            (rng.randint(1, jobs), rng.randint(1, clients), t, t + 75, None if st == "out" else t + 61, st)
            for _ in range(dispatches)
            for t, st in ((now + rng.random() * 10**5, rng.choice(DISPATCH_STATUSES)),)
        ),
    )
    conn.execute("COMMIT")
    conn.close()


def run_child(argv: list) -> tuple:
    """Run a child process; returns (wall s, CPU s, peak RSS MB, exit code, stdout bytes, stderr bytes)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    out = proc.stdout.read()  # both outputs are a few lines: no pipe fills up
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # wait4, not wait(): it also gives the rusage
    wall = time.perf_counter() - start
    proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, code, out, err


# Runs the quote command in-process and reports its own and its forked children's rusage on the
# last line of stderr, so the split's processes can be told apart (wait4 only gives their sum/max).
QUOTE = """
import json, resource, sys
from quote import cli, reader
if sys.argv[1] == "--one-pass":  # the baseline: validating, one single pass
    del sys.argv[1]
    reader.read = reader.read_one_pass
code = cli.main(sys.argv[1:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.write("rusage " + json.dumps([me.ru_utime + me.ru_stime, me.ru_maxrss / 1024.0,
                                         kids.ru_utime + kids.ru_stime, kids.ru_maxrss / 1024.0]) + "\\n")
sys.exit(code)
"""


def run_quote(args: list) -> dict:
    load = os.getloadavg()[0]
    wall, cpu, rss, code, out, err = run_child([sys.executable, "-c", QUOTE, *args])
    lines = err.decode(errors="replace").splitlines()
    # without the line (the child failed), fall back to wait4's figures: CPU summed, RSS the max
    mine = (
        json.loads(lines[-1][len("rusage ") :]) if lines and lines[-1].startswith("rusage ") else [cpu, rss, 0.0, 0.0]
    )
    return dict(
        wall=wall,
        cpu=cpu,
        rss=rss,
        code=code,
        answer=out.decode().strip(),
        load=load,
        cpu_parent=mine[0],
        rss_parent=mine[1],
        cpu_children=mine[2],
        rss_children=mine[3],
    )


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
    script = (
        "import sys; from market.store import Database; from market.report import write_report; "
        "c = write_report(Database(sys.argv[1]), sys.argv[2]); "
        "print(c.clients, c.jobs, c.dispatches)"
    )
    load = os.getloadavg()[0]
    wall, cpu, rss, code, out, _ = run_child([sys.executable, "-c", script, "sqlite:" + db_path, report_path])
    size = os.path.getsize(report_path) / 1e6
    print(
        f"report: {out.decode().strip()} (clients jobs dispatches), {size:.0f} MB, "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MB, load {load:.2f}  "
        f"[budget {REPORT_SECONDS:.0f} s]",
        flush=True,
    )
    ok &= code == 0 and wall <= REPORT_SECONDS

    baseline = "validating, one pass (baseline)"
    modes = {
        "validating (split)": [report_path, args.speed],
        "--no-validate": [report_path, args.speed, "--no-validate"],
        baseline: ["--one-pass", report_path, args.speed],
    }
    results = {label: [] for label in modes}
    for i in range(args.runs):  # interleaved, so each mode sees the same mix of load
        for label, argv in modes.items():
            r = run_quote(argv)
            results[label].append(r)
            print(
                f"  run {i + 1} {label}: answer {r['answer']}; wall {r['wall']:.2f} s; CPU {r['cpu']:.2f} s "
                f"(quote {r['cpu_parent']:.2f} s + forked {r['cpu_children']:.2f} s); peak RSS quote "
                f"{r['rss_parent']:.0f} MB, forked {r['rss_children']:.0f} MB; load {r['load']:.2f}",
                flush=True,
            )
            ok &= r["code"] == 0
    answers = {r["answer"] for rs in results.values() for r in rs}
    if len(answers) != 1:
        print(f"  DIFFERENT ANSWERS: {sorted(answers)}")
        ok = False
    for label, rs in results.items():
        walls = sorted(r["wall"] for r in rs)
        best = min(rs, key=lambda r: r["wall"])
        rss = max(max(r["rss_parent"] + r["rss_children"], r["rss"]) for r in rs)
        judged = label != baseline
        print(
            f"quote REPORT {args.speed} {label}: answer {best['answer']}; wall best {walls[0]:.2f} s "
            f"(load {best['load']:.2f}), median {walls[len(walls) // 2]:.2f} s; CPU best "
            f"{min(r['cpu'] for r in rs):.2f} s; peak RSS max quote {max(r['rss_parent'] for r in rs):.0f} MB "
            f"+ forked {max(r['rss_children'] for r in rs):.0f} MB"
            + (f"  [budget {QUOTE_SECONDS:.0f} s, {QUOTE_MB:.0f} MB]" if judged else "  [baseline, not judged]")
        )
        if judged:
            ok &= walls[0] <= QUOTE_SECONDS and rss <= QUOTE_MB
    print(f"load average at the end: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print("within budget" if ok else "OVER BUDGET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
