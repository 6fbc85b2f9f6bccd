"""States of any size (issue 20, item 4): stored in chunks, read back chunk by chunk, refused
above max-state-size; a check-in interrupted between its chunks and its commit leaves the
committed state as it was. On SQLite and on a stock MariaDB (max_allowed_packet untouched)."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from market.core.errors import Conflict, MarketError, NotFound, TooLarge
from market.store import jobs as jsql
from market.store import statechunks as chunks
from market.tasklet import envelope
from tests import marketdata as md

MiB = 1024 * 1024
LIMIT = 256 * MiB


def big_next_state(db, job_id: int, size: int) -> bytes:
    """The next state of the job's committed one, with a payload of ``size`` pseudo-random bytes
    (incompressible: no layer can shrink it)."""
    seed = hashlib.sha256(b"%d" % size).digest()
    payload = (seed * (size // len(seed) + 1))[:size]
    payload = bytes(a ^ b for a, b in zip(payload[:4096], os.urandom(4096))) + payload[4096:]
    return md.next_state_of(db, job_id, payload)


def leased(db, price: int = 10):
    owner, _ = md.account(db, "owner", grant=1_000_000)
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, price)
    client_id, _ = md.client(db, host, "worker", 50.0)
    now = time.time()
    lease = db.transact(jsql.checkout, job_id, client_id, 30.0, 5.0, now)
    return job_id, client_id, lease


def send(db, lease_id: int, client_id: int, data: bytes, now: float) -> int:
    view = memoryview(data)
    count = chunks.chunk_count(len(data))
    for i in range(count):
        db.transact(
            chunks.put_chunk, lease_id, client_id, i, view[i * chunks.CHUNK : (i + 1) * chunks.CHUNK], now, LIMIT
        )
    return count


def check_in(db, lease_id: int, client_id: int, data: bytes, now: float):
    count = send(db, lease_id, client_id, data, now)
    facts, _, _, digest = db.transact(chunks.upload_facts, lease_id, client_id, count, len(data), now, LIMIT)
    checkin = jsql.CheckIn(lease_id, client_id, b"", now, facts=facts, chunked=(count, len(data), digest))
    return db.transact(jsql.checkin_many, [checkin])[0]


def test_a_state_over_one_chunk_commits_in_chunks_and_reads_back_exactly(db):
    job_id, client_id, lease = leased(db)
    now = time.time()
    state = big_next_state(db, job_id, 5 * MiB + 12345)
    answer = check_in(db, lease["stateid"], client_id, state, now)
    assert answer["status"] == "accepted"
    row = db.transact(
        lambda tx: tx.one("SELECT id, data, chunks, size, digest FROM states WHERE lease_id = ?", (lease["stateid"],))
    )
    assert bytes(row["data"]) == b"" and row["chunks"] == 6 and row["size"] == len(state)
    assert row["digest"] == envelope.digest(state)
    assert bytes(db.transact(jsql.committed_state, job_id)["data"]) == state
    # the next lease announces the chunks, and they read back one at a time to the same bytes
    nxt = db.transact(jsql.checkout, job_id, client_id, 30.0, 5.0, now)
    assert nxt["state"] == b"" and nxt["state_chunks"] == 6 and nxt["state_size"] == len(state)
    pieces = [db.transact(chunks.leased_chunk, nxt["stateid"], client_id, i, now) for i in range(6)]
    assert all(len(p) == chunks.CHUNK for p in pieces[:5]) and b"".join(pieces) == state
    with pytest.raises(NotFound):
        db.transact(chunks.leased_chunk, nxt["stateid"], client_id, 6, now)


def test_a_state_stored_whole_is_fetched_by_chunks_too(db):
    """States stored before this release (or state #0) stay in their row: SUBSTR slices of it."""
    job_id, client_id, lease = leased(db)
    state = bytes(db.transact(jsql.committed_state, job_id)["data"])
    assert db.transact(chunks.leased_chunk, lease["stateid"], client_id, 0, time.time()) == state
    assert lease["state_chunks"] == 0 and lease["state_size"] == len(state)


def test_the_limit_and_the_chunk_size_are_refused_before_the_database_is_touched(db):
    job_id, client_id, lease = leased(db)
    now = time.time()
    with pytest.raises(TooLarge, match="max-state-size"):
        db.transact(chunks.put_chunk, lease["stateid"], client_id, 256, b"x", now, LIMIT)  # the 257th MiB
    with pytest.raises(TooLarge, match="at most 1 MiB"):
        db.transact(chunks.put_chunk, lease["stateid"], client_id, 0, b"x" * (MiB + 1), now, LIMIT)
    with pytest.raises(TooLarge, match="max-state-size"):
        db.transact(chunks.upload_facts, lease["stateid"], client_id, 257, LIMIT + 1, now, LIMIT)
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM state_chunks")) == 0


def test_missing_short_and_foreign_chunks_are_refused_with_what_was_wrong(db):
    job_id, client_id, lease = leased(db)
    now = time.time()
    state = big_next_state(db, job_id, 3 * MiB)
    count = send(db, lease["stateid"], client_id, state, now)
    assert count == 4  # 3 MiB of payload and its envelope
    with pytest.raises(MarketError, match="not 3"):
        db.transact(chunks.upload_facts, lease["stateid"], client_id, 3, len(state), now, LIMIT)
    db.transact(chunks.put_chunk, lease["stateid"], client_id, 3, b"\0" * MiB, now, LIMIT)  # full now
    with pytest.raises(MarketError, match="chunk 4 .* never sent"):
        db.transact(chunks.upload_facts, lease["stateid"], client_id, 5, 4 * MiB + 100, now, LIMIT)
    db.transact(chunks.put_chunk, lease["stateid"], client_id, 1, b"short", now, LIMIT)
    with pytest.raises(MarketError, match="chunk 1 .* is 5 bytes"):
        db.transact(chunks.upload_facts, lease["stateid"], client_id, count, len(state), now, LIMIT)
    # a stranger cannot add to another client's lease; nor anyone to a lease past its deadline
    other, _ = md.client(db, md.account(db, "other", grant=0)[0], "stranger", 50.0)
    with pytest.raises(MarketError, match="not checked out to client"):
        db.transact(chunks.put_chunk, lease["stateid"], other, 0, b"x", now, LIMIT)
    with pytest.raises(Conflict, match="past its deadline"):
        db.transact(chunks.put_chunk, lease["stateid"], client_id, 0, b"x", now + 3600, LIMIT)


def test_a_corrupt_chunked_state_is_refused_and_nothing_is_committed(db):
    job_id, client_id, lease = leased(db)
    now = time.time()
    state = bytearray(big_next_state(db, job_id, 2 * MiB + 7))
    state[MiB + 3] ^= 1  # a flipped bit in the second chunk: the trailing checksum disagrees
    count = send(db, lease["stateid"], client_id, bytes(state), now)
    with pytest.raises(MarketError, match="checksum mismatch"):
        db.transact(chunks.upload_facts, lease["stateid"], client_id, count, len(state), now, LIMIT)
    assert db.transact(jsql.committed_state, job_id)["seq"] == 0


def test_a_check_in_interrupted_after_its_chunks_leaves_the_committed_state_and_its_chunks_go(db):
    """The market dies between the last chunk and the commit: the job is still at its committed
    state (chunked itself), the next worker reads that state exactly, and once the interrupted
    lease is expired its chunks are removed; the committed state's chunks are kept."""
    job_id, client_id, lease = leased(db)
    now = time.time()
    first = big_next_state(db, job_id, 2 * MiB + 5)
    assert check_in(db, lease["stateid"], client_id, first, now)["status"] == "accepted"
    second_lease = db.transact(jsql.checkout, job_id, client_id, 1.0, 0.0, now)
    second = md.next_state(first, b"\x01" * (3 * MiB))
    sent = send(db, second_lease["stateid"], client_id, second, now)  # ... and the market is killed here
    assert bytes(db.transact(jsql.committed_state, job_id)["data"]) == first
    assert db.transact(jsql.expire_leases, now + 10) == [second_lease["stateid"]]
    assert db.transact(chunks.drop_orphans) == sent == 4
    third = db.transact(jsql.checkout, job_id, client_id, 30.0, 5.0, now + 11)
    pieces = [db.transact(chunks.leased_chunk, third["stateid"], client_id, i, now + 11) for i in range(3)]
    assert b"".join(pieces) == first
    assert db.transact(chunks.drop_orphans) == 0  # the committed state's chunks stay


def test_a_failed_commit_rolls_the_states_row_back_with_the_chunks_untouched(db):
    """A crash inside the check-in's transaction (here: the script fails after the states row
    was written) commits nothing: the job stays at its state, and the same check-in succeeds
    when tried again."""
    job_id, client_id, lease = leased(db)
    now = time.time()
    state = big_next_state(db, job_id, MiB + 1)
    count = send(db, lease["stateid"], client_id, state, now)
    facts, _, _, digest = db.transact(chunks.upload_facts, lease["stateid"], client_id, count, len(state), now, LIMIT)
    checkin = jsql.CheckIn(lease["stateid"], client_id, b"", now, facts=facts, chunked=(count, len(state), digest))

    def crashing(tx):
        jsql.checkin_many(tx, [checkin])
        raise RuntimeError("killed mid-transaction")

    with pytest.raises(RuntimeError):
        db.transact(crashing)
    assert db.transact(jsql.committed_state, job_id)["seq"] == 0
    assert db.transact(jsql.checkin_many, [checkin])[0]["status"] == "accepted"
    assert bytes(db.transact(jsql.committed_state, job_id)["data"]) == state


def test_the_migration_keeps_existing_states_whole_and_readable_by_chunks(db_url):
    """A database at version 15 with states in their rows: after migration 16 they keep their
    bytes, a lease names their size, and they are fetched by chunks (SUBSTR slices)."""
    from market.store import Database, schema

    database = Database(db_url)
    try:
        schema.upgrade(database, [m for m in schema.MIGRATIONS if m[0] < 16])
        owner, _ = md.account(database, "owner", grant=1_000_000)
        host, _ = md.account(database, "host", grant=0)
        job_id = md.job(database, owner, 10, args=(list(range(400_000)),))  # state #0 over one chunk
        whole = bytes(database.transact(lambda tx: tx.scalar("SELECT data FROM states WHERE job_id = ?", (job_id,))))
        assert len(whole) > chunks.CHUNK
        schema.upgrade(database)
        client_id, _ = md.client(database, host, "worker", 50.0)
        now = time.time()
        lease = database.transact(jsql.checkout, job_id, client_id, 30.0, 5.0, now)
        assert lease["state_chunks"] == 0 and lease["state_size"] == len(whole) and lease["state"] == whole
        count = chunks.chunk_count(len(whole))
        pieces = [database.transact(chunks.leased_chunk, lease["stateid"], client_id, i, now) for i in range(count)]
        assert b"".join(pieces) == whole and count >= 2
    finally:
        database.close()


def test_the_header_of_a_chunked_state_is_read_from_its_first_chunk(db):
    """What the result check of a job needs of its last state (interpreter, replay mark) comes from
    the first chunk of a state stored in chunks."""
    from market.dispatch.service import _header_of, _header_of_start

    job_id, client_id, lease = leased(db)
    now = time.time()
    state = big_next_state(db, job_id, 2 * MiB)
    assert check_in(db, lease["stateid"], client_id, state, now)["status"] == "accepted"
    row = db.transact(lambda tx: tx.one("SELECT id FROM states WHERE lease_id = ?", (lease["stateid"],)))
    first = db.transact(chunks.state_chunk, row["id"], 0)
    assert _header_of_start(first) == _header_of(state) != ("unknown", "")
    assert _header_of_start(b"junk" * 10) == ("unknown", "")


def test_max_state_size_is_a_setting_of_at_least_one_chunk():
    from market.settings import ConnectionSettings, SettingsError

    assert ConnectionSettings().max_state_size == 256 * MiB
    assert ConnectionSettings(max_state_size=MiB).max_state_size == MiB
    with pytest.raises(SettingsError, match="at least 1 MiB"):
        ConnectionSettings(max_state_size=MiB - 1)
