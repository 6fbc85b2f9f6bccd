"""The offload attacks (tests/hostile/attacks_offload.py) for longer, each on a fresh market.

    python tests/bench/bench_offload.py [--seconds 30] [--only bomb,rpc,web,probe]

Prints each attack's figures: what the attacker got, the bystander's worst and p99 answer time, a
member's writes, the market's peak memory and the largest helper's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def main() -> int:
    from tests import cheaphashes
    from tests.hostile import attacks_offload as attacks
    from tests.hostile.support import start_market

    cheaphashes.install()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", default="bomb,rpc,web,probe")
    args = parser.parse_args()
    runs = {
        "bomb": lambda h: attacks.attack_result_bomb(h, args.seconds, h.web_port),
        "rpc": lambda h: attacks.attack_module_over_rpc(h, args.seconds),
        "web": lambda h: attacks.attack_module_over_web(h, args.seconds, h.web_port),
        "probe": lambda h: attacks.attack_hash_flooded_probe(h, args.seconds),
    }
    for name in args.only.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            web_port = attacks.new_web_port()
            hostile = start_market(Path(tmp), *attacks.market_options(web_port))
            hostile.web_port = web_port
            try:
                print(runs[name](hostile).summary(), flush=True)
            finally:
                hostile.market.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
