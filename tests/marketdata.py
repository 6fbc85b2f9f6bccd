"""Building market states in a real store for tests (accounts, tokens, clients, speeds, jobs)."""

from __future__ import annotations

import time

from market.accounts import credentials
from market.jobs import submission
from market.store import accounts as sql
from market.store import clients as csql
from market.tasklet import envelope
from market.tasklet.envelope import RUNTIME_VERSION, Header, make_envelope, source_hash

SOURCE = "def main(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n"


def account(db, name, grant=10_000):
    """(account id, API token)."""
    token, digest = credentials.new_token()

    def work(tx):
        account_id = sql.create_account(tx, name, f"{name}@example.org", "x", time.time(), None, grant)
        sql.set_api_token_hash(tx, account_id, digest)
        return account_id

    return db.transact(work), token


def client(db, account_id, name, speed=None):
    """(client id, token), with a fresh speed measurement when ``speed`` is given."""
    token, digest = credentials.new_token()
    client_id = db.transact(csql.register_client, account_id, name, digest, time.time())
    if speed is not None:
        db.transact(csql.record_speed, client_id, int(speed * 10), 10.0, time.time())
    return client_id, token


def fake_state(source=SOURCE, seq=0, payload=b"\x00state", entry="main", job_id=None) -> bytes:
    """An envelope with an opaque payload: enough for the server, which never decodes payloads."""
    return make_envelope(Header(source_hash(source), entry, seq, RUNTIME_VERSION, "test", 0, job_id), payload)


def v1_state(source=SOURCE, seq=0, payload=b"\x00state", entry="main", job_id=None) -> bytes:
    """An envelope of format version 1, as workers before issue 17 made them (no parent, no
    interpreter in the header)."""
    import hashlib
    import json
    import struct

    fields = {"source_sha256": source_hash(source), "entry": entry, "seq": seq, "runtime": RUNTIME_VERSION}
    fields.update(codec="test", payload_length=len(payload))
    if job_id is not None:
        fields["job_id"] = job_id
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    body = struct.pack(">4sHI", b"MKTS", 1, len(raw)) + raw + payload
    return body + hashlib.sha256(body).digest()


def next_state(leased: bytes, payload: bytes | None = None, job_id: int | None = None) -> bytes:
    """The state a slice of ``leased`` would check in: its header with the next sequence number and
    ``leased`` as parent (an honest worker's binding), over ``payload`` (a slice that did work: by
    default one that names its sequence number, so it differs from its parent's). ``job_id``: the
    lease's job, for a state #0 made before its job had an id (a worker stamps it in)."""
    header = envelope.read_header(leased)
    seq = header.seq + 1
    body = b"\x00slice %d" % seq if payload is None else payload
    job = header.job_id if job_id is None else job_id
    return make_envelope(header._replace(seq=seq, parent=envelope.digest(leased), job_id=job), body)


def next_state_of(db, job_id: int, payload: bytes | None = None) -> bytes:
    """:func:`next_state` of the job's committed state, read from the store."""
    from market.store import jobs as jsql

    return next_state(bytes(db.transact(jsql.committed_state, job_id)["data"]), payload)


def job(db, account_id, price, name="job", source=SOURCE, submitted_at=None, args=(1000,)):
    """A ready job submitted the market's way (``market.jobs.submission``): ``job`` + ``init``, with a
    real state #0 that carries the job id. ``price`` in cents per second."""
    now = time.time() if submitted_at is None else submitted_at
    return db.transact(submission.submit, account_id, submission.prepare(source, "main", args), name, price, now)
