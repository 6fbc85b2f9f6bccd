"""Job logs: what each slice printed (stdout and stderr), one row per slice in ``slice_logs``.

A worker carries a slice's output in the ``info`` struct of ``state`` or ``result`` (key ``log``);
it is a stranger's text: :func:`bounded` cuts it to the per-slice bound (the newest bytes, never
half a character) before it is stored, and :func:`append` trims the job's rows to the per-job bound,
oldest first, in the same transaction, so a job never holds more than ``[dispatch] job-log`` bytes.
Only the job's owner reads it (:func:`read` goes through ``owned_job``). Display code makes it
printable (``market.core.text.printable``): it may hold terminal escapes.
"""

from __future__ import annotations

from typing import Any

from market.store.jobs import owned_job

__all__ = ["CUT", "bounded", "slice_output", "append", "read"]


def bounded(text: str | bytes, limit: int) -> bytes:
    """The last ``limit`` bytes of ``text`` as UTF-8, starting at a whole character.

    Bytes that are not UTF-8 (and lone surrogates in a str) become U+FFFD; a cut that falls inside
    a character drops that character's tail bytes."""
    if isinstance(text, str):
        raw = text.encode("utf-8", "replace")
    else:
        # undecodable bytes become U+FFFD: what is stored is always valid UTF-8
        raw = bytes(text[-4 * limit :]).decode("utf-8", "replace").encode("utf-8")
    if len(raw) <= limit:
        return raw
    raw = raw[len(raw) - limit :]
    start = 0
    while start < len(raw) and start < 4 and (raw[start] & 0xC0) == 0x80:  # a continuation byte
        start += 1
    return raw[start:]


#: the first line of a slice's output that was longer than the slice's bound
CUT = b"[... the start of this slice's output was longer than the market keeps]\n"


def slice_output(text: str | bytes, limit: int) -> bytes:
    """A slice's output as stored: :func:`bounded` to ``limit`` bytes, and when that cut it,
    starting with :data:`CUT` (within the limit) so its reader knows."""
    whole = bounded(text, limit + 1)
    if len(whole) <= limit:
        return whole
    return CUT + bounded(whole, max(0, limit - len(CUT)))


def append(tx, job_id: int, lease_id: int, output: bytes, at: float, job_bound: int) -> None:
    """Store one slice's output (already :func:`slice_output`) and trim the job's log to ``job_bound``
    bytes: the newest rows kept whole, the one that crosses the bound cut to its tail, older ones
    deleted."""
    if not output:
        return
    tx.insert(
        "INSERT INTO slice_logs (job_id, lease_id, at, output) VALUES (?, ?, ?, ?)", (job_id, lease_id, at, output)
    )
    kept = 0
    # the job's rows are at most job_bound plus one slice's bound: trimming on every append keeps them so
    for row in tx.all("SELECT id, output FROM slice_logs WHERE job_id = ? ORDER BY id DESC", (job_id,)):
        size = len(bytes(row["output"]))
        if kept >= job_bound:
            tx.execute("DELETE FROM slice_logs WHERE id = ?", (row["id"],))
        elif kept + size > job_bound:
            tx.execute(
                "UPDATE slice_logs SET output = ? WHERE id = ?",
                (bounded(bytes(row["output"]), job_bound - kept), row["id"]),
            )
            kept = job_bound
        else:
            kept += size


def read(tx, account_id: int, job_id: int, after: int = 0) -> dict[str, Any]:
    """The owner's view of a job's log after row ``after``: ``{"job", "status", "log", "next",
    "slices"}`` — ``log`` the text of those slices in order, ``next`` the ``after`` for the next
    call (follow a log by passing it back), ``slices`` how many slices it holds. Another member's
    job is 'no job' (``owned_job``)."""
    job = owned_job(tx, account_id, job_id)
    rows = tx.all(
        "SELECT id, output FROM slice_logs WHERE job_id = ? AND id > ? ORDER BY id", (job_id, max(0, int(after)))
    )
    text = "".join(bytes(r["output"]).decode("utf-8", "replace") for r in rows)
    return {
        "job": job_id,
        "status": job["status"],
        "log": text,
        "next": rows[-1]["id"] if rows else max(0, int(after)),
        "slices": len(rows),
    }
