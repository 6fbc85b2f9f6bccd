"""A/B of verification by replay between two trees, on the same targets (not collected by pytest).

    python tests/bench/bench_replay_ab.py --base COMMIT [--runs N] [--slice SECONDS]

For each program of bench_replay.py: S (somewhere in the job) and S' (an honest slice of up to
``--slice`` seconds from S, stopped by the clock) are made once, here; then ``replay_slice`` from S
to S' runs in fresh processes, ``--base``'s tree and this tree alternating, N times each. Prints
the CPU seconds (median; each process compiles first, untimed) and the ratio to the honest
slice's CPU seconds (measured once, here, as it made S'), for both trees, and whether each replay
matched.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

from market import tasklet  # noqa: E402
from market.tasklet import envelope  # noqa: E402
from tests.bench.bench_replay import WORKLOADS  # noqa: E402

REPLAY = """
import base64, json, sys, time
sys.path.insert(0, sys.argv[1])
from market import tasklet
src, s, sha, mark = json.loads(sys.stdin.read())
s = base64.b64decode(s)
tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=1)  # compiled: not timed
c0 = time.process_time()
r = tasklet.replay_slice(s, src, target_payload_sha256=sha, target_mark=mark, max_steps=10**9)
print(json.dumps([time.process_time() - c0, r.matched, r.steps]))
"""


def child(code, tree, payload):
    proc = subprocess.run(
        [sys.executable, "-c", code, tree],
        input=json.dumps(payload),
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
    )
    return json.loads(proc.stdout)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", required=True, help="commit whose tree is 'before'")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--slice", type=float, default=0.5, help="the honest slice, seconds")
    opts = parser.parse_args(argv)
    print(
        "python %s on %s, %d cores, median of %d runs, load average %.1f at start; base %s"
        % (platform.python_version(), platform.machine(), os.cpu_count(), opts.runs, os.getloadavg()[0], opts.base)
    )
    print(
        "| program | honest slice s (CPU) | base replay s (CPU) | ratio "
        "| this tree replay s (CPU) | ratio | matched base / this |"
    )
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as base:
        archive = subprocess.run(["git", "-C", REPO, "archive", opts.base, "market"], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", base], input=archive.stdout, check=True)
        for name, (src, entry, args) in WORKLOADS.items():
            env = tasklet.start(src, entry, args, {}, job_id=1)
            c0 = time.process_time()
            tasklet.run_slice(env, src, 3600.0)
            whole = time.process_time() - c0
            seconds = min(opts.slice, 0.25 * whole)
            s = tasklet.run_slice(env, src, 0.1 * whole).envelope
            assert s is not None
            c0 = time.process_time()
            out = tasklet.run_slice(s, src, seconds)  # the honest slice: stopped by the clock, counting nothing
            h = time.process_time() - c0
            assert not out.finished, "the slice reached the job's end: give a shorter --slice"
            header, sha = envelope.inspect(out.envelope)
            b64 = base64.b64encode(s).decode()
            old, new, matched_old, matched_new = [], [], [], []
            for _ in range(opts.runs):
                o = child(REPLAY, base, [src, b64, sha, header.mark])
                n = child(REPLAY, REPO, [src, b64, sha, header.mark])
                old.append(o[0])
                new.append(n[0])
                matched_old.append(o[1])
                matched_new.append(n[1])
            a, b = statistics.median(old), statistics.median(new)
            print(
                "| %s | %.3f | %.3f | %.2f | %.3f | %.2f | %s / %s |"
                % (name, h, a, a / h, b, b / h, all(matched_old), all(matched_new))
            )


if __name__ == "__main__":
    main()
