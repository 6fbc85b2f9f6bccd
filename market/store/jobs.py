"""SQL for jobs, their committed states and their dispatches (leases).

Statuses
  job:       new (no state yet) -> ready <-> running -> finished | cancelled; held (owner can't pay)
  state:     committed (the job's current state) | superseded (an earlier committed state)
  dispatch:  out (leased) -> accepted | rejected (late or refused) | expired (reaped) | finished
A dispatch is the paper's "job state checked out": which state, to which client, when it was
checked out, its deadline, and when it was checked back in. Its id is the ``stateid`` of XML-RPC.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

from market import ledger, money
from market.errors import Conflict, Forbidden, MarketError, NotFound
from market.store import accounts as sql_accounts
from market.tasklet.envelope import source_hash  # the hash the envelope header carries: one definition

COMPETING_KINDS = ("job", "task")
OPEN = "out"


def create_job(tx, account_id: Optional[int], name: str, price: int, source: str, entry: str, now: float,
               kind: str = "job", spec: Optional[str] = None, probe_client_id: Optional[int] = None,
               probe_size: Optional[int] = None) -> int:
    """A job without a state yet (the paper's ``job`` call); ``init_job`` makes it ready."""
    if not isinstance(name, str) or not name.strip() or len(name) > 128:
        raise MarketError("a job needs a name of 1 to 128 characters")
    return tx.insert(
        "INSERT INTO jobs (account_id, kind, name, price, source, source_sha256, entry, spec, status, submitted_at,"
        " probe_client_id, probe_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'new', ?, ?, ?)",
        (account_id, kind, name.strip(), price, source, source_hash(source), entry, spec, now, probe_client_id,
         probe_size),
    )


def job_row(tx, job_id: int, lock: bool = False) -> Dict[str, Any]:
    row = tx.one("SELECT * FROM jobs WHERE id = ?" + (tx.for_update if lock else ""), (job_id,))
    if row is None:
        raise NotFound(f"no job {job_id}")
    return row


def owned_job(tx, account_id: int, job_id: int, lock: bool = False) -> Dict[str, Any]:
    """The job, if this account owns it; otherwise 'no job' (never reveal other members' jobs)."""
    row = tx.one("SELECT * FROM jobs WHERE id = ? AND account_id = ?" + (tx.for_update if lock else ""),
                 (job_id, account_id))
    if row is None:
        raise NotFound(f"no job {job_id} in your account — list yours with: market status")
    return row


def init_job(tx, account_id: Optional[int], job_id: int, state: bytes, now: float) -> None:
    """Store state #0 (committed) and put the job on the ready list (the paper's ``init``)."""
    job = owned_job(tx, account_id, job_id, lock=True) if account_id is not None else job_row(tx, job_id, lock=True)
    if job["status"] != "new":
        raise Conflict(f"job {job_id} already has its initial state")
    tx.insert("INSERT INTO states (job_id, seq, data, status, created_at) VALUES (?, 0, ?, 'committed', ?)",
              (job_id, bytes(state), now))
    tx.execute("UPDATE jobs SET status = 'ready' WHERE id = ?", (job_id,))


def committed_state(tx, job_id: int) -> Dict[str, Any]:
    row = tx.one("SELECT id, seq, data FROM states WHERE job_id = ? AND status = 'committed'", (job_id,))
    if row is None:
        raise NotFound(f"job {job_id} has no committed state")
    return row


def ready_jobs(tx, limit: int) -> List[Dict[str, Any]]:
    """The top ``limit`` ready jobs in the matcher's order (price desc, submitted asc, id asc).

    The index ``jobs_ready`` lets the database pick the top rows without sorting the ready list.
    """
    return tx.all(
        "SELECT j.id, j.price, j.submitted_at, j.account_id, j.kind, j.spec FROM jobs j"
        " WHERE j.status = 'ready' AND j.kind IN ('job', 'task')"
        " ORDER BY j.price DESC, j.submitted_at ASC, j.id ASC LIMIT ?",
        (int(limit),),
    )


def reserved_for(tx, account_id: int) -> int:
    """Cents promised to open leases of this account's jobs (not yet paid)."""
    return int(tx.scalar(
        "SELECT COALESCE(SUM(d.reserved), 0) FROM dispatches d JOIN jobs j ON j.id = d.job_id"
        " WHERE d.status = 'out' AND j.account_id = ?", (account_id,)) or 0)


def task_seconds(spec: Optional[str]) -> Optional[float]:
    if not spec:
        return None
    import json

    try:
        return float(json.loads(spec)["limits"]["time"])
    except (ValueError, KeyError, TypeError):
        return None


def assign_window(tx, clients: List[Any], now: float, grace: float, granted: Dict[int, float],
                  match: Callable[[List[Any], List[Any]], List[Any]], make_ready_job: Callable[..., Any]) -> Dict[int, Dict[str, Any]]:
    """Close one pooling window in ONE transaction: pick affordable ready jobs, match, check out.

    ``clients`` are matcher clients (with ``.id``); ``granted[client_id]`` is each client's
    negotiated slice; ``match`` is the pure matcher and ``make_ready_job(row)`` turns a row into its
    input. Jobs whose owner cannot pay for a slice are marked held (visible), not dispatched.
    Returns ``{client_id: dispatch}`` for the clients that got work.
    """
    if not clients:
        return {}
    longest = max(granted.values())
    candidates = []
    available: Dict[int, int] = {}
    # Over-fetch so held jobs do not starve the window; stop once we have enough affordable ones.
    for row in ready_jobs(tx, len(clients) * 2 + 8):
        owner = row["account_id"]
        if owner not in available:
            available[owner] = sql_accounts.balance(tx, owner) - reserved_for(tx, owner)
        need = money.payment(row["price"], int(1000 * (task_seconds(row["spec"]) or longest)))
        if available[owner] < need:
            tx.execute("UPDATE jobs SET status = 'held' WHERE id = ? AND status = 'ready'", (row["id"],))
            continue
        available[owner] -= need
        candidates.append(row)
        if len(candidates) >= len(clients):
            break
    rows = {row["id"]: row for row in candidates}
    dispatched = {}
    for assignment in match(clients, [make_ready_job(r) for r in candidates]):
        job_id, client_id = assignment.job.id, assignment.client.id
        seconds = task_seconds(rows[job_id]["spec"]) or granted[client_id]
        dispatched[client_id] = checkout(tx, job_id, client_id, seconds, grace, now)
    return dispatched


def checkout(tx, job_id: int, client_id: int, seconds: float, grace: float, now: float) -> Dict[str, Any]:
    """Lease the job's committed state to a client until ``now + seconds + grace``."""
    job = job_row(tx, job_id, lock=True)
    if job["status"] not in ("ready",) and job["kind"] != "test":
        raise Conflict(f"job {job_id} is {job['status']}, not ready")
    state = committed_state(tx, job_id)
    deadline = now + seconds + grace
    reserved = money.payment(job["price"], int(seconds * 1000)) if job["kind"] != "test" else 0
    dispatch_id = tx.insert(
        "INSERT INTO dispatches (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline, status,"
        " reserved) VALUES (?, ?, ?, ?, ?, ?, 'out', ?)",
        (job_id, state["id"], client_id, now, seconds, deadline, reserved),
    )
    tx.execute("UPDATE jobs SET status = 'running' WHERE id = ?", (job_id,))
    return {"stateid": dispatch_id, "job_id": job_id, "kind": job["kind"], "name": job["name"],
            "state": bytes(state["data"]), "seq": state["seq"], "source": job["source"], "entry": job["entry"],
            "spec": job["spec"], "granted": seconds, "deadline": deadline, "timeout": seconds + grace,
            "probe_size": job["probe_size"]}


def create_probe(tx, client_id: int, source: str, entry: str, envelope: bytes, size: int, seconds: float,
                 grace: float, now: float) -> Dict[str, Any]:
    """A test job for one client, checked out to it at once (test jobs never join the ready list)."""
    job_id = create_job(tx, None, f"test job for client {client_id}", 0, source, entry, now, kind="test",
                        probe_client_id=client_id, probe_size=size)
    init_job(tx, None, job_id, envelope, now)
    return checkout(tx, job_id, client_id, seconds, grace, now)


def dispatch_row(tx, dispatch_id: int, lock: bool = False) -> Dict[str, Any]:
    row = tx.one("SELECT * FROM dispatches WHERE id = ?" + (tx.for_update if lock else ""), (dispatch_id,))
    if row is None:
        raise NotFound(f"no checked-out state {dispatch_id}")
    return row


def _lease_for_checkin(tx, dispatch_id: int, client_id: int) -> Dict[str, Any]:
    """The lease with what a check-in needs (job, price, owner, payee, seq) in one locking read."""
    d = tx.one(
        "SELECT d.id, d.job_id, d.state_id, d.client_id, d.checked_out_at, d.granted_seconds, d.deadline,"
        " d.status, d.paid, d.accepted_ms, j.status AS job_status, j.kind, j.price, j.account_id AS owner,"
        " c.account_id AS payee, s.seq FROM dispatches d JOIN jobs j ON j.id = d.job_id"
        " JOIN clients c ON c.id = d.client_id JOIN states s ON s.id = d.state_id WHERE d.id = ?" + tx.for_update,
        (dispatch_id,))
    if d is None:
        raise NotFound(f"no checked-out state {dispatch_id}")
    if d["client_id"] != client_id:
        raise Forbidden(f"state {dispatch_id} was not checked out to client {client_id}")
    return d


def _pay(tx, lease: Dict[str, Any], now: float) -> Tuple[int, int]:
    """(accepted ms, cents paid) for the server-measured time, capped at the granted slice."""
    ms = int(max(0.0, min(now - lease["checked_out_at"], lease["granted_seconds"])) * 1000)
    amount = money.payment(lease["price"], ms) if lease["kind"] != "test" else 0
    owner, payee = lease["owner"], lease["payee"]
    if amount <= 0 or owner is None or owner == payee:
        return ms, 0  # test jobs are free; running your own job on your own machine costs nothing
    entry = ledger.Entry(owner, payee, amount, "payment", f"job {lease['job_id']} slice {lease['id']}")
    try:
        sql_accounts.post(tx, entry, now, dispatch_id=lease["id"])
        return ms, amount
    except ledger.InsufficientFunds:
        # the lease reserved the money, so this only happens after an operator's correction:
        # pay what is there rather than refuse the worker's honest work
        available = sql_accounts.balance(tx, owner)
        if available > 0:
            sql_accounts.post(tx, entry.with_amount(available), now, dispatch_id=lease["id"])
        return ms, max(0, available)


def _answer(d: Dict[str, Any], duplicate: bool = False) -> Dict[str, Any]:
    return {"stateid": d["id"], "status": d["status"], "paid": int(d["paid"] or 0), "duplicate": duplicate,
            "accepted_ms": int(d["accepted_ms"] or 0)}


def _reject(tx, lease: Dict[str, Any], now: float, slice_status: str) -> Dict[str, Any]:
    tx.execute("UPDATE dispatches SET status = 'rejected', checked_in_at = ?, slice_status = ? WHERE id = ?",
               (now, slice_status, lease["id"]))
    _release(tx, job_row(tx, lease["job_id"], lock=True))
    return {"stateid": lease["id"], "status": "rejected", "paid": 0, "duplicate": False, "accepted_ms": 0}


def _late_or_over(lease: Dict[str, Any], now: float) -> bool:
    return now > lease["deadline"] or lease["job_status"] in ("cancelled", "finished")


def checkin(tx, dispatch_id: int, client_id: int, state: bytes, now: float, slice_status: str = "ok",
            progress: Optional[float] = None) -> Dict[str, Any]:
    """The paper's ``state``: commit a new state if it arrives before the deadline, else reject it.

    Repeating an accepted check-in answers the same again and pays nothing twice.
    """
    lease = _lease_for_checkin(tx, dispatch_id, client_id)
    if lease["status"] != OPEN:
        return _answer(lease, duplicate=True)
    if _late_or_over(lease, now):
        return _reject(tx, lease, now, slice_status)
    tx.execute("UPDATE states SET status = 'superseded' WHERE job_id = ? AND status = 'committed'",
               (lease["job_id"],))
    new_state = tx.insert(
        "INSERT INTO states (job_id, seq, data, status, client_id, dispatch_id, created_at)"
        " VALUES (?, ?, ?, 'committed', ?, ?, ?)",
        (lease["job_id"], lease["seq"] + 1, bytes(state), client_id, dispatch_id, now))
    ms, paid = _pay(tx, lease, now)
    tx.execute("UPDATE dispatches SET status = 'accepted', checked_in_at = ?, slice_status = ?, new_state_id = ?,"
               " accepted_ms = ?, paid = ? WHERE id = ?", (now, slice_status, new_state, ms, paid, dispatch_id))
    # one open lease per job at a time (checkout needs 'ready'), so the job is simply ready again
    next_status = "finished" if lease["kind"] == "test" else "ready"
    if progress is not None:
        progress = max(0.0, min(1.0, float(progress)))
    tx.execute("UPDATE jobs SET executed_ms = executed_ms + ?, slices = slices + 1, progress = COALESCE(?, progress),"
               " status = CASE WHEN status = 'running' THEN ? ELSE status END WHERE id = ?",
               (ms, progress, next_status, lease["job_id"]))
    return {"stateid": dispatch_id, "status": "accepted", "paid": paid, "duplicate": False, "accepted_ms": ms}


def finish(tx, dispatch_id: int, client_id: int, result: Optional[bytes], outcome: str, error: Optional[str],
           now: float) -> Dict[str, Any]:
    """The paper's ``result``: the job finished (or failed) during this lease; store it and pay."""
    lease = _lease_for_checkin(tx, dispatch_id, client_id)
    if lease["status"] != OPEN:
        return _answer(lease, duplicate=True)
    if _late_or_over(lease, now):
        return _reject(tx, lease, now, outcome)
    ms, paid = _pay(tx, lease, now)
    tx.execute("UPDATE dispatches SET status = 'finished', checked_in_at = ?, slice_status = ?, accepted_ms = ?,"
               " paid = ? WHERE id = ?", (now, outcome, ms, paid, dispatch_id))
    tx.execute("UPDATE jobs SET status = 'finished', finished_at = ?, outcome = ?, result = ?, error = ?,"
               " progress = 1.0, executed_ms = executed_ms + ?, slices = slices + 1 WHERE id = ?",
               (now, outcome, None if result is None else bytes(result), error, ms, lease["job_id"]))
    return {"stateid": dispatch_id, "status": "finished", "paid": paid, "duplicate": False, "accepted_ms": ms}


def _release(tx, job: Dict[str, Any]) -> None:
    """Back on the ready list, unless another lease is open or the job is over."""
    if job["status"] != "running":
        return
    if job["kind"] == "test":
        # a test job is measured in one lease; one that did not finish just measured nothing
        tx.execute("UPDATE jobs SET status = 'finished', outcome = 'unfinished' WHERE id = ?", (job["id"],))
        return
    if tx.scalar("SELECT COUNT(*) FROM dispatches WHERE job_id = ? AND status = 'out'", (job["id"],)):
        return
    tx.execute("UPDATE jobs SET status = 'ready' WHERE id = ?", (job["id"],))


def expire_leases(tx, now: float) -> List[int]:
    """Expire every lease past its deadline; their jobs return to the ready list at their committed state."""
    overdue = tx.all("SELECT id, job_id FROM dispatches WHERE status = 'out' AND deadline < ?" + tx.for_update,
                     (now,))
    for d in overdue:
        tx.execute("UPDATE dispatches SET status = 'expired' WHERE id = ?", (d["id"],))
        job = job_row(tx, d["job_id"], lock=True)
        if job["kind"] == "test":
            tx.execute("UPDATE jobs SET status = 'finished', outcome = 'expired', finished_at = ? WHERE id = ?",
                       (now, job["id"]))
        else:
            _release(tx, job)
    return [d["id"] for d in overdue]


def set_price(tx, account_id: int, job_id: int, price: int) -> None:
    job = owned_job(tx, account_id, job_id, lock=True)
    if job["status"] in ("finished", "cancelled"):
        raise Conflict(f"job {job_id} is {job['status']}; its price can no longer change")
    tx.execute("UPDATE jobs SET price = ?, status = CASE WHEN status = 'held' THEN 'ready' ELSE status END"
               " WHERE id = ?", (price, job_id))


def release_held(tx, account_id: int) -> int:
    """After a grant: the owner's held jobs go back on the ready list to be re-checked."""
    return tx.execute("UPDATE jobs SET status = 'ready' WHERE account_id = ? AND status = 'held'", (account_id,))


def cancel_job(tx, account_id: int, job_id: int, now: float) -> Dict[str, Any]:
    job = owned_job(tx, account_id, job_id, lock=True)
    if job["status"] in ("finished", "cancelled"):
        raise Conflict(f"job {job_id} is already {job['status']}")
    tx.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, outcome = 'abort' WHERE id = ?",
               (now, job_id))
    return job_row(tx, job_id)


def list_jobs(tx, account_id: int) -> List[Dict[str, Any]]:
    return tx.all(
        "SELECT id, kind, name, price, status, submitted_at, executed_ms, slices, progress, finished_at, outcome"
        " FROM jobs WHERE account_id = ? ORDER BY id", (account_id,))


def job_status(tx, account_id: int, job_id: int) -> Dict[str, Any]:
    job = owned_job(tx, account_id, job_id)
    out = {k: job[k] for k in ("id", "kind", "name", "price", "status", "submitted_at", "executed_ms", "slices",
                               "progress", "finished_at", "outcome", "error")}
    out["last_slice"] = tx.one(
        "SELECT id, client_id, status, slice_status, checked_out_at, checked_in_at FROM dispatches"
        " WHERE job_id = ? ORDER BY id DESC LIMIT 1", (job_id,))
    return out


def job_result(tx, account_id: int, job_id: int) -> Dict[str, Any]:
    job = owned_job(tx, account_id, job_id)
    if job["status"] not in ("finished", "cancelled"):
        raise Conflict(f"job {job_id} is {job['status']}; it has no result yet")
    return {"id": job_id, "kind": job["kind"], "outcome": job["outcome"], "result": job["result"],
            "error": job["error"]}


def lease_is_open(tx, dispatch_id: int) -> bool:
    """For a worker's polling: is its lease still wanted (the job not cancelled, lease not expired)?"""
    d = dispatch_row(tx, dispatch_id)
    if d["status"] != OPEN:
        return False
    return job_row(tx, d["job_id"])["status"] == "running"


def fail_lease(tx, dispatch_id: int, client_id: int, slice_status: str, message: str,
               now: float) -> Dict[str, Any]:
    """A slice that produced no usable state: reject the lease; the job keeps its committed state.

    A test job ends; a job that failed with the same crash, memory or refused status three times
    over its life ends with that outcome, since it is then the job's fault, not the workers'.
    """
    lease = _lease_for_checkin(tx, dispatch_id, client_id)
    if lease["status"] != OPEN:
        return _answer(lease, duplicate=True)
    answer = _reject(tx, lease, now, slice_status)
    failures = tx.scalar("SELECT COUNT(*) FROM dispatches WHERE job_id = ? AND slice_status = ?",
                         (lease["job_id"], slice_status))
    if lease["kind"] == "test" or (slice_status in ("memory", "refused", "crash") and failures >= 3):
        tx.execute("UPDATE jobs SET status = 'finished', finished_at = ?, outcome = ?, error = ? WHERE id = ?",
                   (now, slice_status, message[:2000], lease["job_id"]))
    return answer
