"""Submitting a job: the one path behind ``market submit``, the web form, XML-RPC ``job``/``init``,
the demo and the tests.

The paper's two steps stay: ``job`` stores the module, the price and the name and gives the job its
id (status ``new``); ``init`` stores state #0, which carries that id, and puts the job on the ready
list. Everything that costs CPU — validating and compiling the module, checking the arguments and
freezing them — happens once, before the job has an id and outside any database transaction. Once
the id is known, ``state(job_id)`` only stamps it into the envelope header.

A module is a stranger's input: before anything parses it, :func:`check_limits` refuses it
cheaply (bytes, lines, longest line: microseconds to a few milliseconds), and in the server the
parsing, validation and compilation run in a helper process (``market.offload``), where the
shape of the text is checked first (definitions, tokens, braces: what ``ast.parse`` and the
compiler's time and memory grow with), under the helper's time and memory limits.

Three ways through, each the same two steps:

* **in one transaction** where the caller holds the database (tests, the demo):
  ``db.run(submit, account_id, prepare(...), name, price, now)`` — ``job`` and ``init`` commit together;
* **the web form**: :func:`examine_in` (in a helper) then :func:`submit` in one transaction;
* **over XML-RPC** (``market submit``, ``market demo``): :func:`submit_over_rpc` calls ``job`` then
  ``init`` on the server, whose side is :func:`check_source_in` (in a helper) then :func:`create`
  in a transaction; :func:`read_initial_state` then :func:`init` in a transaction. The server
  validates the module again: it trusts no client.
"""

from __future__ import annotations

import ast
import re
import xmlrpc.client
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from market import tasklet
from market.core import money
from market.core.errors import KINDS, JobRefused, MarketError, TooLarge, error_for

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from market.offload.pool import HelperPool

#: the largest module the market takes, in UTF-8 bytes (published: XML-RPC Fault 8 above it)
MAX_SOURCE = 1024 * 1024
#: lines of a module
MAX_LINES = 20_000
#: characters of one line
MAX_LINE = 10_000
#: ``def``, ``class`` and ``lambda`` (each function is rewritten and compiled on its own)
MAX_DEFINITIONS = 2_000
#: words, numbers and symbols: ``ast.parse`` takes ~1 KiB of memory and ~5 µs for each
MAX_TOKENS = 150_000
#: ``{`` characters: CPython 3.11 parses an f-string's parts in time quadratic in their number
MAX_BRACES = 20_000

_LINE_BREAKS = re.compile(r"\r\n?")
_DEFINITIONS = re.compile(r"\b(?:def|class|lambda)\b")
# over-counts a real tokenizer (a string's words count one each), never under-counts it much
_TOKENS = re.compile(r"\w+|[^\w\s]")


def normal_source(source: str) -> str:
    """The module with every line break (CRLF from a web form's textarea, a lone CR) written as LF:
    the one form the market stores, hashes and compiles. Every way in (web form, XML-RPC ``job``,
    ``market submit``) goes through it before anything hashes the module, because a worker
    receives the module over XML-RPC, whose XML parser turns CRLF into LF: a state hashed from
    the CRLF text would then belong to "another job source" and the job could never run."""
    return _LINE_BREAKS.sub("\n", source) if isinstance(source, str) else source


def check_limits(source: str) -> None:
    """Refuse a module over the limits checked before any parsing: its bytes, lines and longest
    line. Cheap enough for the reactor thread (a few milliseconds for 1 MiB). Raises
    :class:`TooLarge` (or :class:`MarketError` if it is not text)."""
    if not isinstance(source, str):
        raise MarketError("the module must be text")
    # every character is at least one byte: a text longer than the limit is refused unencoded
    size = len(source) if len(source) > MAX_SOURCE else len(source.encode("utf-8", "surrogatepass"))
    if size > MAX_SOURCE:
        raise TooLarge(f"the module is over {MAX_SOURCE // 1024} KiB ({size:,} bytes)")
    lines = source.count("\n") + source.count("\r") - source.count("\r\n") + 1
    if lines > MAX_LINES:
        raise TooLarge(f"the module has {lines:,} lines; the market takes at most {MAX_LINES:,}")
    longest = max(map(len, _LINE_BREAKS.sub("\n", source).split("\n")))
    if longest > MAX_LINE:
        raise TooLarge(
            f"a line of the module has {longest:,} characters; the market takes at most {MAX_LINE:,} in one line"
        )


def check_shape(source: str) -> None:
    """Refuse a module whose text holds too many definitions, tokens or braces: the limits on what
    parsing and compiling it would cost, counted on the text in one pass each (~0.1 s for 1 MiB,
    so in a helper, before ``ast.parse``). Raises :class:`TooLarge`."""
    definitions = sum(1 for _ in _DEFINITIONS.finditer(source))
    if definitions > MAX_DEFINITIONS:
        raise TooLarge(
            f"the module has {definitions:,} def, class or lambda words; the market takes at most {MAX_DEFINITIONS:,}"
        )
    braces = source.count("{")
    if braces > MAX_BRACES:
        raise TooLarge(f"the module has {braces:,} '{{' characters; the market takes at most {MAX_BRACES:,}")
    tokens = sum(1 for _ in _TOKENS.finditer(source))
    if tokens > MAX_TOKENS:
        raise TooLarge(
            f"the module has about {tokens:,} words, numbers and symbols; the market takes at most {MAX_TOKENS:,}"
        )


def _runtime(work, *args):
    """Run the runtime's ``work``; its refusals, and input too deep or large for it, as market errors."""
    try:
        return work(*args)
    except tasklet.JobRefused as e:
        raise JobRefused(str(e)) from None
    except RecursionError:
        raise JobRefused("job refused: the module is nested too deeply") from None
    except MemoryError:
        raise TooLarge("the module needs more memory to check than the market gives it") from None


def prepare(
    source: str, entry: str, args: list | tuple = (), kwargs: dict[str, Any] | None = None
) -> tasklet.PreparedJob:
    """Check and freeze a job before it has an id, in this process: the limits, the runtime's
    validation and compilation, the arguments against the entry function, and state #0's payload.

    For a member's own module on their own machine (``market submit``), the demo and tests: a
    server runs the same in a helper (:func:`examine_in`). The result's ``state(job_id)`` is state
    #0 for the job once :func:`create` (or XML-RPC ``job``) gave it its id. Raises
    :class:`JobRefused` (every problem with its line) or :class:`TooLarge`.
    """
    source = normal_source(source)
    check_limits(source)
    check_shape(source)
    return _runtime(tasklet.prepare, source, entry, list(args), dict(kwargs or {}))


def read_initial_state(state: bytes) -> tasklet.Header:
    """The header of a state sent to XML-RPC ``init`` (structure, version, checksum); never decodes
    the payload. Call it outside the transaction that stores the state."""
    try:
        return tasklet.read_header(state)
    except tasklet.EnvelopeError as e:
        raise MarketError(f"the initial state is not a valid envelope: {e}") from None


# -- in a helper process (market.offload.registry) -------------------------------------------------


def checked_module(source: str, entry: str) -> None:
    """XML-RPC ``job``'s check of a module, in a helper: its shape, then the runtime's validation
    and compilation. Raises :class:`JobRefused` or :class:`TooLarge`."""
    check_shape(source)
    try:
        _runtime(tasklet.validate, source, entry)
    finally:
        tasklet.forget_compiled()  # the next module is another stranger's: hold no memory for this one


def function_names(source: str) -> list[str]:
    """The module's top-level function names, for the web form's menu ([] if it does not parse)."""
    try:
        tree = _runtime(ast.parse, source)
    except (SyntaxError, ValueError, MarketError):
        return []
    return [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]


def examined_module(source: str, entry: str, args: list, kwargs: dict[str, Any], freeze: bool) -> dict[str, Any]:
    """The web form's check, in a helper: the module's functions (``entry`` "" takes the only one),
    then, if ``freeze``, :func:`prepare`'s work. A refusal comes back as data, with the functions
    for the form."""
    check_shape(source)
    names = function_names(source)
    answer: dict[str, Any] = {"functions": names, "entry": entry, "job": None, "refusal": None}
    if not entry and len(names) == 1:
        entry = answer["entry"] = names[0]
    if not entry or not freeze:
        return answer
    try:
        job = _runtime(tasklet.prepare, source, entry, list(args), dict(kwargs))
    except MarketError as e:
        answer["refusal"] = (e.kind, str(e))
        return answer
    finally:
        tasklet.forget_compiled()  # the next module is another stranger's: hold no memory for this one
    answer["job"] = (job.header, job.payload)
    return answer


# -- the server's side: through the helper pool ----------------------------------------------------


@dataclass(frozen=True)
class Examined:
    """What the web form needs to know of a module: its functions, the entry used ("" when none was
    given and the module has not exactly one function), and the job or why it was refused."""

    functions: list[str]
    entry: str
    job: tasklet.PreparedJob | None
    refusal: MarketError | None


def check_source_in(pool: HelperPool, source: str, entry: str, owner: object = None) -> Deferred:
    """The server's check of a module sent to XML-RPC ``job``: :func:`check_limits` here, the rest
    (:func:`checked_module`) in a helper of ``pool``. A Deferred of None, or of the refusal
    (:class:`JobRefused`, :class:`TooLarge`, the pool's ``Busy``). Call it outside any transaction.
    """
    from twisted.internet import defer

    source = normal_source(source)
    try:
        check_limits(source)
    except MarketError:
        return defer.fail()
    return pool.call("market.jobs.submission:checked_module", source, entry, owner=owner)


def examine_in(
    pool: HelperPool,
    source: str,
    entry: str,
    args: list,
    kwargs: dict[str, Any],
    owner: object = None,
    freeze: bool = True,
) -> Deferred:
    """The web form's check: :func:`check_limits` here, the rest (:func:`examined_module`) in a
    helper of ``pool``: the module's functions, and with ``freeze`` the job (``entry`` "" takes
    the module's only function). A Deferred of :class:`Examined`; fails only with the limits'
    refusal or the pool's (busy, too slow, out of memory). Call it outside any transaction."""
    from twisted.internet import defer

    source = normal_source(source)
    try:
        check_limits(source)
    except MarketError:
        return defer.fail()

    def examined(answer: dict[str, Any]) -> Examined:
        job = None
        if answer["job"] is not None:
            header, payload = answer["job"]
            job = tasklet.PreparedJob(source, answer["entry"], header, payload)
        refusal = answer["refusal"]
        if refusal is not None:
            refusal = error_for(KINDS.get(refusal[0], KINDS["internal"]), refusal[1])
        return Examined(answer["functions"], answer["entry"], job, refusal)

    d = pool.call(
        "market.jobs.submission:examined_module", source, entry, list(args), dict(kwargs), freeze, owner=owner
    )
    return d.addCallback(examined)


# -- in a transaction ----------------------------------------------------------------------------


def create(tx, account_id: int, name: str, price: int, source: str, entry: str, now: float) -> int:
    """The paper's ``job``: store the (already checked) module, price and name; the job has no state
    yet. Returns the job id."""
    from market.store import jobs as sql_jobs  # here, not at the top: helpers import this module

    return sql_jobs.create_job(tx, account_id, name, price, normal_source(source), entry, now)


def init(tx, account_id: int, job_id: int, state: bytes, header: tasklet.Header, now: float) -> None:
    """The paper's ``init``: store state #0 (``header`` from :func:`read_initial_state`) if it was
    made from this job's module and entry, and put the job on the ready list."""
    from market.store import jobs as sql_jobs

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
    or :func:`examine_in` (nothing CPU-heavy happens here); ``price`` is in cents per second."""
    from market.store import jobs as sql_jobs

    job_id = create(tx, account_id, name, price, job.source, job.entry, now)
    sql_jobs.init_job(tx, account_id, job_id, job.state(job_id), now)
    return job_id


# -- over XML-RPC --------------------------------------------------------------------------------


def submit_over_rpc(
    proxy, account_id: int, job: tasklet.PreparedJob, name: str, price: int, cap: int | None = None
) -> int:
    """``job`` then ``init`` through ``proxy`` (an ``xmlrpc.client.ServerProxy`` authenticated as the
    account); returns the job id. ``price`` is in cents per second; ``cap``, a spending cap in cents,
    is set (``job_cap``) before ``init`` makes the job ready. A refusal is the server's
    ``xmlrpc.client.Fault``."""
    job_id = proxy.job(account_id, job.source, money.format_cents(price), name, job.entry)
    if cap is not None:
        proxy.job_cap(job_id, money.format_cents(cap))
    proxy.init(job_id, xmlrpc.client.Binary(job.state(job_id)))
    return job_id
