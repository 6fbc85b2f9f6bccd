"""Dispatcher throughput: simulated workers in separate processes doing request -> state cycles.

    python tests/bench/bench_dispatch.py [--seconds 10] [--workers 64] [--threshold 16] [--window 2]
                                         [--backends sqlite,mariadb] [--market OPTIONS]
                                         [--pairs N [--off OPTIONS]]

With ``--pairs N``: N alternating pairs of runs per backend, the market's defaults (ON) against
``--off`` (OFF, by default no slice replayed), each pair in the other order than the last; prints
every run, each pair's ON/OFF ratio and their median (a loaded machine drifts: compare within pairs).

Against a real ``twistd -n market`` (the market's default window and threshold unless given), each
worker process loops ``request`` then ``state`` with a 0.5 KB state; every accepted check-in pays
(1000.00 credits/s) and the ledger is audited after the run. Printed per backend:

- accepted check-ins per second, counted over the same interval for every worker (after a warm-up,
  so process start-up and the last half-empty window do not count);
- p50/p99 latency of ``state`` (the pooling wait of ``request`` is excluded, as the issue asks);
- where the CPU went per accepted cycle: the server's reactor thread, its database threads,
  mariadbd and the worker processes, read from /proc over the same interval;
- how many check-ins each database transaction carried (from the server's log).

Baseline in the same run: the market's own HTTP/XML-RPC path (``market.rpc.http`` and
``xmlrpc.client``'s codec) around an answer that does no work, called by the same worker
processes: a cycle is two calls, so half its calls/s is the ceiling for cycles/s on this machine
before any dispatcher or database work.
The simulated workers use ``leanrpc.LeanRPC`` (one kept-alive connection, ``xmlrpc.client``'s
codec), so the two cores go to the server under test rather than to the load generator.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, HERE)

from leanrpc import LeanRPC  # noqa: E402

from market.store import Database, upgrade  # noqa: E402
from market.store import accounts as sql_accounts  # noqa: E402
from tests import marketdata as md  # noqa: E402
from tests.servers import Market, free_port, wait_for_port  # noqa: E402
from tests.support import MySQLDatabases, mysql_reachable  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, thread: str = "") -> float:
    with open(f"/proc/{pid}/{'task/' + thread + '/' if thread else ''}stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def thread_cpu(pid: int) -> dict:
    return {tid: cpu_seconds(pid, tid) for tid in os.listdir(f"/proc/{pid}/task")}


def worker(url, cid, token, start_at, end_at, out):
    """Cycles until ``end_at``; reports (done at, state latency, paid) of each accepted check-in."""
    rpc = LeanRPC(url, f"client/{cid}", token)
    done = []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    while time.monotonic() < end_at:
        lease = rpc.call("request", cid, 30)
        if lease["status"] != "work":
            continue
        leased = lease["state"]
        leased = leased.data if isinstance(leased, xmlrpc.client.Binary) else bytes(leased)
        # the state an honest slice makes: bound to the lease, a payload of its own (docs/trust.md)
        state = xmlrpc.client.Binary(md.next_state(leased, payload=b"s" * 512 + b"%d" % lease["seq"]))
        t = time.monotonic()
        answer = rpc.call("state", lease["stateid"], state)
        if answer["status"] == "accepted":
            done.append((time.monotonic(), time.monotonic() - t, answer["paid"]))
    out.put(done)


def echo_worker(url, start_at, end_at, out):
    rpc = LeanRPC(url, "client/1", "token")
    state = xmlrpc.client.Binary(b"s" * 600)
    done = []
    while time.monotonic() < start_at:
        time.sleep(0.001)
    while time.monotonic() < end_at:
        rpc.call("state", 1, state)
        done.append(time.monotonic())
    out.put(done)


class Interval:
    """The measured interval and the CPU the server, mariadbd and the workers spent in it."""

    def __init__(self, seconds: float, warmup: float, server_pid: int, workers: int):
        self.start = time.monotonic() + 1.0 + 0.02 * workers  # time to fork every worker
        self.begin, self.end = self.start + warmup, self.start + warmup + seconds
        self.server_pid = server_pid
        self.mariadbd = _pid_of("mariadbd")

    def sample(self) -> dict:
        out = {"server": thread_cpu(self.server_pid), "children": _children_cpu()}
        if self.mariadbd:
            out["mariadbd"] = cpu_seconds(self.mariadbd)
        return out

    def measure(self, profile=None) -> tuple:
        """Wait for the interval, sampling CPU at its edges; -> (before, after). With ``profile``
        (a file name), py-spy records the server's threads during the interval."""
        time.sleep(max(0.0, self.begin - time.monotonic()))
        before = self.sample()
        spy = None
        if profile:
            spy = subprocess.Popen(
                [
                    "py-spy",
                    "record",
                    "--pid",
                    str(self.server_pid),
                    "--threads",
                    "-f",
                    "raw",
                    "-r",
                    "200",
                    "-d",
                    str(int(self.end - time.monotonic())),
                    "-o",
                    profile,
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(max(0.0, self.end - time.monotonic()))
        after = self.sample()
        if spy:
            spy.wait()
        return before, after


def _pid_of(name: str):
    found = subprocess.run(["pidof", name], capture_output=True, text=True).stdout.split()
    return int(found[0]) if found else None


def _children_cpu() -> float:
    """CPU of this process's live children (the workers), from /proc."""
    total = 0.0
    for child in mp.active_children():
        try:
            total += cpu_seconds(child.pid)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total


def run(url_db, workdir, args, market_options: str = ""):
    db = Database(url_db)
    upgrade(db)
    owners = [md.account(db, f"owner{i}", grant=10**13)[0] for i in range(args.members)]
    hosts = [md.account(db, f"host{i}", grant=0)[0] for i in range(args.members)]
    # 1000.00 credits/s: even a check-in a millisecond after its checkout pays, so every cycle
    # moves money through the ledger (at 0.01/s a few milliseconds would round down to nothing)
    for i in range(args.workers * 2):
        md.job(db, owners[i % args.members], 100_000, f"j{i}")
    clients = [md.client(db, hosts[i % args.members], f"w{i}", 100.0 + i) for i in range(args.workers)]
    # every simulated worker connects from 127.0.0.1: allow them all (and the bench's own calls)
    options = ["--grace", "60", "--max-per-address", str(max(128, args.workers + 16))]
    if args.window is not None:
        options += ["--window", str(args.window)]
    if args.threshold is not None:
        options += ["--threshold", str(args.threshold)]
    options += market_options.split()
    server = Market(url_db, workdir, *options).start()
    try:
        interval = Interval(args.seconds, args.warmup, server.proc.pid, args.workers)
        out = mp.Queue()
        procs = [
            mp.Process(target=worker, args=(server.url, cid, tok, interval.start, interval.end, out))
            for cid, tok in clients
        ]
        for p in procs:
            p.start()
        profile = os.path.join(args.profile, f"{url_db.split(':')[0]}.txt") if args.profile else None
        before, after = interval.measure(profile)
        results = [out.get(timeout=args.seconds + args.warmup + 60) for _ in procs]
        for p in procs:
            p.join()
        audit = db.transact(sql_accounts.audit)
    except BaseException:
        if not server.alive():  # say why the market died rather than only that its workers failed
            print(f"the market exited with {server.proc.returncode}; its log ends:\n{server.logtext()[-4000:]}")
        raise
    finally:
        server.stop()
        db.close()
    inside = [r for rs in results for r in rs if interval.begin <= r[0] < interval.end]
    paid = sum(r[2] for rs in results for r in rs)
    if not audit["balanced"] or paid <= 0:
        raise SystemExit(f"the ledger does not balance after the run, or nothing was paid: {audit}, paid {paid}")
    latencies = sorted(r[1] for r in inside)
    cycles = len(inside)
    main = str(server.proc.pid)
    cpu = {
        "reactor thread": after["server"].get(main, 0) - before["server"].get(main, 0),
        "db threads": sum(v - before["server"].get(t, 0) for t, v in after["server"].items() if t != main),
        "mariadbd": after.get("mariadbd", 0) - before.get("mariadbd", 0),
        "workers": after["children"] - before["children"],
    }
    log = open(server.log).read()
    batches = re.findall(r"\(([\d.]+) per transaction\)", log)
    return {
        "rate": cycles / args.seconds,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu": {k: v / cycles for k, v in cpu.items()},
        "per_transaction": batches[-1] if batches else "?",
        "paid": paid,
    }


def echo_baseline(args):
    """The market's own HTTP/XML-RPC path (``market.rpc.http`` + ``xmlrpc.client``'s codec) around
    an answer that does no work: the ceiling before any dispatcher or database work."""
    port = free_port()
    code = (
        "import xmlrpc.client\n"
        "from twisted.internet import reactor\n"
        "from market.rpc.http import RPCFactory\n"
        "class Caller:\n"
        "    max_body, owner = 1 << 20, 0\n"
        "class Echo:\n"
        "    def identify(self, authorization):\n"
        "        return Caller\n"
        "    def answer(self, body, caller):\n"
        "        args, _ = xmlrpc.client.loads(body)\n"
        "        return xmlrpc.client.dumps(({'stateid': args[0], 'status': 'accepted', 'paid': 500,"
        " 'duplicate': False, 'accepted_ms': 5},), methodresponse=True, allow_none=True).encode()\n"
        "from market.settings import ConnectionSettings\n"
        f"allow = ConnectionSettings(max_per_address={max(128, args.workers + 16)})\n"
        f"reactor.listenTCP({port}, RPCFactory(Echo(), settings=allow), interface='127.0.0.1')\n"
        "reactor.run()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(HERE)))
    try:
        wait_for_port(port, proc)
        start = time.monotonic() + 1.0 + 0.02 * args.workers
        begin, end = start + args.warmup, start + args.warmup + args.seconds
        out = mp.Queue()
        procs = [
            mp.Process(target=echo_worker, args=(f"http://127.0.0.1:{port}/RPC2", start, end, out))
            for _ in range(args.workers)
        ]
        for p in procs:
            p.start()
        total = sum(sum(1 for t in out.get(timeout=args.seconds + args.warmup + 30) if begin <= t < end) for _ in procs)
        for p in procs:
            p.join()
        return total / args.seconds
    finally:
        proc.kill()
        proc.wait()


def measure(backend: str, workdir: str, args, options: str) -> dict:
    """One run of the market on ``backend`` with more ``options``."""
    dbs = None
    if backend == "sqlite":
        url = f"sqlite:{workdir}/bench-{time.monotonic_ns()}.sqlite"
    else:
        dbs = MySQLDatabases()
        url = dbs.create()
    try:
        return run(url, workdir, args, options)
    finally:
        if dbs:
            dbs.drop_all()


def _show(name: str, r: dict, ceiling: float, load: float | None = None) -> None:
    cpu = ", ".join(f"{k} {v * 1e6:.0f} us" for k, v in r["cpu"].items() if v)
    at = f" (load {load:.2f} at its start)" if load is not None else ""
    print(
        f"{name:8s}: {r['rate']:,.0f} accepted check-ins/s ({r['rate'] / ceiling:.2f} of the ceiling)"
        f"  state p50 {r['p50']:.1f} ms p99 {r['p99']:.1f} ms  {r['per_transaction']} check-ins per"
        f" transaction{at}\n          CPU per accepted cycle: {cpu}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured interval")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=64, help="simulated worker processes")
    parser.add_argument("--members", type=int, default=8, help="job owners (and as many worker owners)")
    parser.add_argument("--window", type=float, default=None, help="--window for the market (default: its own)")
    parser.add_argument("--threshold", type=int, default=None, help="--threshold for the market (default: its own)")
    parser.add_argument("--backends", default="sqlite,mariadb")
    parser.add_argument(
        "--market",
        metavar="OPTIONS",
        default="",
        help="more options for twistd market, e.g. '--verify-fraction 0 --watch-slices 0' (no slice replayed)",
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy the server during the interval (raw stacks"
        " into DIR/sqlite.txt, DIR/mysql.txt); its sampling slows the server",
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=0,
        help="alternate N pairs of runs: ON (the --market options) and OFF (those and --off); prints each ratio",
    )
    parser.add_argument(
        "--off",
        metavar="OPTIONS",
        default="--verify-fraction 0 --watch-slices 0",
        help="what --pairs adds for its OFF runs (default: no slice replayed)",
    )
    args = parser.parse_args()
    mp.set_start_method("fork")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {args.workers} worker processes,"
        f" {args.members} job owners and {args.members} worker owners; window {args.window or 'default'},"
        f" threshold {args.threshold or 'default'}; {args.seconds:g} s measured after {args.warmup:g} s"
    )
    calls = echo_baseline(args)
    ceiling = calls / 2
    print(
        f"baseline: the market's HTTP/XML-RPC path around an echo: {calls:,.0f} calls/s"
        f" = {ceiling:,.0f} cycles/s ceiling"
    )
    ok = True
    with tempfile.TemporaryDirectory() as d:
        for backend in args.backends.split(","):
            if backend != "sqlite" and not mysql_reachable():
                print("mariadb: not reachable on 127.0.0.1:3306, skipped")
                ok = False
                continue
            if not args.pairs:
                r = measure(backend, d, args, args.market)
                _show(backend, r, ceiling)
                if backend == "mariadb":
                    ok &= r["rate"] >= 1000
                continue
            # alternating pairs: the machine's load drifts; a ratio within a pair is what compares
            ratios = []
            for i in range(args.pairs):
                first = [("ON", args.market), ("OFF", f"{args.market} {args.off}")]
                runs = {}
                for name, options in first if i % 2 == 0 else first[::-1]:
                    load = os.getloadavg()[0]
                    runs[name] = measure(backend, d, args, options)
                    _show(f"{backend} {name}", runs[name], ceiling, load)
                ratios.append(runs["ON"]["rate"] / runs["OFF"]["rate"])
                print(f"{backend} pair {i + 1}: ON/OFF {ratios[-1]:.2f}")
            print(
                f"{backend}: ON/OFF over {len(ratios)} alternating pairs: median {statistics.median(ratios):.2f}"
                f" (each: {', '.join(f'{x:.2f}' for x in ratios)})"
            )
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    print("goal (>= 1000 accepted check-ins/s on MariaDB): " + ("met" if ok else "NOT met"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
