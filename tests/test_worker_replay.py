"""A real sandboxed ``twistd worker`` runs replay leases (verification by replay, the worker's side).

The market here is a small scripted XML-RPC server in the test (the end-to-end with the real
``twistd market`` belongs to the market's side): it hands out a slice replay, a result replay and
a replay for another interpreter, and records what the worker sends back.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import xmlrpc.client
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

import pytest

from market import tasklet
from market.tasklet import envelope, slicemain
from tests.servers import Worker, stop_all
from tests.support import need_program
from tests.test_tasklet_portability import REPO

JOB_PYTHON = "/usr/bin/python3"
SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []
SOURCE = """
def work(n):
    seen = set()
    total = 0
    for i in range(n):
        w = "k%d" % (i % 37)
        seen.add(w)
        for j in range(i % 5):
            total = (total * 31 + j + len(seen)) % 1000003
    return total, sorted(seen)
"""


def honest(state: bytes, budget=None) -> slicemain.SliceOutcome:
    """One slice on the worker's job interpreter, as an honest worker's sandbox runs it."""
    proc = subprocess.run(
        [
            JOB_PYTHON,
            "-I",
            "-c",
            "import sys; sys.path.insert(0, %r); from market.tasklet.slicemain import main;"
            " sys.exit(main())" % str(REPO),
        ],
        input=slicemain.encode_request(state, SOURCE, 60.0, budget, 77),
        capture_output=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return slicemain.decode_response(proc.stdout)


class Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)

    def log_message(self, *args):
        pass


class ScriptedMarket:
    """Answers ``request`` with the next lease of ``leases`` (then "no work"); records check-ins."""

    def __init__(self, leases):
        self.leases = list(leases)
        self.infos: list = []
        self.checkins: list = []
        self.server = SimpleXMLRPCServer(("127.0.0.1", 0), Handler, allow_none=True, logRequests=False)
        for name in ("request", "state", "result", "fail"):
            self.server.register_function(getattr(self, name), name)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d/RPC2" % self.server.server_address[1]

    def request(self, clientid, slice_, info=None):
        self.infos.append(info)
        if not self.leases:
            return {"status": "wait", "retry_after": 30.0}
        lease = dict(self.leases.pop(0))
        lease["state"] = xmlrpc.client.Binary(lease["state"])
        lease["deadline"] = time.time() + lease["timeout"]
        return lease

    def state(self, stateid, data, meta=None):
        self.checkins.append(("state", stateid, data.data, meta))
        return {"status": "accepted", "verified": True}

    def result(self, stateid, data, meta=None):
        self.checkins.append(("result", stateid, data.data if data is not None else None, meta))
        return {"status": "accepted", "verified": True}

    def fail(self, stateid, status, message=""):
        self.checkins.append(("fail", stateid, status, message))
        return {"status": "failed"}


def lease(stateid, state, replay):
    return {
        "status": "work",
        "stateid": stateid,
        "job": 77,
        "kind": "job",
        "state": state,
        "module": SOURCE,
        "entry": "work",
        "spec": "",
        "seq": tasklet.read_header(state).seq,
        "slice": 5.0,
        "timeout": 60.0,
        "replay": replay,
    }


@pytest.fixture
def processes():
    running = []
    yield running
    stop_all(running)


def test_a_sandboxed_worker_replays_a_slice_and_a_result_and_refuses_another_interpreter(tmp_path, processes):
    need_program("bwrap")
    s0 = tasklet.start(SOURCE, "work", [3000], {}, job_id=77)
    s = honest(s0, budget=40).envelope
    target = honest(s, budget=700).envelope  # S' of an honest worker: not given to the verifier
    header, sha = envelope.inspect(target)
    final = honest(s)  # the job's end from S
    assert final.finished
    foreign = "pypy-3.9" + header.mark[header.mark.index(":") :]
    market = ScriptedMarket(
        [
            lease(1, s, {"target": sha, "mark": header.mark, "steps": 900}),
            lease(2, s, {"result": True, "steps": 10**7}),
            lease(3, s, {"target": sha, "mark": foreign, "steps": 900}),
        ]
    )
    market.thread.start()
    try:
        w = Worker(market.url, 5, "token", str(tmp_path), "--slice", "5", *SANDBOX_USER).start()
        processes.append(w)
        deadline = time.time() + 90
        while len(market.checkins) < 3 and time.time() < deadline:
            time.sleep(0.1)
        assert len(market.checkins) == 3, w.logtext()[-3000:]
    finally:
        market.server.shutdown()
    assert market.infos[0]["verify"] is True
    assert market.infos[0]["interpreter"] == header.interpreter  # the worker's job interpreter, as states name it
    (kind1, id1, reached, _), (kind2, id2, result, meta2), (kind3, id3, status, message) = market.checkins
    assert (kind1, id1) == ("state", 1)
    assert envelope.payload_sha256(reached) == sha  # the state it reached is S', found without S'
    rh = tasklet.read_header(reached)
    assert rh.parent == envelope.digest(s) and rh.seq == header.seq and rh.job_id == 77
    assert (kind2, id2) == ("result", 2) and result == final.result and meta2["outcome"] == "finished"
    assert (kind3, id3, status) == ("fail", 3, "refused")
    assert "pypy-3.9" in message and "cpython-3." in message
    assert "replay matched after 700 steps; the market says verified=True" in w.logtext()


def test_a_worker_started_with_no_verify_does_not_offer_to_verify(tmp_path, processes):
    need_program("bwrap")
    market = ScriptedMarket([])
    market.thread.start()
    try:
        w = Worker(market.url, 5, "token", str(tmp_path), "--slice", "5", "--no-verify", *SANDBOX_USER).start()
        processes.append(w)
        deadline = time.time() + 60
        while not market.infos and time.time() < deadline:
            time.sleep(0.1)
    finally:
        market.server.shutdown()
    assert market.infos and "verify" not in market.infos[0] and "interpreter" not in market.infos[0]
