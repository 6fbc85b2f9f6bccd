"""SQL for states of any size: their bytes in chunks (issue 20, item 4).

A state over one chunk (:data:`CHUNK`, 1 MiB) is stored as rows of ``state_chunks`` keyed by the
lease that brought it, one chunk per statement, so no statement nears MariaDB's stock
``max_allowed_packet`` (16 MiB) and no transaction holds a whole state. A worker sends such a
state chunk by chunk (``state_put``, each chunk its own short transaction, bound to its open
lease), then checks it in with ``state`` naming how many chunks and bytes it sent; the market
reads the chunks back one at a time to read the envelope's header and hash it
(:func:`upload_facts`, off the reactor thread), and the check-in's transaction only writes the
``states`` row (no bytes, its ``chunks`` and ``size``). A check-in that never commits (refused,
late, the market killed) leaves its chunks under its lease, never under a committed state:
:func:`drop_orphans` removes them once the lease is closed. A worker fetches a leased state the
same way (``state_get``): chunks of a chunked state, SUBSTR slices of one stored whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from market.core import rules
from market.core.errors import Conflict, Forbidden, MarketError, NotFound, StateRefused, TooLarge
from market.core.rules import STATE_CHUNK, LeaseStatus
from market.settings import show_size
from market.tasklet import envelope

#: bytes of one stored and sent chunk: well under MariaDB's stock max_allowed_packet (16 MiB)
#: even escaped, and a bounded piece of memory on both sides
CHUNK = STATE_CHUNK


def chunk_count(size: int) -> int:
    """Chunks of a state of ``size`` bytes (at least one)."""
    return max(1, -(-int(size) // CHUNK))


def check_size(size: int, limit: int) -> None:
    """Refuse a state of ``size`` bytes over ``limit`` (``max-state-size``) before any byte is read."""
    if size > limit:
        raise TooLarge(
            f"a state of {show_size(size)} is over this market's max-state-size ({show_size(limit)});"
            " nothing was stored — make the job's state smaller (keep less in its variables)"
        )


def _open_lease(tx, lease_id: int, client_id: int, now: float) -> dict[str, Any]:
    """The lease, if it is this client's, still out and before its deadline."""
    row = tx.one("SELECT id, client_id, status, deadline, state_id, check_id FROM leases WHERE id = ?", (lease_id,))
    if row is None:
        raise NotFound(f"no checked-out state {lease_id}")
    if row["client_id"] != client_id:
        raise Forbidden(f"state {lease_id} was not checked out to client {client_id}")
    if row["status"] != LeaseStatus.OUT or now > row["deadline"]:
        raise Conflict(f"lease {lease_id} is closed or past its deadline; its state can no longer be sent")
    return row


def check_chunk(index: int, length: int, limit: int) -> None:
    """Refuse chunk ``index`` of ``length`` bytes: past ``limit`` (``max-state-size``) or over a chunk."""
    if not 0 <= index < chunk_count(limit):
        raise TooLarge(
            f"chunk {index} is past this market's max-state-size ({show_size(limit)}, {chunk_count(limit)}"
            f" chunks of {show_size(CHUNK)}); nothing was stored"
        )
    if length > CHUNK:
        raise TooLarge(f"a chunk is at most {show_size(CHUNK)}; this one is {length} bytes — send smaller pieces")


def put_chunk(tx, lease_id: int, client_id: int, index: int, data: bytes | memoryview, now: float, limit: int) -> int:
    """Store chunk ``index`` of the state a client is sending on its open lease (again: replaced).
    Chunks past ``limit`` bytes and pieces over :data:`CHUNK` are refused before anything is written."""
    check_chunk(index, len(data), limit)
    lease = _open_lease(tx, lease_id, client_id, now)
    if lease["check_id"] is not None:
        raise Forbidden(f"state {lease_id} is a replay lease: its state is compared, not stored")
    tx.execute("DELETE FROM state_chunks WHERE lease_id = ? AND idx = ?", (lease_id, index))
    tx.execute("INSERT INTO state_chunks (lease_id, idx, data) VALUES (?, ?, ?)", (lease_id, index, bytes(data)))
    return len(data)


def store_whole(db_tx, lease_id: int, client_id: int, data: bytes, now: float, limit: int) -> int:
    """A state sent whole (one ``state`` call) but over one chunk, stored as chunks like an upload."""
    check_size(len(data), limit)
    view = memoryview(data)
    count = chunk_count(len(data))
    for i in range(count):
        put_chunk(db_tx, lease_id, client_id, i, view[i * CHUNK : (i + 1) * CHUNK], now, limit)
    return count


def upload_facts(tx, lease_id: int, client_id: int, count: int, size: int, now: float, limit: int):
    """Read back the ``count`` chunks (``size`` bytes) a client sent on its lease, one at a time,
    and read the envelope they make: ``(state_facts, interpreter, mark, digest)`` as
    ``jobs.state_facts_and_origin`` gives them for a state sent whole. Missing, extra-sized or
    short chunks are refused with what was wrong."""
    check_size(size, limit)
    if count != chunk_count(size):
        raise MarketError(
            f"{size} bytes are {chunk_count(size)} chunks of {CHUNK} bytes, not {count}"
            " — send every chunk but the last one full"
        )
    _open_lease(tx, lease_id, client_id, now)
    reader = envelope.Inspector()
    for i, piece in enumerate(
        _pieces(tx, "SELECT data FROM state_chunks WHERE lease_id = ? AND idx = ?", lease_id, count)
    ):
        if piece is None:
            raise MarketError(f"chunk {i} of state {lease_id} was never sent (state_put); send it, then check in again")
        want = CHUNK if i < count - 1 else size - CHUNK * (count - 1)
        if len(piece) != want:
            raise MarketError(f"chunk {i} of state {lease_id} is {len(piece)} bytes, not {want}; send it again")
        try:
            reader.feed(piece)
        except envelope.EnvelopeError as e:
            raise _refusal(e) from None
    try:
        header, payload, digest, _ = reader.finish()
    except envelope.EnvelopeError as e:
        raise _refusal(e) from None
    facts, interpreter, mark = facts_of_header(header, payload)
    return facts, interpreter, mark, digest


def facts_of_header(header: envelope.Header, payload_sha256: str) -> tuple[rules.StateFacts, str, str]:
    """What ``jobs.state_facts_and_origin`` gives (the facts a lease checks, the interpreter and
    replay mark the header names), from a header read and a payload hashed, whole or by chunks."""
    facts = rules.StateFacts(
        header.job_id, header.source_sha256, header.entry, header.parent, header.seq, payload_sha256
    )
    return facts, str(header.interpreter or "unknown"), str(getattr(header, "mark", "") or "")


def _refusal(e: envelope.EnvelopeError) -> MarketError:
    if isinstance(e, envelope.OlderFormat):
        return StateRefused(f"state refused: {e}; nothing was stored or paid")
    return MarketError(f"that state is not a valid envelope: {e} — nothing was stored")


def _pieces(tx, sql: str, key: int, count: int) -> Iterator[bytes | None]:
    for i in range(count):
        row = tx.one(sql, (key, i))
        yield None if row is None else bytes(row["data"])


def leased_chunk(tx, lease_id: int, client_id: int, index: int, now: float) -> bytes:
    """Chunk ``index`` of the state a client's open lease checked out (what ``state_get`` sends)."""
    lease = _open_lease(tx, lease_id, client_id, now)
    return state_chunk(tx, lease["state_id"], index)


def state_chunk(tx, state_id: int, index: int) -> bytes:
    """Chunk ``index`` of a stored state, whether stored in chunks or whole."""
    state = tx.one(
        "SELECT lease_id, chunks, CASE WHEN chunks > 0 THEN size ELSE LENGTH(data) END AS size"
        " FROM states WHERE id = ?",
        (state_id,),
    )
    if state is None:
        raise NotFound(f"no state {state_id}")
    if not 0 <= index < chunk_count(state["size"]):
        raise NotFound(f"state {state_id} has {chunk_count(state['size'])} chunk(s); there is no chunk {index}")
    if state["chunks"]:
        row = tx.one("SELECT data FROM state_chunks WHERE lease_id = ? AND idx = ?", (state["lease_id"], index))
        if row is None:
            raise MarketError(f"chunk {index} of state {state_id} is missing from the database (a bug; logged)")
        return bytes(row["data"])
    row = tx.one("SELECT SUBSTR(data, ?, ?) AS data FROM states WHERE id = ?", (index * CHUNK + 1, CHUNK, state_id))
    return bytes(row["data"]) if row is not None else b""


def state_bytes(tx, state_id: int) -> bytes:
    """A whole stored state (for callers that need it whole: a worker of an older release)."""
    state = tx.one("SELECT data, chunks, size FROM states WHERE id = ?", (state_id,))
    if state is None:
        raise NotFound(f"no state {state_id}")
    if not state["chunks"]:
        return bytes(state["data"])
    return b"".join(state_chunk(tx, state_id, i) for i in range(state["chunks"]))


def commit_statements(lease_id: int, count: int) -> list[Any]:
    """In the check-in's transaction: chunks past the ``count`` the state has (an earlier, longer
    attempt on the same lease) go."""
    return [("DELETE FROM state_chunks WHERE lease_id = ? AND idx >= ?", (lease_id, count))]


def drop_orphans(tx, limit: int = 100) -> int:
    """Delete the chunks of closed leases that committed no chunked state (a refused, late or
    interrupted check-in; a replaced attempt): at most ``limit`` leases' chunks a call."""
    rows = tx.all(
        "SELECT DISTINCT c.lease_id FROM state_chunks c JOIN leases d ON d.id = c.lease_id"
        f" WHERE d.status <> '{LeaseStatus.OUT}' AND NOT EXISTS"
        " (SELECT 1 FROM states s WHERE s.lease_id = c.lease_id AND s.chunks > 0) LIMIT ?",
        (int(limit),),
    )
    gone = 0
    for r in rows:
        gone += tx.execute("DELETE FROM state_chunks WHERE lease_id = ?", (r["lease_id"],))
    return gone
