"""A scripted verifier: a real client id and token that opts in to verify (``request`` with
``info {verify: true, interpreter}``) and answers replay leases through ``state``/``result``,
speaking XML-RPC to a real ``twistd market``.

The replay engine (``market.tasklet.replay_slice``) is built beside this work, so the honest
verifier replays with what exists: it runs the leased parent state forward with the job runtime's
budget mode one back-edge count after another (``run_slice(budget=k)``, k = 1, 2, ...) until the
payload hash equals the target — the same states a budget-mode replay passes — or it reaches its
cap, and sends what it reached (saying so when it hit the cap). A lying verifier sends something
else. Neither is ever given S'.
"""

from __future__ import annotations

import time
import xmlrpc.client
from dataclasses import dataclass
from typing import Any

from market import tasklet
from market.rpc.client import blocking
from market.tasklet import envelope

CAP = 400  # back-edges the scripted replay tries (the tests' jobs are a few hundred long)


@dataclass
class ReplayLease:
    stateid: int
    job: int
    state: bytes
    module: str
    replay: dict[str, Any]

    @property
    def is_result(self) -> bool:
        return bool(self.replay.get("result"))


class Verifier:
    """One opted-in client of the market."""

    def __init__(self, url: str, client_id: int, token: str, interpreter: str = envelope.INTERPRETER) -> None:
        self.client_id = client_id
        self.interpreter = interpreter
        self.rpc = blocking(url, f"client/{client_id}", token)

    def request(self) -> dict[str, Any]:
        return self.rpc.request(self.client_id, 2.0, {"verify": True, "interpreter": self.interpreter})

    def replay_lease(self, timeout: float = 10.0) -> ReplayLease:
        """Ask until the market hands out a replay lease (the test makes sure a check waits)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.request()
            if answer["status"] == "work":
                assert "replay" in answer, f"a normal lease, not a replay: {answer}"
                assert answer["kind"] == "job"
                return ReplayLease(
                    answer["stateid"], answer["job"], bytes(answer["state"].data), answer["module"], answer["replay"]
                )
            time.sleep(0.1)
        raise AssertionError(f"no replay lease within {timeout} s")

    # -- answers -------------------------------------------------------------------------------
    def honest(self, lease: ReplayLease) -> dict[str, Any]:
        """Replay honestly and send what was reached: the matching state, the state at the cap,
        or the job's result if it finished first."""
        kind, data = replay(lease)
        if kind == "result":
            return self.rpc.result(lease.stateid, xmlrpc.client.Binary(data))
        if kind == "capped":  # as the real worker does: a cap hit is no other state (docs/trust.md)
            return self.rpc.state(lease.stateid, xmlrpc.client.Binary(data), {"status": "ok", "replay": "capped"})
        return self.rpc.state(lease.stateid, xmlrpc.client.Binary(data))

    def lie(self, lease: ReplayLease) -> dict[str, Any]:
        """Send something the replay did not reach."""
        if lease.is_result:
            return self.rpc.result(lease.stateid, xmlrpc.client.Binary(b"made up"))
        out = tasklet.run_slice(lease.state, lease.module, 30.0, budget=1, job_id=lease.job)
        assert out.envelope is not None
        return self.rpc.state(lease.stateid, xmlrpc.client.Binary(out.envelope))


def replay(lease: ReplayLease) -> tuple[str, bytes]:
    """('state', bytes), ('result', bytes) or ('capped', the state at the cap): what an honest
    replay of ``lease`` reaches."""
    if lease.is_result:
        out = tasklet.run_slice(lease.state, lease.module, 60.0, budget=10_000_000, job_id=lease.job)
        assert out.finished and out.result is not None, out
        return "result", out.result
    target = lease.replay["target"]
    last = lease.state
    for k in range(1, CAP + 1):
        out = tasklet.run_slice(lease.state, lease.module, 30.0, budget=k, job_id=lease.job)
        if out.finished:
            assert out.result is not None
            return "result", out.result
        assert out.envelope is not None
        last = out.envelope
        if envelope.payload_sha256(last) == target:
            return "state", last
    return "capped", last
