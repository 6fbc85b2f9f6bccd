"""Test jobs a client may get, and how their rows go: one open at a time, a few per probe interval,
cleaned once over (the store's rules, on SQLite and MariaDB)."""

from __future__ import annotations

import functools
import threading

import pytest

from market.core.errors import Conflict, MarketError
from market.dispatch import prober
from market.store import clients as csql
from market.store import jobs as sql
from tests import marketdata as md

NOW = 1_800_000_000.0
INTERVAL = 1800.0


def probe(db, client_id, now, per_interval=3):
    build = functools.partial(prober.make_probe, b"s" * 32, steps=500)
    return db.transact(sql.create_probe, client_id, build, 500, 300.0, 10.0, now, per_interval, INTERVAL)


def test_jobs(db, client_id):
    return db.transact(
        lambda tx: tx.all("SELECT id, status FROM jobs WHERE kind = 'test' AND probe_client_id = ?", (client_id,))
    )


test_jobs.__test__ = False  # a helper, not a test


@pytest.fixture
def client(db):
    owner, _ = md.account(db, "host", grant=0)
    client_id, _ = md.client(db, owner, "box")
    return client_id


def test_a_client_gets_one_test_job_at_a_time(db, client):
    lease = probe(db, client, NOW)
    with pytest.raises(Conflict, match=f"already has test job {lease['job_id']} to run.*ask again in 309 s"):
        probe(db, client, NOW + 1)
    assert len(test_jobs(db, client)) == 1
    db.transact(sql.fail_lease, lease["stateid"], client, "crash", "gave up", NOW + 2)
    assert probe(db, client, NOW + 3)["job_id"] != lease["job_id"]


def test_a_client_gets_at_most_its_test_jobs_per_probe_interval(db, client):
    for i in range(3):
        lease = probe(db, client, NOW + i)
        db.transact(sql.fail_lease, lease["stateid"], client, "crash", "gave up", NOW + i)
    with pytest.raises(Conflict, match=r"has had 3 test jobs in the last 1800 s.*ask again in 1790 s"):
        probe(db, client, NOW + 10)
    assert len(test_jobs(db, client)) == 3
    # the next interval starts afresh
    assert probe(db, client, NOW + INTERVAL)["kind"] == "test"


def test_an_expired_test_job_counts_and_frees_the_client_for_the_next(db, client):
    probe(db, client, NOW)
    db.transact(sql.expire_leases, NOW + 311)
    assert probe(db, client, NOW + 312)["kind"] == "test"


def test_parallel_requests_of_one_client_get_one_test_job(db, client):
    won, refused = [], []

    def ask():
        try:
            won.append(probe(db, client, NOW))
        except Conflict:
            refused.append(1)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(refused) == 7
    assert len(test_jobs(db, client)) == 1


def test_finished_test_jobs_are_deleted_with_their_states_and_leases_and_the_speed_stays(db, client):
    lease = probe(db, client, NOW)
    db.transact(sql.fail_lease, lease["stateid"], client, "crash", "gave up", NOW + 1)
    db.transact(csql.record_speed, client, 1000, 1.0, NOW + 1)
    kept = probe(db, client, NOW + 2)  # open: kept
    owner, _ = md.account(db, "owner")
    job = md.job(db, owner, 5)  # a member's job: never touched
    assert db.transact(sql.clean_test_jobs, NOW + 1) == 0  # ended at NOW + 1: not before it
    assert db.transact(sql.clean_test_jobs, NOW + 5) == 1
    left = db.transact(
        lambda tx: (
            tx.all("SELECT id FROM jobs ORDER BY id"),
            tx.scalar("SELECT COUNT(*) FROM states WHERE job_id = ?", (lease["job_id"],)),
            tx.scalar("SELECT COUNT(*) FROM leases WHERE job_id = ?", (lease["job_id"],)),
        )
    )
    assert [r["id"] for r in left[0]] == sorted([kept["job_id"], job]) and left[1:] == (0, 0)
    assert db.transact(csql.last_speed, client)["speed"] == 1000.0
    # the open one is still the client's; once over and cleaned, the client is free of it
    db.transact(sql.fail_lease, kept["stateid"], client, "crash", "gave up", NOW + 6)
    assert db.transact(sql.clean_test_jobs, NOW + 20) == 1
    assert db.transact(csql.client_by_id, client)["test_job_id"] is None
    assert probe(db, client, NOW + 21)["kind"] == "test"


def test_a_test_job_checked_in_as_a_state_is_cleaned_too(db, client):
    lease = probe(db, client, NOW)
    db.transact(sql.checkin, lease["stateid"], client, md.next_state(lease["state"], job_id=lease["job_id"]), NOW + 1)
    assert [j["status"] for j in test_jobs(db, client)] == ["finished"]
    assert db.transact(sql.clean_test_jobs, NOW + 5) == 1
    assert test_jobs(db, client) == []


@pytest.mark.parametrize("name", ["a\x1b[2Jb", "bell\x07", "csi \x9b", "tab\there", "two\nlines", "bidi \u202eabc"])
def test_a_job_name_with_control_or_bidi_characters_is_refused(db, name):
    owner, _ = md.account(db, "owner")
    with pytest.raises(MarketError, match="may not contain control or bidirectional characters"):
        md.job(db, owner, 5, name=name)
