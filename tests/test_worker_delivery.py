"""The worker keeps finished work: a check-in answered with Fault 9 (the market's database is briefly
unavailable) is retried like a lost connection, until the lease's deadline; a slice that never froze
is reported as 'nofreeze' with the job's line, and as 'timeout' to a market that does not know it."""

from __future__ import annotations

import xmlrpc.client

from twisted.internet import defer, error, task

from market.worker.service import WorkerService
from market.worker.slices import FREEZE_GRACE, SliceReport, nofreeze_message


class FakeRPC:
    """Answers each call with the next of ``answers``: an exception instance to raise, or a value."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def call(self, method, *args, timeout=None):
        self.calls.append((method, *args))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def worker(answers):
    clock = task.Clock()
    service = WorkerService(server="http://127.0.0.1:1/RPC2", client_id=1, token="t", reactor=clock)
    service.rpc = FakeRPC(answers)
    return service, clock


FAULT9 = xmlrpc.client.Fault(9, "database error on sqlite:x: database is locked")
DONE = {"status": "accepted"}


def test_a_check_in_answered_fault_9_is_retried_until_it_is_delivered():
    service, clock = worker([FAULT9, FAULT9, DONE])
    d = service.report(7, SliceReport("ok", envelope=b"env", progress=0.5), local_deadline=60.0)
    clock.advance(0.5)
    clock.advance(1.0)
    assert d.called and d.result == DONE
    assert [c[0] for c in service.rpc.calls] == ["state"] * 3


def test_a_result_answered_fault_9_is_retried_like_a_lost_connection():
    service, clock = worker([error.ConnectionRefusedError(), FAULT9, DONE])
    d = service.report(7, SliceReport("finished", result=b"r"), local_deadline=60.0)
    clock.pump([0.5, 1.0])
    assert d.result == DONE and [c[0] for c in service.rpc.calls] == ["result"] * 3


def test_delivery_gives_up_at_the_leases_deadline():
    service, clock = worker([FAULT9] * 20)
    d = service.report(7, SliceReport("ok", envelope=b"env"), local_deadline=4.0)
    clock.pump([0.5] * 20)
    assert d.called and d.result is None
    # 0 s, 0.5 s, 1.5 s, 3.5 s: the next try (at 7.5 s) would be after the deadline
    assert len(service.rpc.calls) == 4


def test_other_faults_are_not_retried():
    service, clock = worker([xmlrpc.client.Fault(4, "no checked-out state 7")])
    d = service.report(7, SliceReport("ok", envelope=b"env"), local_deadline=60.0)
    assert d.called and d.result is None and len(service.rpc.calls) == 1


def test_nofreeze_is_reported_as_a_failure_and_as_timeout_to_a_market_that_refuses_it():
    service, clock = worker([xmlrpc.client.Fault(1, "status must be one of ok, timeout"), DONE])
    d = service.report(7, SliceReport("nofreeze", message="stuck"), local_deadline=60.0)
    assert d.result == DONE
    assert service.rpc.calls == [("fail", 7, "nofreeze", "stuck"), ("fail", 7, "timeout", "stuck")]


SOURCE = "def work(n):\n    total = 0\n    for i in range(3):\n        total += sum(range(n))\n    return total\n"
DUMP = b"""job output\nTimeout (0:00:04)!
Thread 0x00007fc06b271b80 (most recent call first):
  File "<job>", line 4 in work
  File "/opt/market/market/tasklet/runner.py", line 394 in run_slice
"""


def test_the_nofreeze_message_names_the_jobs_line_and_what_to_do():
    message = nofreeze_message(DUMP, SOURCE, 2.0)
    assert f"within its slice of 2 s (and {FREEZE_GRACE:g} s more)" in message
    assert "line 4 in work(): total += sum(range(n))" in message
    assert "split long built-in calls" in message


def test_without_a_stack_dump_the_message_still_says_what_to_do():
    message = nofreeze_message(b"", SOURCE, 2.0)
    assert "line" not in message.split(".")[1] and "split long built-in calls" in message


def test_the_workers_own_limits_are_its_options():
    import pytest
    from twisted.python import usage

    from market.worker.tap import Options

    options = Options()
    options.parseOptions(["--client", "1", "--token", "t", "--memory", "300", "--slice", "5", "--disk", "40"])
    caps = options.caps
    assert (caps.memory_mb, caps.seconds, caps.disk_mb, caps.output_bytes) == (300, 5.0, 40, 48 << 20)
    with pytest.raises(usage.UsageError, match="--disk: disk_mb must be at least 1"):
        Options().parseOptions(["--client", "1", "--token", "t", "--disk", "0"])


def test_a_replay_that_hit_its_cap_says_so_in_the_state_info_and_a_match_or_a_slice_does_not():
    service, _ = worker([DONE, DONE, DONE])
    capped = SliceReport("ok", envelope=b"env", stats={"replay": True, "matched": False, "steps": 250})
    service.report(7, capped, local_deadline=60.0)
    matched = SliceReport("ok", envelope=b"env", stats={"replay": True, "matched": True, "steps": 90})
    service.report(8, matched, local_deadline=60.0)
    service.report(9, SliceReport("ok", envelope=b"env", progress=0.5), local_deadline=60.0)
    infos = [c[3] for c in service.rpc.calls]
    assert infos[0]["replay"] == "capped"
    assert "replay" not in infos[1] and "replay" not in infos[2]


def test_a_state_over_one_chunk_goes_by_chunks_to_a_market_that_takes_them():
    envelope = bytes(range(256)) * 4096 * 2 + b"tail"  # 2 MiB and 4 bytes: three chunks
    service, clock = worker([{"status": "ok"}] * 3 + [DONE])
    d = service.report(7, SliceReport("ok", envelope=envelope, progress=0.5), 60.0, chunks_ok=True)
    assert d.result == DONE
    puts = [c for c in service.rpc.calls if c[0] == "state_put"]
    assert [(c[1], c[2]) for c in puts] == [(7, 0), (7, 1), (7, 2)]
    assert b"".join(c[3].data for c in puts) == envelope and len(puts[0][3].data) == 1024 * 1024
    method, stateid, empty, info = service.rpc.calls[-1]
    assert (method, stateid, empty.data) == ("state", 7, b"")
    assert info["chunks"] == 3 and info["size"] == len(envelope) and info["progress"] == 0.5


def test_a_state_over_one_chunk_goes_whole_to_an_older_market():
    envelope = b"x" * (1024 * 1024 + 1)
    service, clock = worker([DONE])
    d = service.report(7, SliceReport("ok", envelope=envelope), 60.0, chunks_ok=False)
    assert d.result == DONE and [c[0] for c in service.rpc.calls] == ["state"]
    assert service.rpc.calls[0][2].data == envelope


def test_a_state_over_the_markets_limit_fails_the_slice_so_the_job_is_not_leased_forever():
    too_large = xmlrpc.client.Fault(8, "chunk 256 is past this market's max-state-size (256 MiB)")
    service, clock = worker([{"status": "ok"}, too_large, {"status": "rejected"}])
    d = service.report(7, SliceReport("ok", envelope=b"y" * (3 * 1024 * 1024)), 60.0, chunks_ok=True)
    assert d.result == {"status": "rejected"}
    assert [c[0] for c in service.rpc.calls] == ["state_put", "state_put", "fail"]
    assert service.rpc.calls[-1][1:3] == (7, "refused") and "max-state-size" in service.rpc.calls[-1][3]


def test_a_state_fetched_by_chunks_is_checked_against_its_announced_size():
    chunk = xmlrpc.client.Binary(b"z" * (1024 * 1024))
    service, clock = worker([chunk, xmlrpc.client.Binary(b"end")])
    d = service.fetch_state(7, 2, 1024 * 1024 + 3)
    assert d.result == b"z" * (1024 * 1024) + b"end"
    service, clock = worker([chunk, chunk])  # the market sends more than it announced
    d = service.fetch_state(7, 2, 1024 * 1024 + 3)
    failure = []
    d.addErrback(failure.append)
    assert failure and "more than" in str(failure[0].value)


def test_a_state_that_cannot_be_fetched_gives_the_lease_back_without_a_strike():
    service, clock = worker([error.ConnectionRefusedError(), {"status": "rejected"}])
    lease = {"stateid": 7, "job": 3, "state": xmlrpc.client.Binary(b""), "state_chunks": 2, "state_size": 2_000_000}
    lease.update(module="def main():\n    return 1\n", timeout=30.0, slice=10.0)
    d = service.run_lease(lease)
    assert d.called
    assert service.rpc.calls[0] == ("state_get", 7, 0)
    method, stateid, status, message = service.rpc.calls[1]
    assert (method, stateid, status) == ("fail", 7, "abort") and "could not be fetched" in message
