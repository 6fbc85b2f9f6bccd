"""A scripted dishonest worker: a real client id and token speaking XML-RPC to a real market.

It asks for work like any worker, then checks in what a cheat would: the leased state itself, a
state of another job, an old state, a header rewritten over an unchanged payload, an envelope of
the older format. It can also behave: :meth:`Cheater.honest_state` runs the leased state with the
real job runtime (what an honest worker's sandbox runs) and :meth:`Cheater.finish` runs a job to
its end that way.
"""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from market import tasklet
from market.rpc.client import blocking
from market.tasklet import envelope


@dataclass
class Lease:
    """What ``request`` answered with work."""

    stateid: int
    job: int
    state: bytes
    module: str
    entry: str
    seq: int
    slice: float

    @classmethod
    def of(cls, answer: dict[str, Any]) -> Lease:
        return cls(
            answer["stateid"],
            answer["job"],
            bytes(answer["state"].data),
            answer["module"],
            answer["entry"],
            answer["seq"],
            answer["slice"],
        )


class Cheater:
    """One client of the market, with its id and token."""

    def __init__(self, url: str, client_id: int, token: str) -> None:
        self.client_id = client_id
        self.rpc = blocking(url, f"client/{client_id}", token)

    def lease(self, slice_seconds: float = 2.0, timeout: float = 15.0) -> Lease:
        """Ask for work until the market gives some."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.rpc.request(self.client_id, slice_seconds)
            if answer["status"] == "work":
                assert answer["kind"] == "job", answer
                return Lease.of(answer)
            time.sleep(min(0.2, answer["retry_after"]))
        raise AssertionError(f"no work within {timeout} s")

    def check_in(self, lease: Lease, state: bytes) -> dict[str, Any]:
        return self.rpc.state(lease.stateid, xmlrpc.client.Binary(state))

    def alive(self, lease: Lease) -> bool:
        return bool(self.rpc.alive(lease.stateid))

    @staticmethod
    def honest_state(lease: Lease, budget: int = 50) -> bytes:
        """The state an honest slice of ``budget`` back-edges makes from the leased state."""
        out = tasklet.run_slice(lease.state, lease.module, 30.0, budget=budget, job_id=lease.job)
        assert not out.finished and out.envelope is not None, out
        return out.envelope

    # -- the cheats ----------------------------------------------------------------------------

    @staticmethod
    def rewritten(lease: Lease, payload_from: bytes) -> bytes:
        """A header bound to the lease (its job, the leased state as parent, the next seq) over the
        payload of ``payload_from``, unchanged."""
        header = envelope.read_header(payload_from)
        hlen = int.from_bytes(payload_from[6:10], "big")
        payload = payload_from[10 + hlen : -32]
        bound = header._replace(job_id=lease.job, parent=envelope.digest(lease.state), seq=lease.seq + 1)
        return envelope.make_envelope(bound, payload)

    @staticmethod
    def as_v1(state: bytes) -> bytes:
        """The same state in the envelope format of workers before issue 17."""
        import hashlib
        import json
        import struct

        header = envelope.read_header(state)
        fields = {k: v for k, v in header._asdict().items() if k not in ("parent", "interpreter")}
        hlen = struct.unpack(">I", state[6:10])[0]
        payload = state[10 + hlen : -32]  # prefix (magic, version, header length), header, digest
        raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
        body = struct.pack(">4sHI", b"MKTS", 1, len(raw)) + raw + payload
        return body + hashlib.sha256(body).digest()

    def finish(self, job_id: int, timeout: float = 30.0) -> Any:
        """Run the job honestly to its end (lease after lease, the real runtime); its result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lease = self.lease()
            assert lease.job == job_id, (lease.job, job_id)
            out = tasklet.run_slice(lease.state, lease.module, 30.0, budget=100_000, job_id=lease.job)
            if out.finished:
                assert out.error is None, out.error
                answer = self.rpc.result(lease.stateid, xmlrpc.client.Binary(out.result))
                assert answer["status"] == "finished", answer
                return tasklet.decode_result(out.result)
            assert self.check_in(lease, out.envelope)["status"] == "accepted"
        raise AssertionError(f"job {job_id} did not finish in {timeout} s")


# the job both trust suites run: its result is known (sum of i*i below n), and a while loop
# gives a back-edge per step, so a few hundred steps already make several slices
SUM_OF_SQUARES = """def main(n):
    total = 0
    i = 0
    while i < n:
        total += i * i
        i += 1
    return total
"""
