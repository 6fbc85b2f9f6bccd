"""Issue 17, item 5, against a real ``twistd market``: verification by replay.

Workers and verifiers are real clients of different owners speaking XML-RPC
(tests/trust/cheater.py, tests/trust/verifier.py). A cheating worker skips steps under a rewritten
header, or forges a result; a lying verifier answers a replay with something it did not reach.
Each time a third worker of a third owner decides: the loser is suspect, its unverified payments
for the job are reversed by new ledger entries, a cheated job goes back to its last verified state
and finishes exact, and ``market db audit`` stays clean. A result reads "unverified" until a
replay agrees, and a forged result is never shown as final. A market with no independent worker
delivers results unverified, with the reason, after ``verify-wait``.
"""

from __future__ import annotations

import os
import time
import xmlrpc.client
from dataclasses import dataclass

import pytest
from lxml import etree

from market import report, tasklet
from market.core import verification
from market.store import accounts as sql
from market.store import clients as csql
from market.store import jobs as jsql
from quote import cli as quote_cli
from tests import marketdata as md
from tests.hostile.support import HostileMarket, start_market
from tests.servers import Worker
from tests.test_cli import bare_market
from tests.trust.cheater import SUM_OF_SQUARES, Cheater, Lease
from tests.trust.verifier import Verifier

SOURCE = SUM_OF_SQUARES
N = 300
EXPECTED = sum(i * i for i in range(N))
SANDBOX_USER = ["--user", "nobody"] if os.geteuid() == 0 else []
PRICE = 1000  # cents per second: a slice of a few hundred ms pays a few credits


@dataclass
class Scene:
    market: HostileMarket
    cheater: Cheater  # client "box" of owner "host"
    honest: Cheater  # an honest worker of owner "alice"
    honest_token: str
    v1: Verifier  # owner "bob"
    v2: Verifier  # owner "carol"


def _client(m: HostileMarket, owner: str) -> tuple[int, str]:
    account_id, _ = md.account(m.db, owner, grant=0)
    return md.client(m.db, account_id, owner + "-box", speed=1000)


@pytest.fixture
def scene(tmp_path):
    m = start_market(
        tmp_path,
        "--window",
        "0.2",
        "--threshold",
        "1",
        "--grace",
        "10",
        "--verify-wait",
        "600",
        "--reap-interval",
        "0.3",
    )
    m.db.transact(csql.record_speed, m.client_id, 1000, 1.0, time.time())
    alice = _client(m, "alice")
    honest = Cheater(m.url, *alice)
    v1 = Verifier(m.url, *_client(m, "bob"))
    carol = _client(m, "carol")
    # carol decides the disputes here: only a trusted worker (not under watch) does (docs/trust.md)
    m.db.transact(
        lambda tx: tx.execute(
            "UPDATE clients SET verified_slices = ? WHERE id = ?", (verification.DEFAULT_WATCH_SLICES, carol[0])
        )
    )
    v2 = Verifier(m.url, *carol)
    yield Scene(m, Cheater(m.url, m.client_id, m.client_token), honest, alice[1], v1, v2)
    m.market.stop()


def checks(m: HostileMarket, job_id: int) -> list[dict]:
    return m.db.transact(lambda tx: tx.all("SELECT * FROM checks WHERE job_id = ? ORDER BY id", (job_id,)))


def open_checks(m: HostileMarket) -> int:
    return m.db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM checks WHERE status IN ('waiting', 'disputed')"))


def suspect(m: HostileMarket, client_id: int) -> bool:
    return bool(m.db.transact(csql.client_by_id, client_id)["suspect"])


def reversals(m: HostileMarket) -> list[dict]:
    return m.db.transact(lambda tx: tx.all("SELECT * FROM ledger WHERE kind = 'reversal' ORDER BY id"))


def member(m: HostileMarket):
    return m.member()


def drain(scene: Scene, verifier: Verifier, max_leases: int = 50) -> int:
    """Let ``verifier`` replay honestly every check waiting that it may take."""
    n = 0
    while open_checks(scene.market) and n < max_leases:
        answer = verifier.request()
        if answer["status"] != "work":
            break
        assert "replay" in answer, answer
        from tests.trust.verifier import ReplayLease

        lease = ReplayLease(
            answer["stateid"], answer["job"], bytes(answer["state"].data), answer["module"], answer["replay"]
        )
        verifier.honest(lease)
        n += 1
    return n


def forged_state(m: HostileMarket, lease: Lease) -> bytes:
    """Steps skipped under a rewritten header: the payload of a state of another job of the same
    module (another argument), bound to this lease's job, parent and sequence number."""
    other = md.job(m.db, m.account_id, 1, "other", source=SOURCE, args=(N + 7,))
    m.db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'cancelled' WHERE id = ?", (other,)))
    state0 = m.db.transact(jsql.committed_state, other)["data"]
    ahead = tasklet.run_slice(bytes(state0), SOURCE, 30.0, budget=40, job_id=other)
    assert ahead.envelope is not None
    return Cheater.rewritten(lease, ahead.envelope)


def test_a_slice_with_skipped_steps_is_caught_reversed_and_the_job_resumes_from_its_last_verified_state(
    scene, tmp_path
):
    m = scene.market
    job = md.job(m.db, m.account_id, PRICE, source=SOURCE, args=(N,))
    # slice 1: honest (it will be verified)
    lease1 = scene.cheater.lease()
    assert scene.cheater.check_in(lease1, Cheater.honest_state(lease1))["status"] == "accepted"
    # slice 2: steps skipped under a rewritten header: accepted and paid for now
    lease2 = scene.cheater.lease()
    time.sleep(0.3)  # some time for the market to pay
    answer = scene.cheater.check_in(lease2, forged_state(m, lease2))
    assert answer["status"] == "accepted" and answer["paid"] > 0
    paid2 = answer["paid"]
    host_before = m.db.transact(sql.balance, m.owner_id)
    # the cheater's worker is under watch: both slices wait for a replay
    assert [c["status"] for c in checks(m, job)] == ["waiting", "waiting"]
    # bob replays slice 1 (agrees), then slice 2 (disagrees: a dispute)
    first = scene.v1.replay_lease()
    assert "target" in first.replay and "mark" in first.replay and first.replay["steps"] > 0
    assert first.state == lease1.state  # the parent S, never S'
    assert scene.v1.honest(first)["verified"] is True
    second = scene.v1.replay_lease()
    assert second.state == lease2.state
    assert scene.v1.honest(second)["verified"] is False
    assert [c["status"] for c in checks(m, job)] == ["agreed", "disputed"]
    # carol, a third owner, decides (bob may not decide his own dispute: core.verification.can_verify)
    third = scene.v2.replay_lease()
    assert third.stateid != second.stateid and third.state == lease2.state
    assert scene.v2.honest(third)["verified"] is False
    assert [c["status"] for c in checks(m, job)] == ["agreed", "decided"]
    # caught: suspect, refused work, slice 2 reversed by a new ledger entry, slice 1 kept
    assert suspect(m, m.client_id)
    with pytest.raises(xmlrpc.client.Fault):
        scene.cheater.rpc.request(m.client_id, 2.0)
    taken = reversals(m)
    assert [r["amount"] for r in taken] == [paid2]
    assert taken[0]["debit_account"] == m.owner_id and taken[0]["credit_account"] == m.account_id
    assert m.db.transact(sql.balance, m.owner_id) == host_before - paid2
    # the job went back to state 1 (the verified one) and finishes exact with an honest worker
    assert m.db.transact(jsql.committed_state, job)["seq"] == 1
    assert m.db.transact(jsql.job_row, job)["status"] == "ready"
    assert scene.honest.finish(job) == EXPECTED
    status = m.member().status(job)
    assert status["verification"] == "unverified"
    drain(scene, scene.v1)
    drain(scene, scene.v2)
    outcome = m.member().outcome(job)
    assert tasklet.decode_result(outcome["result"].data) == EXPECTED
    assert outcome["verification"] == "verified", outcome
    m.assert_serves_and_audits_clean()
    # the report says so (XSD-valid; replay leases marked), and quote still reads it
    path = tmp_path / "report.xml"
    report.write_report(m.db, str(path), "member")
    tree = etree.parse(str(path))
    report.schema().assertValid(tree)
    ns = {"r": "urn:market:report:1"}
    assert tree.xpath(f"/r:report/r:jobs/r:job[@id='{job}']/@verification", namespaces=ns) == ["verified"]
    assert len(tree.xpath("//r:dispatch[@replay='true']", namespaces=ns)) >= 3
    assert quote_cli.main([str(path), "1"]) == 0  # validates against the XSD by default


def test_a_forged_result_is_never_shown_as_final_and_is_reversed(scene, tmp_path):
    m = scene.market
    job = md.job(m.db, m.account_id, PRICE, source=SOURCE, args=(N,))
    lease = scene.cheater.lease()
    time.sleep(0.3)
    answer = scene.cheater.rpc.result(lease.stateid, xmlrpc.client.Binary(tasklet.codec.encode(EXPECTED + 1)))
    assert answer["status"] == "finished"
    outcome = m.member().outcome(job)
    assert outcome["verification"] == "unverified"
    assert m.member().status(job)["verification"] == "unverified"
    replay = scene.v1.replay_lease()
    assert replay.is_result and replay.state == lease.state
    assert scene.v1.honest(replay)["verified"] is False
    decide = scene.v2.replay_lease()
    assert scene.v2.honest(decide)["verified"] is False
    assert suspect(m, m.client_id)
    assert len(reversals(m)) == 1
    row = m.db.transact(jsql.job_row, job)
    assert row["status"] == "ready" and row["result"] is None and row["seq"] == 0
    # a real worker (sandbox, job runtime) of an honest owner runs it again to its end
    worker = Worker(m.url, scene.honest.client_id, scene.honest_token, str(tmp_path), "--slice", "0.5", *SANDBOX_USER)
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while m.db.transact(jsql.job_row, job)["status"] != "finished":
            assert time.monotonic() < deadline, worker.logtext()[-3000:]
            time.sleep(0.2)
    finally:
        worker.stop()
    assert m.member().outcome(job)["verification"] == "unverified"
    drain(scene, scene.v1)
    outcome = m.member().outcome(job)
    assert tasklet.decode_result(outcome["result"].data) == EXPECTED
    assert outcome["verification"] == "verified"
    m.assert_serves_and_audits_clean()


def test_a_lying_verifier_loses_to_the_third_worker_and_the_slice_stands(scene):
    m = scene.market
    job = md.job(m.db, m.account_id, PRICE, source=SOURCE, args=(N,))
    lease = scene.honest.lease()
    assert scene.honest.check_in(lease, Cheater.honest_state(lease))["status"] == "accepted"
    lie = scene.v1.replay_lease()
    time.sleep(0.3)
    answer = scene.v1.lie(lie)
    assert answer["verified"] is False and answer["paid"] > 0
    decide = scene.v2.replay_lease()
    assert scene.v2.honest(decide)["verified"] is True
    assert suspect(m, scene.v1.client_id) and not suspect(m, scene.honest.client_id)
    assert [r["amount"] for r in reversals(m)] == [answer["paid"]]
    assert m.db.transact(jsql.committed_state, job)["seq"] == 1
    verified = m.db.transact(lambda tx: tx.scalar("SELECT verified FROM states WHERE job_id = ? AND seq = 1", (job,)))
    assert verified == 1
    m.assert_serves_and_audits_clean()


def test_a_verifier_never_replays_its_own_owners_work(scene):
    m = scene.market
    md.job(m.db, m.account_id, PRICE, source=SOURCE, args=(N,))
    # a second client of the cheater's owner, opted in
    same_owner = Verifier(m.url, *md.client(m.db, m.owner_id, "box2", speed=1000))
    lease = scene.cheater.lease()
    assert scene.cheater.check_in(lease, Cheater.honest_state(lease))["status"] == "accepted"
    assert open_checks(m) == 1
    answer = same_owner.request()
    assert "replay" not in answer
    if answer["status"] == "work":  # it may get ordinary work: the job itself
        same_owner.rpc.fail(answer["stateid"], "crash", "test")
    assert open_checks(m) == 1


def test_with_no_independent_worker_a_result_is_delivered_unverified_with_the_reason(tmp_path):
    m = start_market(tmp_path, "--window", "0.2", "--threshold", "1", "--verify-wait", "1", "--reap-interval", "0.2")
    try:
        m.db.transact(csql.record_speed, m.client_id, 1000, 1.0, time.time())
        job = md.job(m.db, m.account_id, PRICE, source=SOURCE, args=(N,))
        assert Cheater(m.url, m.client_id, m.client_token).finish(job) == EXPECTED
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and open_checks(m):
            time.sleep(0.2)
        assert open_checks(m) == 0
        outcome = m.member().outcome(job)
        assert tasklet.decode_result(outcome["result"].data) == EXPECTED
        assert outcome["verification"] == "unverified"
        assert "no independent worker" in outcome["verification_reason"]
        # the command line says so too: `market status` in its last column, `market result` on stderr
        where = ("--server", m.url, "--account", "member")
        status = bare_market("status", str(job), *where, MARKET_TOKEN=m.account_token)
        assert status.returncode == 0, status.stderr
        assert status.stdout.splitlines()[1].split()[-1] == "unverified"
        result = bare_market("result", str(job), *where, MARKET_TOKEN=m.account_token)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == str(EXPECTED)
        assert "result unverified: no independent worker" in result.stderr
        m.assert_serves_and_audits_clean()
    finally:
        m.market.stop()


def test_real_workers_of_two_owners_verify_each_others_slices_and_the_result(tmp_path):
    """No scripted party: two real sandboxed ``twistd worker`` processes of two owners, each opted
    in to verification (the default), run a third member's job; every slice of a worker still under
    watch and the final result are replayed by the other owner's worker with the real replay engine
    (``tasklet.replay_slice`` in the sandbox), the checks agree, and the result reads verified."""
    m = start_market(
        tmp_path, "--window", "0.2", "--threshold", "1", "--verify-wait", "600", "--reap-interval", "0.3",
        "--probe-seconds", "0.5",
    )  # fmt: skip
    workers = []
    try:
        n = 30_000_000  # a few seconds: several slices of the minimum length
        job = md.job(m.db, m.account_id, 50, source=SOURCE, args=(n,))
        for owner in ("alice", "bob"):  # measured by real probes: the replay cap follows the speed
            account_id, _ = md.account(m.db, owner, grant=0)
            client_id, token = md.client(m.db, account_id, owner + "-box")
            workers.append(Worker(m.url, client_id, token, str(tmp_path), "--slice", "0.3", *SANDBOX_USER).start())
        deadline = time.monotonic() + 120
        outcome: dict = {}
        while True:
            if m.db.transact(jsql.job_row, job)["status"] == "finished":
                outcome = m.member().outcome(job)
                if outcome.get("verification") == "verified":
                    break
            assert time.monotonic() < deadline, (outcome, [w.logtext()[-2000:] for w in workers])
            time.sleep(0.3)
        assert tasklet.decode_result(outcome["result"].data) == sum(i * i for i in range(n))
        done = checks(m, job)
        assert len(done) >= 2 and {c["status"] for c in done} == {"agreed"}, done
        assert not reversals(m) and not any(suspect(m, int(w.args[3])) for w in workers)
        m.assert_serves_and_audits_clean()
    finally:
        for w in workers:
            w.stop()
        m.market.stop()
