"""Submitting a job: the one path behind ``market submit``, the web form, XML-RPC ``job``/``init``,
the demo and the tests.

The paper's two steps stay: ``job`` stores the module, the price and the name and gives the job its
id (status ``new``); ``init`` stores state #0, which carries that id, and puts the job on the ready
list. Everything that costs CPU — validating and compiling the module, checking the arguments and
freezing them — happens once, in :func:`prepare`, before the job has an id and outside any database
transaction. Once the id is known, ``state(job_id)`` only stamps it into the envelope header.

Three ways through, each the same two steps:

* **in one transaction** where the caller holds the database (the web form, tests):
  ``db.run(submit, account_id, prepare(...), name, price, now)`` — ``job`` and ``init`` commit together;
* **over XML-RPC** (``market submit``, ``market demo``): :func:`submit_over_rpc` calls ``job`` then
  ``init`` on the server;
* **the server's side** of those two calls (``market.rpc.methods``): :func:`check_source` (CPU, in a
  thread) then :func:`create` in a transaction; :func:`read_initial_state` then :func:`init` in a
  transaction. The server validates the module again: it trusts no client.
"""

from __future__ import annotations

import threading
import xmlrpc.client
from typing import Any

from market import tasklet
from market.core import money
from market.core.errors import JobRefused, MarketError, TooLarge
from market.store import jobs as sql_jobs

#: the largest module the market takes, in UTF-8 bytes
MAX_SOURCE = 1024 * 1024

# The runtime caches compiled jobs in a plain dict, and servers validate in threads: one at a time.
# (Compiling holds the GIL anyway, so this costs no parallelism.)
_compiling = threading.Lock()


def _check_size(source: str) -> None:
    if not isinstance(source, str):
        raise MarketError("the module must be text")
    if len(source.encode("utf-8", "surrogatepass")) > MAX_SOURCE:
        raise TooLarge(f"the module is over {MAX_SOURCE // 1024} KiB")


def prepare(
    source: str, entry: str, args: list | tuple = (), kwargs: dict[str, Any] | None = None
) -> tasklet.PreparedJob:
    """Check and freeze a job before it has an id: its size, the runtime's validation and compilation,
    the arguments against the entry function, and state #0's payload.

    CPU work: call it outside any transaction, and off the reactor thread in a server. The result's
    ``state(job_id)`` is state #0 for the job once :func:`create` (or XML-RPC ``job``) gave it its id.
    Raises :class:`JobRefused` (every problem with its line) or :class:`TooLarge`.
    """
    _check_size(source)
    with _compiling:
        try:
            return tasklet.prepare(source, entry, list(args), dict(kwargs or {}))
        except tasklet.JobRefused as e:
            raise JobRefused(str(e)) from None


def check_source(source: str, entry: str) -> None:
    """The server's check of a module sent to XML-RPC ``job``: its size and the runtime's validation.

    CPU work: call it in a thread, outside any transaction. Raises :class:`JobRefused` or
    :class:`TooLarge`.
    """
    _check_size(source)
    with _compiling:
        try:
            tasklet.validate(source, entry)
        except tasklet.JobRefused as e:
            raise JobRefused(str(e)) from None


def read_initial_state(state: bytes) -> tasklet.Header:
    """The header of a state sent to XML-RPC ``init`` (structure, version, checksum); never decodes
    the payload. Call it outside the transaction that stores the state."""
    try:
        return tasklet.read_header(state)
    except tasklet.EnvelopeError as e:
        raise MarketError(f"the initial state is not a valid envelope: {e}") from None


# -- in a transaction ----------------------------------------------------------------------------


def create(tx, account_id: int, name: str, price: int, source: str, entry: str, now: float) -> int:
    """The paper's ``job``: store the (already checked) module, price and name; the job has no state
    yet. Returns the job id."""
    return sql_jobs.create_job(tx, account_id, name, price, source, entry, now)


def init(tx, account_id: int, job_id: int, state: bytes, header: tasklet.Header, now: float) -> None:
    """The paper's ``init``: store state #0 (``header`` from :func:`read_initial_state`) if it was
    made from this job's module and entry, and put the job on the ready list."""
    job = sql_jobs.owned_job(tx, account_id, job_id)
    if (
        header.source_sha256 != job["source_sha256"]
        or header.entry != job["entry"]
        or header.seq != 0
        or header.job_id not in (None, job_id)
    ):
        raise MarketError(
            "the initial state was not made from this job's module and entry"
            " (source hash, entry, sequence number or job id differ)"
        )
    sql_jobs.init_job(tx, account_id, job_id, state, now)


def submit(tx, account_id: int, job: tasklet.PreparedJob, name: str, price: int, now: float) -> int:
    """``job`` then ``init`` in one transaction; returns the job id. ``job`` is from :func:`prepare`
    (nothing CPU-heavy happens here); ``price`` is in cents per second."""
    job_id = create(tx, account_id, name, price, job.source, job.entry, now)
    sql_jobs.init_job(tx, account_id, job_id, job.state(job_id), now)
    return job_id


# -- over XML-RPC --------------------------------------------------------------------------------


def submit_over_rpc(proxy, account_id: int, job: tasklet.PreparedJob, name: str, price: int) -> int:
    """``job`` then ``init`` through ``proxy`` (an ``xmlrpc.client.ServerProxy`` authenticated as the
    account); returns the job id. ``price`` is in cents per second. A refusal is the server's
    ``xmlrpc.client.Fault``."""
    job_id = proxy.job(account_id, job.source, money.format_cents(price), name, job.entry)
    proxy.init(job_id, xmlrpc.client.Binary(job.state(job_id)))
    return job_id
