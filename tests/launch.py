"""Run ``twistd`` or ``market`` with cheap password hashes (tests only).

    python -m tests.launch twistd -n market --db URL ...
    python -m tests.launch market account create alice ...

The product has no switch that weakens password hashing; the tests start their server, worker and
command-line processes through this launcher, which installs tests/cheaphashes.py in the process
and then runs the real entry point with the remaining arguments.
"""

from __future__ import annotations

import sys

USAGE = "usage: python -m tests.launch twistd|market ARGUMENTS..."


def main(argv: list[str]) -> int:
    from tests.cheaphashes import install

    if not argv or argv[0] not in ("twistd", "market"):
        print(USAGE, file=sys.stderr)
        return 2
    install()
    command, rest = argv[0], argv[1:]
    if command == "twistd":
        from twisted.scripts.twistd import run

        sys.argv = ["twistd", *rest]
        run()
        return 0
    from market.cli import main as market

    return market(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
