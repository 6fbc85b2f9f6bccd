"""Batches (parameter sweeps): one module and function, a list of argument sets, one price.

The path is a single job's (``market.jobs.submission``), once for the whole batch:

* the member's side (``market batch submit``): the argument sets are read from a JSON, JSON Lines
  or CSV file (:func:`read_argument_sets`), the module is checked and compiled ONCE and each set
  frozen into its state #0 (:func:`prepare_states`); then XML-RPC ``batch`` (the module, checked
  once by the server in a helper) and ``batch_add`` in chunks of at most :data:`CHUNK` states
  (:func:`submit_over_rpc`);
* the server's side: ``batch`` refuses a batch over the ``max-batch`` setting before any work;
  ``batch_add`` refuses a chunk over :data:`CHUNK` states or a state over ``max-argument-set``
  bytes before reading one, reads the headers (:func:`read_states`) off the reactor thread, and
  stores the chunk in one short transaction (``market.store.batches.add_jobs``).

An argument set is a JSON array (positional arguments), a JSON object (keyword arguments), or any
other JSON value (the one positional argument). A CSV file's header row names keyword arguments;
each cell is read as JSON when it is JSON (``3``, ``"x"``, ``[1,2]``) and as text otherwise.
"""

from __future__ import annotations

import csv
import io
import json
import xmlrpc.client
from collections.abc import Iterable, Sequence
from typing import Any

from market import tasklet
from market.core import money
from market.core.errors import JobRefused, MarketError, TooLarge
from market.tasklet import envelope

#: initial states one ``batch_add`` call carries at most (one transaction each)
CHUNK = 500
#: jobs ``batch_results`` answers at most in one call
RESULTS_PAGE = 100

#: bytes of module text a batch stores in all (each job keeps its own copy of the module)
MAX_BATCH_SOURCE = 256 * 1024 * 1024

ArgumentSet = tuple[list[Any], dict[str, Any]]


def argument_set(value: Any) -> ArgumentSet:
    """(positional, keyword) arguments of one argument set as written in a file."""
    if isinstance(value, list):
        return list(value), {}
    if isinstance(value, dict):
        if not all(isinstance(k, str) and k.isidentifier() for k in value):
            raise MarketError("a keyword argument set's keys must be argument names")
        return [], dict(value)
    return [value], {}


def _cell(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_source_copies(source: str, size: int) -> None:
    """Refuse a batch whose jobs' copies of the module would exceed :data:`MAX_BATCH_SOURCE`
    (:class:`TooLarge`): cheap, before any work."""
    total = len(source.encode("utf-8", "surrogatepass")) * size
    if total > MAX_BATCH_SOURCE:
        raise TooLarge(
            f"{size:,} jobs of a {len(source):,}-character module store {total // (1024 * 1024):,} MiB of module text;"
            f" a batch may store {MAX_BATCH_SOURCE // (1024 * 1024)} MiB: make the module smaller or split the batch"
        )


def read_argument_sets(text: str, fmt: str, limit: int) -> list[ArgumentSet]:
    """The argument sets of a file's ``text`` in format ``json`` (one array of sets), ``jsonl``
    (one set a line; blank lines skipped) or ``csv`` (a header row of argument names). Refuses more
    than ``limit`` sets (:class:`TooLarge`) and says which line is wrong."""
    values: list[Any] = []
    if fmt == "json":
        try:
            data = json.loads(text)
        except ValueError as e:
            raise MarketError(f"the argument sets are not valid JSON: {e}") from None
        if not isinstance(data, list):
            raise MarketError('a JSON file of argument sets holds one array: [[1, 2], [3, 4], {"n": 5}]')
        values = data
    elif fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    values.append(json.loads(line))
                except ValueError as e:
                    raise MarketError(f"line {number} of the argument sets is not JSON: {e}") from None
            if len(values) > limit:
                break
    elif fmt == "csv":
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if not header or not all(h.strip().isidentifier() for h in header):
            raise MarketError("a CSV file of argument sets starts with a row of argument names")
        names = [h.strip() for h in header]
        for row in reader:
            if not row:
                continue
            if len(row) != len(names):
                raise MarketError(f"line {reader.line_num} of the CSV has {len(row)} cells for {len(names)} names")
            values.append(dict(zip(names, map(_cell, row))))
            if len(values) > limit:
                break
    else:
        raise MarketError(f"unknown format {fmt!r}: json, jsonl or csv")
    if not values:
        raise MarketError("the file holds no argument sets")
    if len(values) > limit:
        raise TooLarge(f"a batch holds at most {limit:,} argument sets")
    return [argument_set(v) for v in values]


def format_of(path: str) -> str:
    """The argument file's format from its name: ``.csv``, ``.jsonl``/``.ndjson``, else ``json``."""
    lower = path.lower()
    if lower.endswith(".csv"):
        return "csv"
    if lower.endswith((".jsonl", ".ndjson")):
        return "jsonl"
    return "json"


def prepare_states(source: str, entry: str, sets: Sequence[ArgumentSet]) -> list[bytes]:
    """Each argument set's state #0 (without a job id). The module is checked and compiled once
    (the compiled job is reused for every set); a refused set names its place in the batch."""
    from market.jobs import submission

    states: list[bytes] = []
    for i, (args, kwargs) in enumerate(sets):
        try:
            if i == 0:  # the limits, the shape, validation and compilation: once
                job = submission.prepare(source, entry, args, kwargs)
            else:
                job = submission._runtime(tasklet.prepare, source, entry, list(args), dict(kwargs))
        except JobRefused as e:
            raise JobRefused(f"argument set {i + 1}: {e}") from None
        states.append(job.state(None))
    return states


def read_states(states: Sequence[bytes], entry: str) -> tuple[str, list[tuple[Any, bytes, str]]]:
    """(source sha256, [(header, payload, payload sha256)]) of initial states sent to
    ``batch_add``: each a valid envelope of sequence 0 for ``entry``, without a job id, all of one
    module. Reads headers and hashes (no payload is decoded): run it off the reactor thread."""
    read: list[tuple[Any, bytes, str]] = []
    source_sha256 = ""
    for i, data in enumerate(states):
        try:
            header = envelope.read_header(data)
        except envelope.EnvelopeError as e:
            raise MarketError(f"state {i + 1} is not a valid envelope: {e}") from None
        if header.seq != 0 or header.job_id is not None or header.entry != entry:
            raise MarketError(f"state {i + 1} is not an initial state of {entry} (sequence 0, no job id)")
        if source_sha256 and header.source_sha256 != source_sha256:
            raise MarketError(f"state {i + 1} was made from another module than state 1")
        source_sha256 = header.source_sha256
        payload = bytes(data)[-(header.payload_length + 32) : -32]
        read.append((header, payload, envelope.sha256_hex(payload)))
    return source_sha256, read


def frozen_batch(source: str, entry: str, text: str, fmt: str, limit: int, largest: int) -> dict[str, Any]:
    """The web batch form's work, in a helper: the argument sets read from ``text`` (at most
    ``limit``), the module checked once and every set frozen (each state at most ``largest``
    bytes), then read as ``batch_add`` reads them. A refusal comes back as data: (kind, words)."""
    from market.jobs import submission

    try:
        submission.check_shape(source)
        sets = read_argument_sets(text, fmt, limit)
        check_source_copies(source, len(sets))
        states = prepare_states(source, entry, sets)
        for i, state in enumerate(states):
            if len(state) > largest:
                raise TooLarge(f"argument set {i + 1} freezes to {len(state):,} bytes; the market takes {largest:,}")
        source_sha256, read = read_states(states, entry)
    except MarketError as e:
        return {"refusal": (e.kind, str(e)), "states": None}
    finally:
        tasklet.forget_compiled()
    return {"refusal": None, "source_sha256": source_sha256, "states": read}


def submit_over_rpc(
    proxy,
    account_id: int,
    source: str,
    entry: str,
    states: Sequence[bytes],
    name: str,
    price: int,
    cap: int | None = None,
) -> tuple[int, list[int]]:
    """XML-RPC ``batch`` then ``batch_add`` in chunks of :data:`CHUNK`; (batch id, job ids).
    ``cap`` (cents), the batch's spending cap, is set (``batch_cap``) before any job is added."""
    batch_id = proxy.batch(account_id, source, money.format_cents(price), name, entry, len(states))
    if cap is not None:
        proxy.batch_cap(batch_id, money.format_cents(cap))
    jobs: list[int] = []
    for start in range(0, len(states), CHUNK):
        chunk = [xmlrpc.client.Binary(s) for s in states[start : start + CHUNK]]
        jobs.extend(proxy.batch_add(batch_id, chunk))
    return batch_id, jobs


# -- results as JSON Lines and CSV -----------------------------------------------------------------

RESULT_FIELDS = ("index", "job", "status", "outcome", "verification", "error", "result")


def result_record(row: dict[str, Any], result_json: str | None) -> dict[str, Any]:
    """One job's line of a batch's results; ``result_json`` is its result as JSON text (None: none)."""
    return {
        "index": row["index"],
        "job": row["job"],
        "status": row.get("status") or "",
        "outcome": row.get("outcome") or "",
        "verification": row.get("verification") or "",
        "error": row.get("error") or "",
        "result": result_json,
    }


def jsonl_line(record: dict[str, Any]) -> str:
    """A record as one JSON Lines line: the result embedded as the JSON value it is."""
    head = json.dumps({k: record[k] for k in RESULT_FIELDS if k != "result"}, ensure_ascii=False)
    result = record["result"] if record["result"] is not None else "null"
    return head[:-1] + ', "result": ' + result + "}\n"


def csv_lines(records: Iterable[dict[str, Any]], header: bool) -> str:
    """Records as CSV rows (the result as its JSON text), with the header row first if ``header``."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(RESULT_FIELDS)
    for r in records:
        writer.writerow([("" if r[k] is None else r[k]) for k in RESULT_FIELDS])
    return out.getvalue()
