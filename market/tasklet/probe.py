"""The speed-test job: a cubic nested loop whose answer the server knows.

Speed is probe operations (inner-loop iterations, ``size ** 3``) per second.
The expected answer is computed in closed form, so the server checks a
worker's result without running any job code.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from typing import List


__all__ = ["PROBE_SOURCE", "PROBE_ENTRY", "probe_arguments", "probe_expected", "probe_operations"]

PROBE_ENTRY = "probe"
PROBE_SOURCE = '''\
def probe(n):
    """Sum of (i*j + k) % 7 over i, j, k in range(n): n**3 operations."""
    total = 0
    for i in range(n):
        for j in range(n):
            for k in range(n):
                total += (i * j + k) % 7
    return total
'''


def probe_arguments(size: int) -> List[int]:
    """Positional arguments of the probe job for ``size``."""
    return [int(size)]


def probe_operations(size: int) -> int:
    """Inner-loop iterations the probe job performs."""
    return int(size) ** 3


def probe_expected(size: int) -> int:
    """The probe's result, in O(1) arithmetic on residues mod 7."""
    n = int(size)
    if n <= 0:
        return 0
    # how many of range(n) fall in each residue class mod 7
    per = [n // 7 + (1 if r < n % 7 else 0) for r in range(7)]
    # for a fixed r = i*j mod 7: sum over k of (r + k) % 7
    full, part = divmod(n, 7)
    inner = [full * 21 + sum((r + k) % 7 for k in range(part)) for r in range(7)]
    return sum(per[a] * per[b] * inner[(a * b) % 7] for a in range(7) for b in range(7))
