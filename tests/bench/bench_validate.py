"""Time of market.tasklet.validator.check_module on a large module (1,800 defs, ~200 kB): the validator
runs on every submission, on a stranger's module.

    python tests/bench/bench_validate.py [REPO ...]   # each REPO's market package, e.g. /work/main
"""

import subprocess
import sys
import time

CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from market.tasklet import validator
parts = ["import re\\nP = re.compile('a')\\n"]
for i in range(900):
    parts.append("class C%d:\\n    def m%d(self, x):\\n        return [x]\\n" % (i, i))
    parts.append(
        "def f%d(xs):\\n    out = []\\n    for x in xs:\\n        out.append(f%d(x) if x else x)\\n"
        "        d = {}\\n        d.setdefault(x, []).append(P.search('a') and 1)\\n    return out\\n"
        % (i, max(i - 1, 0))
    )
src = "".join(parts)
best = 9e9
for _ in range(5):
    t = time.perf_counter()
    validator.check_module(src, "f1")
    best = min(best, time.perf_counter() - t)
print("%s: %d lines, %d bytes, check_module best of 5: %.3f s" % (sys.argv[1], src.count("\\n"), len(src), best))
"""


def main(repos):
    for repo in repos or ["."]:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", CHILD, repo], check=True, cwd="/")
        print("  (%.1f s wall)" % (time.perf_counter() - t))


if __name__ == "__main__":
    main(sys.argv[1:])
