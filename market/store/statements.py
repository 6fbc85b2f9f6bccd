"""An account's statement: its money per job, per batch, per client and per day, over a date range.

Read from the ledger alone (every cent that moved is a ledger row): what the account paid for its
jobs' slices (payments, less the reversals verification gave back), what its clients earned
(payments to it, less what was taken back), and per day everything in and out. Owner-only: every
query is bounded to the caller's account; bounded in size: at most ``MAX_DAYS`` of range and
``MAX_ROWS`` rows (the answer says ``truncated``).
"""

from __future__ import annotations

from typing import Any

from market.core.errors import MarketError

BY = ("job", "batch", "client", "day")
MAX_DAYS = 366
MAX_ROWS = 1000
DAY = 86_400


def statement(tx, account_id: int, by: str, since: float, until: float, limit: int = MAX_ROWS) -> dict[str, Any]:
    """``{by, since, until, rows, truncated, paid, earned}`` for ``account_id``; amounts in cents.

    ``rows`` per ``by``: job ``{job, name, batch, slices, paid}``; batch ``{batch, name, jobs,
    slices, paid}``; client ``{client, name, slices, earned}``; day ``{day, in, out}`` (``day``
    as ``YYYY-MM-DD`` UTC, ``in``/``out`` every kind of entry: grants, earnings, payments).
    ``slices`` counts the slices that moved money (one whose cost its job carried on paid nothing).
    """
    if by not in BY:
        raise MarketError(f"a statement is by {', '.join(BY)} — got {by!r}")
    if not until > since:
        raise MarketError("a statement's range must end after it starts")
    if until - since > MAX_DAYS * DAY:
        raise MarketError(f"a statement covers at most {MAX_DAYS} days — narrow --since/--until")
    limit = max(1, min(int(limit), MAX_ROWS))
    me, span = account_id, (since, until)
    # a job's cost: payments it made, less reversals it got back (both name the slice's lease)
    spent = (
        "SELECT d.job_id, d.id AS lease_id,"
        " CASE WHEN e.debit_account = ? THEN e.amount ELSE -e.amount END AS amount"
        " FROM ledger e JOIN leases d ON d.id = e.lease_id JOIN jobs j ON j.id = d.job_id"
        " WHERE j.account_id = ? AND e.at >= ? AND e.at < ?"
        " AND ((e.kind = 'payment' AND e.debit_account = ?) OR (e.kind = 'reversal' AND e.credit_account = ?))"
    )
    spent_args = (me, me, *span, me, me)
    if by == "job":
        rows = tx.all(
            f"SELECT s.job_id AS job, j.name, j.batch_id AS batch, COUNT(DISTINCT s.lease_id) AS slices,"
            f" SUM(s.amount) AS paid FROM ({spent}) s JOIN jobs j ON j.id = s.job_id"
            f" GROUP BY s.job_id, j.name, j.batch_id ORDER BY s.job_id LIMIT {limit + 1}",
            spent_args,
        )
    elif by == "batch":
        rows = tx.all(
            f"SELECT j.batch_id AS batch, b.name, COUNT(DISTINCT s.job_id) AS jobs,"
            f" COUNT(DISTINCT s.lease_id) AS slices, SUM(s.amount) AS paid FROM ({spent}) s"
            f" JOIN jobs j ON j.id = s.job_id JOIN batches b ON b.id = j.batch_id"
            f" GROUP BY j.batch_id, b.name ORDER BY j.batch_id LIMIT {limit + 1}",
            spent_args,
        )
    elif by == "client":
        rows = tx.all(
            "SELECT c.id AS client, c.name, COUNT(DISTINCT d.id) AS slices,"
            " SUM(CASE WHEN e.credit_account = ? THEN e.amount ELSE -e.amount END) AS earned"
            " FROM ledger e JOIN leases d ON d.id = e.lease_id JOIN clients c ON c.id = d.client_id"
            " WHERE c.account_id = ? AND e.at >= ? AND e.at < ?"
            " AND ((e.kind = 'payment' AND e.credit_account = ?) OR (e.kind = 'reversal' AND e.debit_account = ?))"
            f" GROUP BY c.id, c.name ORDER BY c.id LIMIT {limit + 1}",
            (me, me, *span, me, me),
        )
    else:
        day = f"FLOOR(e.at / {DAY})"
        rows = tx.all(
            f"SELECT {day} AS day, SUM(CASE WHEN e.credit_account = ? THEN e.amount ELSE 0 END) AS inflow,"
            " SUM(CASE WHEN e.debit_account = ? THEN e.amount ELSE 0 END) AS outflow"
            " FROM ledger e WHERE (e.credit_account = ? OR e.debit_account = ?) AND e.at >= ? AND e.at < ?"
            f" GROUP BY {day} ORDER BY {day} LIMIT {limit + 1}",
            (me, me, me, me, *span),
        )
        rows = [{"day": _date(int(r["day"]) * DAY), "in": int(r["inflow"]), "out": int(r["outflow"])} for r in rows]
    rows = [_ints(r) for r in rows]
    truncated = len(rows) > limit
    rows = rows[:limit]
    paid = sum(r.get("paid", 0) for r in rows)
    earned = sum(r.get("earned", 0) for r in rows)
    return {
        "by": by,
        "since": since,
        "until": until,
        "rows": rows,
        "truncated": truncated,
        "paid": paid,
        "earned": earned,
    }


def _ints(row: dict[str, Any]) -> dict[str, Any]:
    # SUM/COUNT come back as Decimal on MariaDB; XML-RPC and JSON want plain ints (and no NULLs)
    out = {}
    for k, v in row.items():
        if v is None:
            out[k] = "" if k == "name" else 0
        elif k in ("name", "day"):
            out[k] = str(v)
        else:
            out[k] = int(v)
    return out


def _date(at: float) -> str:
    import time

    return time.strftime("%Y-%m-%d", time.gmtime(at))


def parse_range(since: str | None, until: str | None, now: float, days: int = 30) -> tuple[float, float]:
    """``YYYY-MM-DD`` dates (UTC; ``until`` inclusive) -> ``(since, until)`` seconds; by default
    the last ``days`` days up to now."""
    import calendar
    import time

    def day(text: str, what: str) -> float:
        try:
            return float(calendar.timegm(time.strptime(text.strip(), "%Y-%m-%d")))
        except (ValueError, AttributeError):
            raise MarketError(f"{what} must be a date like 2026-12-04, got {text!r}") from None

    end = day(until, "until") + DAY if until else now
    start = day(since, "since") if since else end - days * DAY
    return start, end
