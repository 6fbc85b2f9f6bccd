"""Front ends, the matcher role and the requests that cross between front ends (the SQL of
``market.core.frontends``; the rules are there, this module only reads and writes rows).

Time is read from the database once per unit of work (``db_now``) unless the caller passes
``now`` (tests), and handed to the rules: front ends whose clocks disagree agree on the role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from market.core import frontends as rules
from market.core.errors import Conflict
from market.core.rules import JobKind
from market.store import jobs as sql_jobs
from market.store.db import Many, case, marks

__all__ = [
    "db_now",
    "register",
    "beat",
    "stop",
    "listing",
    "put_request",
    "put_requests",
    "new_requests",
    "assign_shared_window",
    "collect",
    "withdraw",
    "PENDING",
    "LEASED",
    "NONE",
    "GONE",
]

#: a request row's status: waiting for a window; given a lease; given nothing; withdrawn by its
#: front end (its worker was told to ask again)
PENDING, LEASED, NONE, GONE = "pending", "leased", "none", "gone"
#: request rows are deleted by the front end that collects them; rows older than this are left
#: over (their front end died) and deleted by the holder
KEEP_REQUESTS = 4 * rules.REMOTE_WAIT_SECONDS
#: a front end that has not beaten for a day is dropped from ``market frontends``
KEEP_FRONTENDS = 86_400.0


def db_now(tx) -> float:
    """The database's time, in seconds since the epoch."""
    if tx.dialect.name == "mysql":
        return float(tx.scalar("SELECT UNIX_TIMESTAMP(NOW(6))"))
    return float(tx.scalar("SELECT (julianday('now') - 2440587.5) * 86400.0"))


def register(
    tx,
    me: rules.FrontEnd,
    role_seconds: float,
    single: bool,
    pid_alive: Callable[[int], bool],
    now: float | None = None,
) -> rules.Beat:
    """Put this front end in ``frontends`` and beat once. ``single`` (SQLite): refuse with
    ``Conflict`` if another front end is alive on this database (a fresh heartbeat from a process
    that still runs)."""
    now = db_now(tx) if now is None else now
    if single:
        rows = tx.all(
            "SELECT id, host, pid, rpc, heartbeat_at, stopped_at FROM frontends WHERE stopped_at IS NULL AND id <> ?",
            (me.id,),
        )
        for other in rows:
            live = rules.is_live(float(other["heartbeat_at"]), other["stopped_at"], now)
            if live and not rules.stale_local(other["host"], int(other["pid"]), me.host, pid_alive):
                raise Conflict(rules.sqlite_refusal(other, now))
    tx.execute(
        "INSERT INTO frontends (id, host, pid, rpc, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)",
        (me.id, me.host, me.pid, me.rpc, now, now),
    )
    if single:  # nobody else can be serving: the role is this front end's at once
        tx.execute(
            "UPDATE matcher_role SET holder = ?, expires_at = ?, since = ? WHERE name = 'matcher'",
            (me.id, now + role_seconds, now),
        )
    return beat(tx, me.id, role_seconds, now)


def beat(tx, me: str, role_seconds: float, now: float | None = None, tidy: float | None = None) -> rules.Beat:
    """Write this front end's heartbeat, renew or take the matcher role if the rules allow, and
    count the live front ends — one short transaction, about once a second per front end.
    ``tidy`` (the holder, now and then): delete request rows older than that many seconds (their
    front ends gave up on them long ago) and front ends gone for ``KEEP_FRONTENDS``."""
    now = db_now(tx) if now is None else now
    if tidy is not None:
        tx.execute("DELETE FROM work_requests WHERE requested_at < ?", (now - max(tidy, KEEP_REQUESTS),))
        tx.execute("DELETE FROM frontends WHERE heartbeat_at < ?", (now - KEEP_FRONTENDS,))
    tx.execute("UPDATE frontends SET heartbeat_at = ? WHERE id = ? AND stopped_at IS NULL", (now, me))
    role = tx.one("SELECT holder, expires_at, since FROM matcher_role WHERE name = 'matcher'" + tx.for_update)
    if role is None:  # a database whose role row was deleted by hand: put it back
        tx.execute("INSERT INTO matcher_role (name, holder, expires_at, since) VALUES ('matcher', NULL, 0, 0)")
        role = {"holder": None, "expires_at": 0.0, "since": 0.0}
    holder = role["holder"]
    if rules.may_take_role(holder, float(role["expires_at"]), me, now):
        since = float(role["since"]) if holder == me else now
        tx.execute(
            "UPDATE matcher_role SET holder = ?, expires_at = ?, since = ? WHERE name = 'matcher'",
            (me, now + role_seconds, since),
        )
        holder = me
    live = tx.scalar(
        "SELECT COUNT(*) FROM frontends WHERE stopped_at IS NULL AND heartbeat_at > ?",
        (now - rules.LIVE_SECONDS,),
    )
    return rules.Beat(now, holder, int(live or 0), me)


def stop(tx, me: str, now: float | None = None) -> None:
    """A front end stopping cleanly: marked stopped, and its role (if it held it) free at once."""
    now = db_now(tx) if now is None else now
    tx.execute("UPDATE frontends SET stopped_at = ? WHERE id = ?", (now, me))
    tx.execute("UPDATE matcher_role SET holder = NULL, expires_at = 0 WHERE name = 'matcher' AND holder = ?", (me,))
    tx.execute(
        "UPDATE work_requests SET status = ? WHERE frontend = ? AND status = ?",
        (GONE, me, PENDING),
    )


def listing(tx, now: float | None = None, limit: int = 200) -> dict[str, Any]:
    """The front ends (newest heartbeat first), whether each is alive, and the role's holder."""
    now = db_now(tx) if now is None else now
    role = tx.one("SELECT holder, expires_at, since FROM matcher_role WHERE name = 'matcher'") or {
        "holder": None,
        "expires_at": 0.0,
        "since": 0.0,
    }
    role_live = role["holder"] is not None and float(role["expires_at"]) > now
    rows = tx.all(
        "SELECT id, host, pid, rpc, started_at, heartbeat_at, stopped_at FROM frontends"
        " ORDER BY heartbeat_at DESC, id LIMIT ?",
        (limit,),
    )
    fronts = []
    for r in rows:
        fronts.append(
            {
                **r,
                "live": rules.is_live(float(r["heartbeat_at"]), r["stopped_at"], now),
                "matcher": role_live and r["id"] == role["holder"],
                "heartbeat_ago": max(0.0, now - float(r["heartbeat_at"])),
            }
        )
    pending = tx.scalar("SELECT COUNT(*) FROM work_requests WHERE status = ?", (PENDING,))
    return {
        "now": now,
        "holder": role["holder"] if role_live else None,
        "role_expires_in": float(role["expires_at"]) - now if role_live else None,
        "role_since": float(role["since"]) if role_live else None,
        "frontends": fronts,
        "pending_requests": int(pending or 0),
    }


# -- requests that cross front ends ---------------------------------------------------------------


def put_request(tx, me: str, client_id: int, speed: float, granted: float) -> int:
    """A request of a worker of this front end, for the role holder's next window."""
    return put_requests(tx, me, [(client_id, speed, granted)])[0]


def put_requests(tx, me: str, asks: list[tuple[int, float, float]]) -> list[int]:
    """Requests ``(client id, speed, slice)`` of this front end's workers, in one round trip
    (group-committed by the front end); -> their row ids, in order. A front end writes one batch
    at a time, so a client's newest pending row of this front end is the one just written."""
    if not asks:
        return []
    now = db_now(tx)
    clients = sorted({int(c) for c, _, _ in asks})
    _, rows = tx.script(
        [
            Many(
                "INSERT INTO work_requests (frontend, client_id, speed, slice, requested_at, status)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(me, int(c), float(s), float(g), now, PENDING) for c, s, g in asks],
            ),
            (
                "SELECT client_id, MAX(id) AS id FROM work_requests WHERE frontend = ? AND status = ?"
                f" AND client_id IN {marks(len(clients))} GROUP BY client_id",
                [me, PENDING, *clients],
            ),
        ]
    )
    newest = {int(r["client_id"]): int(r["id"]) for r in rows or []}
    return [newest[int(c)] for c, _, _ in asks]


def new_requests(tx, max_age: float, limit: int = rules.MAX_REQUESTS_PER_POLL) -> list[dict[str, Any]]:
    """Every pending request younger than ``max_age`` seconds (older ones are their front ends' to
    withdraw), oldest first, at most ``limit``. All of them, not those above the last id seen: ids
    are drawn when a row is inserted, not when it commits, so a row may appear below one already
    read."""
    since = db_now(tx) - max_age
    return tx.all(
        "SELECT id, frontend, client_id, speed, slice, requested_at FROM work_requests"
        " WHERE status = ? AND requested_at >= ? ORDER BY id LIMIT ?",
        (PENDING, since, limit),
    )


def assign_shared_window(
    tx,
    clients: list[Any],
    remote: dict[int, int],
    issued_by: dict[int, str],
    now: float,
    grace: float,
    granted: dict[int, float],
    match: Callable[[list[Any], list[Any]], list[Any]],
    make_ready_job: Callable[..., Any],
) -> tuple[dict[int, dict[str, Any]], set[int]]:
    """``jobs.assign_window`` over local and database requests in one transaction.

    ``remote``: client id -> its request row, for the clients whose request came through the
    database. Those rows are locked first (a front end withdrawing one waits, or wins and the client
    leaves this window), then the window is matched and leased, then each claimed row gets its
    lease or nothing. Returns (``{client_id: lease}``, the claimed row ids)."""
    claimed: set[int] = set()
    if remote:
        rows = tx.all(
            f"SELECT id FROM work_requests WHERE id IN {marks(len(remote))} AND status = ?" + tx.for_update,
            [*remote.values(), PENDING],
        )
        claimed = {int(r["id"]) for r in rows}
        clients = [c for c in clients if c.id not in remote or remote[c.id] in claimed]
    leases = sql_jobs.assign_window(tx, clients, now, grace, granted, match, make_ready_job, issued_by)
    if claimed:
        answers = {row: leases[c]["stateid"] if c in leases else None for c, row in remote.items() if row in claimed}
        status, p1 = case("id", {row: LEASED if lease else NONE for row, lease in answers.items()}, "status")
        lease_ids, p2 = case("id", answers, "lease_id")
        tx.execute(
            f"UPDATE work_requests SET status = {status}, lease_id = {lease_ids} WHERE id IN {marks(len(answers))}",
            [*p1, *p2, *answers],
        )
    return leases, claimed


def withdraw(tx, rows: Iterable[int]) -> int:
    """Requests whose workers stopped waiting (or the front end gave up): no window takes them."""
    ids = list(rows)
    if not ids:
        return 0
    return tx.execute(
        f"UPDATE work_requests SET status = ? WHERE id IN {marks(len(ids))} AND status = ?", [GONE, *ids, PENDING]
    )


def collect(tx, me: str, rows: list[int], give_up: list[int]) -> dict[int, dict[str, Any] | None]:
    """This front end's answered requests among ``rows``: ``{row: lease answer or None}`` (None:
    nothing this window, or withdrawn). ``give_up`` rows still pending are withdrawn first. The
    answered rows are deleted: the lease rows are the record."""
    if not rows:
        return {}
    withdraw(tx, give_up)
    done = tx.all(
        f"SELECT id, status, lease_id FROM work_requests WHERE frontend = ? AND id IN {marks(len(rows))}"
        " AND status <> ?",
        [me, *rows, PENDING],
    )
    if not done:
        return {}
    leases = _lease_answers(tx, [int(r["lease_id"]) for r in done if r["lease_id"] is not None])
    ids = [int(r["id"]) for r in done]
    tx.execute(f"DELETE FROM work_requests WHERE id IN {marks(len(ids))}", ids)
    return {int(r["id"]): leases.get(int(r["lease_id"])) if r["lease_id"] is not None else None for r in done}


def _lease_answers(tx, lease_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The lease as the holder's window returned it (``jobs.checkout_many``), read back for the
    front end whose worker asked."""
    if not lease_ids:
        return {}
    rows = tx.all(
        "SELECT l.id AS stateid, l.job_id, l.client_id, l.state_id, l.granted_seconds, l.deadline, l.checked_out_at,"
        " l.reserved, l.price, j.kind, j.name, j.source, j.entry, j.spec, j.probe_size, j.account_id, s.seq, s.data,"
        " s.chunks, s.size"
        " FROM leases l JOIN jobs j ON j.id = l.job_id JOIN states s ON s.id = l.state_id"
        f" WHERE l.id IN {marks(len(lease_ids))}",
        lease_ids,
    )
    out = {}
    for r in rows:
        out[int(r["stateid"])] = {
            "stateid": int(r["stateid"]),
            "job_id": r["job_id"],
            "client_id": r["client_id"],
            "kind": r["kind"] or JobKind.JOB,
            "name": r["name"],
            "state": bytes(r["data"]),
            # a state stored in chunks is fetched by them (``state_get``): its row holds no bytes
            "state_chunks": r["chunks"],
            "state_size": r["size"] if r["chunks"] else len(r["data"]),
            "state_id": r["state_id"],
            "seq": r["seq"],
            "source": r["source"],
            "entry": r["entry"],
            "spec": r["spec"],
            "granted": float(r["granted_seconds"]),
            "deadline": float(r["deadline"]),
            "timeout": float(r["deadline"]) - float(r["checked_out_at"]),
            "probe_size": r["probe_size"],
            "owner": r["account_id"],
            "reserved": r["reserved"],
            "price": r["price"],
        }
    return out
