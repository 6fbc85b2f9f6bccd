"""States sent and fetched by chunks against a real ``twistd market`` (issue 20, item 4):
``state_put``/``state_get`` bound to the caller's lease, ``state`` with ``info {chunks, size}``,
and the refusals that come before the market reads a state: over ``max-state-size``, a chunk too
many, a chunk too large, a Content-Length that lies, a body that trickles."""

from __future__ import annotations

import base64
import re
import socket
import time
import xmlrpc.client

import pytest

from market.rpc import faults
from market.rpc.client import blocking
from market.store import Database, upgrade
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market

MiB = 1024 * 1024
LIMIT_MB = 6


@pytest.fixture
def market(tmp_path):
    url = f"sqlite:{tmp_path}/chunks.sqlite"
    db = Database(url)
    upgrade(db)
    owner, _ = md.account(db, "owner", grant=1_000_000)
    host, _ = md.account(db, "host", grant=0)
    other, _ = md.account(db, "other", grant=0)
    job_id = md.job(db, owner, 100)
    mine_id, mine_token = md.client(db, host, "mine", 50.0)
    stranger_id, stranger_token = md.client(db, other, "stranger", 50.0)
    server = Market(
        url,
        str(tmp_path),
        "--window",
        "0.1",
        "--threshold",
        "1",
        "--grace",
        "60",
        "--max-state-size",
        f"{LIMIT_MB} MiB",
        "--body-grace",
        "1",
    ).start()
    mine = blocking(server.url, f"client/{mine_id}", mine_token)
    lease = mine.request(mine_id, 20, {"chunks": True})
    assert lease["status"] == "work" and lease["job"] == job_id
    stranger = blocking(server.url, f"client/{stranger_id}", stranger_token)
    yield {
        "db": db,
        "server": server,
        "mine": mine,
        "mine_id": mine_id,
        "mine_token": mine_token,
        "stranger": stranger,
        "lease": lease,
        "job": job_id,
    }
    server.stop()
    db.close()


def fault(call) -> tuple[int, str]:
    with pytest.raises(xmlrpc.client.Fault) as e:
        call()
    return e.value.faultCode, e.value.faultString


def put_all(rpc, lease_id: int, data: bytes) -> int:
    count = -(-len(data) // MiB)
    for i in range(count):
        assert rpc.state_put(lease_id, i, xmlrpc.client.Binary(data[i * MiB : (i + 1) * MiB]))["status"] == "ok"
    return count


def test_a_state_sent_by_chunks_is_accepted_and_the_next_lease_fetches_it_by_chunks(market):
    db, mine, lease = market["db"], market["mine"], market["lease"]
    state = md.next_state_of(db, market["job"], b"\x07" * (3 * MiB + 17))
    count = put_all(mine, lease["stateid"], state)
    answer = mine.state(lease["stateid"], xmlrpc.client.Binary(b""), {"chunks": count, "size": len(state)})
    assert answer["status"] == "accepted"
    time.sleep(0.2)
    nxt = mine.request(market["mine_id"], 20, {"chunks": True})
    assert nxt["state"].data == b"" and nxt["state_chunks"] == count and nxt["state_size"] == len(state)
    fetched = b"".join(mine.state_get(nxt["stateid"], i).data for i in range(count))
    assert fetched == state
    # a worker of an older release (no info {chunks}) is sent the state whole, as before
    mine.fail(nxt["stateid"], "crash", "to lease it again")
    time.sleep(0.2)
    old = mine.request(market["mine_id"], 20)
    assert old["state"].data == state and old["state_chunks"] == 0


def test_a_state_sent_whole_over_one_chunk_is_stored_in_chunks(market):
    db, mine, lease = market["db"], market["mine"], market["lease"]
    state = md.next_state_of(db, market["job"], b"\x05" * (2 * MiB))
    assert mine.state(lease["stateid"], xmlrpc.client.Binary(state))["status"] == "accepted"
    # sent again (its answer lost): the first answer again, nothing stored twice
    again = mine.state(lease["stateid"], xmlrpc.client.Binary(state))
    assert again["status"] == "accepted" and again["duplicate"] is True
    row = db.transact(lambda tx: tx.one("SELECT chunks, size, LENGTH(data) AS inline FROM states WHERE seq = 1"))
    assert row == {"chunks": 3, "size": len(state), "inline": 0}
    assert bytes(db.transact(jsql.committed_state, market["job"])["data"]) == state


def test_over_the_limit_is_refused_with_fault_8_before_anything_is_stored(market):
    db, mine, lease = market["db"], market["mine"], market["lease"]
    stateid = lease["stateid"]
    # a chunk past max-state-size (6 MiB: chunks 0..5), a chunk over 1 MiB, a size over the limit
    code, words = fault(lambda: mine.state_put(stateid, LIMIT_MB, xmlrpc.client.Binary(b"x")))
    assert code == faults.TOO_LARGE and "max-state-size" in words
    code, words = fault(lambda: mine.state_put(stateid, 0, xmlrpc.client.Binary(b"x" * (MiB + 1))))
    assert code == faults.TOO_LARGE and "at most 1 MiB" in words
    size = LIMIT_MB * MiB + 1
    code, words = fault(lambda: mine.state(stateid, xmlrpc.client.Binary(b""), {"chunks": LIMIT_MB + 1, "size": size}))
    assert code == faults.TOO_LARGE and "max-state-size" in words
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM state_chunks")) == 0
    assert db.transact(jsql.committed_state, market["job"])["seq"] == 0
    code, words = fault(lambda: mine.state(stateid, xmlrpc.client.Binary(b""), {"chunks": 1, "size": 10}))
    assert code == faults.BAD_ARGUMENT and "never sent" in words


def test_a_strangers_chunks_answer_exactly_as_a_missing_lease(market):
    stranger, stateid = market["stranger"], market["lease"]["stateid"]
    for call in (
        lambda s: stranger.state_put(s, 0, xmlrpc.client.Binary(b"x")),
        lambda s: stranger.state_get(s, 0),
    ):
        foreign = fault(lambda call=call: call(stateid))
        missing = fault(lambda call=call: call(stateid + 1000))
        assert foreign[0] == missing[0] == faults.NOT_FOUND
        assert re.sub(r"\d+", "N", foreign[1]) == re.sub(r"\d+", "N", missing[1])


def raw_request(market, length: int, body: bytes = b"", trickle: float = 0.0) -> tuple[float, bytes]:
    """POST /RPC2 as the lease's client with a Content-Length of ``length``; sends ``body`` a byte
    every ``trickle`` seconds (0: at once). -> (seconds until the answer, the answer's head)."""
    auth = base64.b64encode(f"client/{market['mine_id']}:{market['mine_token']}".encode()).decode()
    port = int(market["server"].url.split(":")[2].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    started = time.monotonic()
    sock.sendall(
        f"POST /RPC2 HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: text/xml\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    answer = b""
    try:
        for i in range(len(body)):
            sock.sendall(body[i : i + 1] if trickle else body[i:])
            if not trickle:
                break
            sock.settimeout(trickle)
            try:
                answer = sock.recv(4096)
                if answer:
                    break
            except TimeoutError:
                continue
        sock.settimeout(30)
        answer = answer or sock.recv(4096)
    except (BrokenPipeError, ConnectionResetError):
        answer = answer or b"(reset)"
    finally:
        sock.close()
    return time.monotonic() - started, answer.split(b"\r\n", 1)[0]


def test_a_content_length_that_lies_is_refused_before_the_body_is_read(market):
    # 300 MiB announced (a 256 MiB state and more): 413 at once, not a byte of the body awaited
    seconds, head = raw_request(market, 300 * MiB)
    assert b"413" in head and seconds < 5, (seconds, head)


def test_a_body_that_trickles_is_cut_off(market):
    # a plausible chunk-sized body sent at ~10 bytes a second: cut off after body-grace (1 s)
    seconds, head = raw_request(market, MiB, b"<" * 200, trickle=0.1)
    assert (b"408" in head or head == b"(reset)") and seconds < 10, (seconds, head)


def test_kill_9_of_the_market_in_the_middle_of_a_chunked_check_in_leaves_the_committed_state(tmp_path):
    url = f"sqlite:{tmp_path}/crash.sqlite"
    db = Database(url)
    upgrade(db)
    owner, _ = md.account(db, "owner", grant=1_000_000)
    host, _ = md.account(db, "host", grant=0)
    job_id = md.job(db, owner, 100)
    cid, token = md.client(db, host, "crashing", 50.0)
    options = ("--window", "0.1", "--threshold", "1", "--grace", "1", "--min-slice", "0.5")
    server = Market(url, str(tmp_path), *options).start()
    try:
        rpc = blocking(server.url, f"client/{cid}", token)
        committed = bytes(db.transact(jsql.committed_state, job_id)["data"])
        lease = rpc.request(cid, 0.5, {"chunks": True})
        state = md.next_state(lease["state"].data, b"\x03" * (4 * MiB))
        for i in range(3):  # three of five chunks, then the market dies
            rpc.state_put(lease["stateid"], i, xmlrpc.client.Binary(state[i * MiB : (i + 1) * MiB]))
        server.kill9()
        assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM state_chunks")) == 3
        assert bytes(db.transact(jsql.committed_state, job_id)["data"]) == committed
        server.start()
        # the lease expires (slice 0.5 s + grace 1 s) and the reaper removes its chunks
        deadline = time.time() + 30
        while time.time() < deadline and db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM state_chunks")):
            time.sleep(0.2)
        assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM state_chunks")) == 0
        again = rpc.request(cid, 0.5, {"chunks": True})
        assert again["job"] == job_id and again["seq"] == 0 and again["state"].data == committed
        # and the rest of the interrupted check-in, sent late, is refused without storing anything
        code, _ = fault(lambda: rpc.state_put(lease["stateid"], 3, xmlrpc.client.Binary(b"x")))
        assert code == faults.CONFLICT
    finally:
        server.stop()
        db.close()
