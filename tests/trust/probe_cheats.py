"""A dishonest worker's ways with probes, scripted: a real client id and token speaking XML-RPC
directly to a real ``twistd market``, answering the work it is given without (all of) the work.

A cheater cannot tell a probe from a job by the lease (``kind`` is ``job``), so each cheat below
answers whatever lease it got; the market's answer says what it made of it (``speed`` or
``suspect``).
"""

from __future__ import annotations

import random
import xmlrpc.client
from typing import Any

from market import tasklet
from market.dispatch import prober
from market.rpc.client import blocking


class CheatingClient:
    """A client that asks for work and answers it as told."""

    def __init__(self, url: str, client_id: int, token: str):
        self.client_id = client_id
        self.rpc = blocking(url, f"client/{client_id}", token)

    def lease(self, slice_seconds: float = 10) -> dict[str, Any]:
        return self.rpc.request(self.client_id, slice_seconds)

    def answer(self, lease: dict[str, Any], result: bytes) -> dict[str, Any]:
        return self.rpc.result(lease["stateid"], xmlrpc.client.Binary(result))


def run_honestly(lease: dict[str, Any]) -> bytes:
    """The lease's job run to its end in this process (what an honest worker computes)."""
    envelope = lease["state"].data
    while True:
        out = tasklet.run_slice(envelope, lease["module"], 5.0)
        if out.finished:
            return out.result
        envelope = out.envelope


def guess(lease: dict[str, Any]) -> bytes:
    """Answer at once: as many values as an answer has, made up."""
    rng = random.Random(lease["stateid"])
    return tasklet.codec.encode([rng.randrange(prober.MODULUS) for _ in range(prober.CHECKPOINTS)])


def short_segments(lease: dict[str, Any], fraction: float = 0.1) -> bytes:
    """Run the probe's own program, but only ``fraction`` of each segment's steps: an answer of
    the right shape in a tenth of the time (read from the source, as a cheater would)."""
    import ast

    tree = ast.parse(lease["module"])
    function = tree.body[0]
    assert isinstance(function, ast.FunctionDef)
    constants = [n for n in ast.walk(function) if isinstance(n, ast.Constant) and type(n.value) is int]
    numbers = [n.value for n in sorted(constants, key=lambda n: (n.lineno, n.col_offset))]
    seed, shift, mul, add, modulus = numbers[:5]
    _, outer, inner = lease_arguments(lease)
    x, values = seed, []
    for _ in range(outer):
        for _ in range(max(1, int(inner * fraction))):
            x = ((x ^ (x >> shift)) * mul + add) % modulus
        values.append(x)
    return tasklet.codec.encode(values)


def lease_arguments(lease: dict[str, Any]) -> tuple[str, int, int]:
    """(entry, outer, inner) of a probe-shaped lease, read out of state #0: it is plain data."""
    _, payload = tasklet.open_envelope(lease["state"].data, lease["module"])
    outer, inner = tasklet.decode_result(payload)["args"]
    return lease["entry"], outer, inner
