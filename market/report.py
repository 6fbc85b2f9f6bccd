"""The XML system report (paper, spec 5f): clients, jobs and dispatches, valid against report.xsd.

The report is written incrementally with ``lxml.etree.xmlfile``: rows come from the store in
id-ordered batches, each batch in its own short transaction, and each element is written and
forgotten, so a market with a million jobs never has its whole tree (or result set) in memory.
A consequence worth knowing: the report is not one snapshot; a job may change status between
the batch that lists it and the batch that lists its dispatches.

Privacy (spec 5f ii): the ``owner`` attribute, and a client's ``name``, appear only on the
requester's own jobs and clients. An anonymous report (no requester) links nothing to anyone.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree

from market.core import money, states
from market.core.errors import MarketError
from market.core.rules import JobStatus, LeaseStatus

NAMESPACE = "urn:market:report:1"
VERSION = "1"

# characters XML 1.0 cannot carry at all; a job name is member input and may contain them
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TEXT_MAX = 255

# the published vocabularies (report.xsd): a job's and a lease's (a <dispatch>'s) status
JOB_STATUSES = tuple(s.value for s in JobStatus)
DISPATCH_STATUSES = tuple(s.value for s in LeaseStatus)


def _q(name: str) -> str:
    return "{%s}%s" % (NAMESPACE, name)


# qualified names built once: the writer opens ~8 million elements for a million-job market
_Q = {
    name: _q(name)
    for name in (
        "report",
        "clients",
        "client",
        "name",
        "speed",
        "sandbox-level",
        "suspect",
        "jobs",
        "job",
        "price",
        "executed-seconds",
        "slices",
        "finished",
        "dispatches",
        "dispatch",
        "checked-out",
        "deadline",
        "checked-in",
    )
}


_SECTION_BREAK = "\n  "
_ROW_BREAK = "\n    "


def utc(t: float) -> str:
    """Epoch seconds -> xs:dateTime in UTC with milliseconds, e.g. ``2026-11-22T10:15:00.250Z``."""
    whole = math.floor(t)
    ms = int((t - whole) * 1000)
    g = time.gmtime(whole)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (g.tm_year, g.tm_mon, g.tm_mday, g.tm_hour, g.tm_min, g.tm_sec, ms)


def _text(value: Any) -> str:
    return _NOT_XML.sub("\ufffd", str(value))[:_TEXT_MAX]


def _speed(value: float) -> str:
    # repr round-trips exactly, so a reader parsing the text gets the very float the matcher used
    return repr(float(value))


def _seconds(ms: Any) -> str:
    ms = int(ms or 0)
    return "%d.%03d" % (ms // 1000, ms % 1000)


@dataclass
class ReportCounts:
    """How many of each element a report holds (for logs and the CLI)."""

    clients: int = 0
    jobs: int = 0
    dispatches: int = 0


def _batches(db, read: Callable[..., list[dict[str, Any]]], batch: int) -> Iterator[dict[str, Any]]:
    """Every row of ``read`` in id order, one short transaction per batch."""
    after = 0
    while True:
        rows = db.transact(read, after, batch)
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1]["id"]


def _leaves(xf, leaves) -> None:
    # one call per row rather than per element: this loop runs ~6 million times for a large market
    element, write = xf.element, xf.write
    for tag, text in leaves:
        with element(tag):
            write(text)


def _write_client(xf, row: dict[str, Any], owner: str | None) -> None:
    """``owner``: the requester's name if the client is theirs (linked, named), else None."""
    attrib = {"id": str(row["id"]), "status": "active" if row["status"] == "active" else "inactive"}
    if owner is not None:
        attrib["owner"] = owner
    xf.write(_ROW_BREAK)
    with xf.element(_Q["client"], attrib):
        if owner is not None:
            _leaves(xf, ((_Q["name"], _text(row["name"])),))
        speed = row["speed"]
        if speed is not None and row["measured_at"] is not None and math.isfinite(speed):
            with xf.element(_Q["speed"], {"measured-at": utc(row["measured_at"])}):
                xf.write(_speed(max(0.0, speed)))
        _leaves(
            xf,
            (
                (_Q["sandbox-level"], _text(row["sandbox_level"] or "unknown")),
                (_Q["suspect"], "true" if row["suspect"] else "false"),
            ),
        )


def _write_job(xf, row: dict[str, Any], owner: str | None) -> None:
    """``owner``: the requester's name if the job is theirs (linked), else None."""
    status = row["status"]
    if status not in JOB_STATUSES:
        # a status this release does not know must not compete in anyone's quote
        status = JobStatus.HELD.value
    attrib = {"id": str(row["id"]), "status": status, "kind": row["kind"]}
    if owner is not None:
        attrib["owner"] = owner
        if row.get("batch_id") is not None:  # the batch it belongs to: for its owner only, as the owner link
            attrib["batch"] = str(row["batch_id"])
    if row.get("verification") in ("verified", "unverified"):
        attrib["verification"] = row["verification"]
    elif status == JobStatus.FINISHED and row["kind"] == "job" and row.get("outcome") == "finished":
        attrib["verification"] = "unverified"  # a result no replay has agreed with yet
    # the words members read (market.core.states): a job ended by a failure is 'failed', with why
    state = states.job_state(status, row.get("outcome"))
    attrib["state"] = state.status
    attrib["reason"] = state.reason
    xf.write(_ROW_BREAK)
    with xf.element(_Q["job"], attrib):
        _leaves(
            xf,
            (
                (_Q["name"], _text(row["name"])),
                (_Q["price"], money.format_cents(max(0, int(row["price"])))),
                (_Q["executed-seconds"], _seconds(row["executed_ms"])),
                (_Q["slices"], str(int(row["slices"] or 0))),
                (_Q["finished"], "true" if status == JobStatus.FINISHED else "false"),
            ),
        )


def _write_dispatch(xf, row: dict[str, Any]) -> None:
    status = row["status"] if row["status"] in DISPATCH_STATUSES else LeaseStatus.FAILED.value
    attrib = {"id": str(row["id"]), "job": str(row["job_id"]), "client": str(row["client_id"]), "status": status}
    if row.get("check_id") is not None:
        attrib["replay"] = "true"
    xf.write(_ROW_BREAK)
    with xf.element(_Q["dispatch"], attrib):
        leaves = [(_Q["checked-out"], utc(row["checked_out_at"])), (_Q["deadline"], utc(row["deadline"]))]
        if row["checked_in_at"] is not None:
            leaves.append((_Q["checked-in"], utc(row["checked_in_at"])))
        _leaves(xf, leaves)


def write_report(
    db, out: Any, requester: str | None = None, now: float | None = None, batch: int = 5000
) -> ReportCounts:
    """Write the report for ``requester`` (an account name, or None for anonymous) to ``out``.

    ``out`` is a path or a binary file-like object. Raises NotFound for an unknown requester
    (before writing anything). Returns the number of clients, jobs and dispatches written.
    """
    from market.store import reports as sql

    requester_id = db.transact(sql.requester_id, requester)
    counts = ReportCounts()
    root_attrib = {"version": VERSION, "generated-at": utc(time.time() if now is None else now)}
    if requester is not None:
        root_attrib["requester"] = requester
    with etree.xmlfile(out, encoding="UTF-8") as xf:
        xf.write_declaration()
        # indented by hand (one row a line, its leaves on that line): the writer streams, so
        # lxml's pretty printing, which needs the whole tree, cannot do it
        with xf.element(_Q["report"], root_attrib, nsmap={None: NAMESPACE}):
            xf.write(_SECTION_BREAK)
            with xf.element(_Q["clients"]):
                for row in _batches(db, sql.client_batch, batch):
                    own = requester_id is not None and row["account_id"] == requester_id
                    _write_client(xf, row, requester if own else None)
                    counts.clients += 1
                xf.write(_SECTION_BREAK)
            xf.write(_SECTION_BREAK)
            with xf.element(_Q["jobs"]):
                for row in _batches(db, sql.job_batch, batch):
                    own = requester_id is not None and row["account_id"] == requester_id
                    _write_job(xf, row, requester if own else None)
                    counts.jobs += 1
                xf.write(_SECTION_BREAK)
            xf.write(_SECTION_BREAK)
            with xf.element(_Q["dispatches"]):
                for row in _batches(db, sql.lease_batch, batch):
                    _write_dispatch(xf, row)
                    counts.dispatches += 1
                xf.write(_SECTION_BREAK)
            xf.write("\n")
    return counts


def report_bytes(db, requester: str | None = None, now: float | None = None) -> bytes:
    """The whole report as bytes (for small markets and tests; large ones should stream to a file)."""
    import io

    buffer = io.BytesIO()
    write_report(db, buffer, requester, now)
    return buffer.getvalue()


_schema: etree.XMLSchema | None = None


def schema_path() -> str:
    """Where the XSD is: the copy installed as the quote tool's package data (same distribution).

    ``schema/report.xsd`` in the source tree is the document of record; a test keeps the two
    byte-identical, and the wheel test checks the installed copy is there.
    """
    import quote

    return os.path.join(os.path.dirname(os.path.abspath(quote.__file__)), "report.xsd")


def schema() -> etree.XMLSchema:
    """The report's XSD (``schema/report.xsd``), parsed once."""
    global _schema
    if _schema is None:
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        _schema = etree.XMLSchema(etree.parse(schema_path(), parser))
    return _schema


# -- command line (wired by market.cli as ``market report``) -----------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="market report", description="Write the XML system report (schema: schema/report.xsd)."
    )
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument(
        "--as",
        dest="requester",
        metavar="ACCOUNT",
        help="include owner links for ACCOUNT's own jobs and clients (default: anonymous)",
    )
    p.add_argument("--db", default=None, help="database URL (also accepted before the command)")
    return p


def main(argv: list[str] | None, db_url: str | None) -> int:
    """``market report [-o FILE] [--as ACCOUNT]``: 0 on success, 1 refused, 2 bad usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:
        return 0 if e.code in (0, None) else 2
    from market.store import Database, require_current

    db_url = args.db or db_url
    target = args.output
    partial = None
    try:
        db = Database(db_url)
        require_current(db)
        if target is None:
            counts = write_report(db, sys.stdout.buffer, args.requester)
            sys.stdout.buffer.write(b"\n")
            sys.stdout.flush()
        else:
            # write beside the target and rename, so a reader never sees half a report
            partial = target + ".partial"
            counts = write_report(db, partial, args.requester)
            os.replace(partial, target)
            partial = None
            print(
                f"wrote {target}: {counts.clients} clients, {counts.jobs} jobs, {counts.dispatches} dispatches",
                file=sys.stderr,
            )
        return 0
    except MarketError as e:
        print(f"market report: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"market report: cannot write {target or 'standard output'}: {e.strerror or e}", file=sys.stderr)
        return 1
    finally:
        if partial is not None and os.path.exists(partial):
            os.unlink(partial)
