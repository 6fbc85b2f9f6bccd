"""Freeze and thaw cost of the state codec, per shape of state (issue 18).

``python tests/bench/bench_codec.py [--runs 7] [--big]``

Each shape is sized to ~1 MB encoded; the state is wrapped as the runner wraps it (one frame whose
locals hold the data) and goes through the envelope both ways, as a real freeze and thaw do. For
each shape: encoded MB, freeze (encode + envelope) and thaw (open envelope + decode) medians in ms.
``--big`` adds a 64 MB state (a mix of the shapes) frozen and thawed once per run.
``--against REV`` also measures the codec.py of git revision REV, alternating with this one in the
same process (CPU time, best of the runs: the fairest comparison on a shared machine).
The second table compares codec version 1 (``mkt-bin-1``) and version 2 (``mkt-bin-2``, columns)
in the same run, alternating, CPU time, best of the runs; ``v2/v1`` is the ratio of the sums.
"""

import argparse
import importlib.util
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from market.tasklet import codec, envelope


class Item:
    """A small job object, as a job's own class."""

    def __init__(self, i):
        self.id = i
        self.name = "item%d" % i
        self.weight = i * 0.5
        self.tags = None


CLASSES = {"Item": Item}


def shapes(scale=1):
    n = scale
    return {
        "ints list": lambda: list(range(125000 * n)),
        "floats list": lambda: [i * 0.37 for i in range(115000 * n)],
        "strings list": lambda: ["word%d" % i for i in range(100000 * n)],
        "mixed tuples": lambda: [(i, "k%d" % i, i * 0.25) for i in range(40000 * n)],
        "dict str->int": lambda: {"key%d" % i: i * 7 for i in range(80000 * n)},
        "dict int->tuple": lambda: {i: (i, i + 1, "v") for i in range(60000 * n)},
        "objects": lambda: [Item(i) for i in range(20000 * n)],
        "nested lists": lambda: [[j, i, [i, "x"]] for i in range(250 * n) for j in range(100)],
    }


def wrap(data):
    return {"kind": "frames", "frames": [["job", 3, {"data": data, "i": 7}, {}]], "globals": {}, "progress": None}


HEADER = envelope.Header(envelope.source_hash("x"), "job", 1, envelope.RUNTIME_VERSION, codec.NAME, 0, None)


HEADER2 = HEADER._replace(codec=codec.NAME2)


def measure(state, runs):
    freeze, thaw = [], []
    for _ in range(runs):
        t0 = time.perf_counter()
        env = envelope.make_envelope(HEADER, codec.encode(state, CLASSES))
        t1 = time.perf_counter()
        _, payload = envelope.open_envelope(env, "x")
        back = codec.decode(payload, CLASSES)
        t2 = time.perf_counter()
        freeze.append(t1 - t0)
        thaw.append(t2 - t1)
    assert codec.encode(back, CLASSES) == codec.encode(state, CLASSES)
    return len(env), statistics.median(freeze), statistics.median(thaw)


def codec_at(rev):
    """The codec module as it was at git revision ``rev`` (the envelope is this tree's)."""
    root = os.path.join(os.path.dirname(__file__), "..", "..")
    text = subprocess.check_output(["git", "-C", root, "show", "%s:market/tasklet/codec.py" % rev])
    path = os.path.join(tempfile.mkdtemp(), "codec_%s.py" % rev.replace("/", "_")[:12])
    with open(path, "wb") as f:
        f.write(text)
    spec = importlib.util.spec_from_file_location("codec_at_rev", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compare(other, rev, runs):
    """Freeze (encode + envelope) and thaw (open + decode), CPU ms, best of ``runs``, both codecs
    alternating; the bytes must be equal."""
    print("%-18s %8s | %-25s | %-25s" % ("", "", "at %s" % rev, "this tree"))
    print("%-18s %8s | %12s %12s | %12s %12s" % ("shape", "MB", "freeze ms", "thaw ms", "freeze ms", "thaw ms"))
    for name, make in shapes().items():
        state = wrap(make())
        best = {}
        for _ in range(runs):
            for mod in (other, codec):
                t0 = time.process_time()
                env = envelope.make_envelope(HEADER, mod.encode(state, CLASSES))
                t1 = time.process_time()
                _, payload = envelope.open_envelope(env, "x")
                mod.decode(payload, CLASSES)
                t2 = time.process_time()
                f, t = best.get(mod, (1e9, 1e9))
                best[mod] = (min(f, t1 - t0), min(t, t2 - t1))
        assert other.encode(state, CLASSES) == codec.encode(state, CLASSES), name
        (of, ot), (nf, nt) = best[other], best[codec]
        print(
            "%-18s %8.2f | %12.1f %12.1f | %12.1f %12.1f"
            % (name, len(env) / 1e6, of * 1000, ot * 1000, nf * 1000, nt * 1000)
        )


def versions(runs):
    """Version 1 and version 2 of this tree, alternating in the same process: freeze (encode +
    envelope) and thaw (open + decode), CPU ms, best of ``runs``. The thawed values must encode
    to the same version 1 bytes as the original."""
    print("%-18s | %-28s | %-28s | %6s" % ("", "version 1 (mkt-bin-1)", "version 2 (mkt-bin-2)", ""))
    print(
        "%-18s | %5s %7s %6s %7s | %5s %7s %6s %7s | %6s"
        % ("shape", "MB", "freeze", "thaw", "sum", "MB", "freeze", "thaw", "sum", "v2/v1")
    )
    for name, make in shapes().items():
        state = wrap(make())
        best = {}
        sizes = {}
        for _ in range(runs):
            for version, header in ((codec.VERSION, HEADER), (codec.VERSION2, HEADER2)):
                t0 = time.process_time()
                env = envelope.make_envelope(header, codec.encode(state, CLASSES, version=version))
                t1 = time.process_time()
                _, payload = envelope.open_envelope(env, "x")
                back = codec.decode(payload, CLASSES)
                t2 = time.process_time()
                f, t = best.get(version, (1e9, 1e9))
                best[version] = (min(f, t1 - t0), min(t, t2 - t1))
                sizes[version] = len(env)
        assert codec.encode(back, CLASSES) == codec.encode(state, CLASSES), name
        (f1, t1), (f2, t2) = best[codec.VERSION], best[codec.VERSION2]
        print(
            "%-18s | %5.2f %7.1f %6.1f %7.1f | %5.2f %7.1f %6.1f %7.1f | %6.2f"
            % (
                name,
                sizes[codec.VERSION] / 1e6,
                f1 * 1000,
                t1 * 1000,
                (f1 + t1) * 1000,
                sizes[codec.VERSION2] / 1e6,
                f2 * 1000,
                t2 * 1000,
                (f2 + t2) * 1000,
                (f2 + t2) / (f1 + t1),
            )
        )


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--big", action="store_true", help="also a 64 MB state")
    parser.add_argument("--against", metavar="REV", help="also the codec at this git revision")
    opts = parser.parse_args(argv)
    print(
        "%s %s, load average %.2f at start, median of %d"
        % (platform.python_implementation(), platform.python_version(), os.getloadavg()[0], opts.runs)
    )
    print("%-18s %8s %10s %10s %10s" % ("shape", "MB", "freeze ms", "thaw ms", "both ms"))
    for name, make in shapes().items():
        size, f, t = measure(wrap(make()), opts.runs)
        print("%-18s %8.2f %10.1f %10.1f %10.1f" % (name, size / 1e6, f * 1000, t * 1000, (f + t) * 1000))
    versions(opts.runs)
    if opts.against:
        compare(codec_at(opts.against), opts.against, opts.runs)
    if opts.big:
        data = {name: make() for name, make in shapes(8).items()}
        size, f, t = measure(wrap(data), max(1, opts.runs // 3))
        print("%-18s %8.2f %10.1f %10.1f %10.1f" % ("64 MB mix", size / 1e6, f * 1000, t * 1000, (f + t) * 1000))
    print("load average %.2f at end" % os.getloadavg()[0])


if __name__ == "__main__":
    main()
