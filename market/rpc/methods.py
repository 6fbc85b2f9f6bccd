"""XML-RPC at /RPC2: the paper's methods (job, init, request, state, result) plus price, status,
cancel, outcome, fail and alive.

Authentication is HTTP Basic: user ``client/ID`` with the client's token (workers), or
``account/NAME`` (or just ``NAME``) with the account's API token (members). The caller is known
before a byte of the body is read (:meth:`MarketRPC.identify`, called by ``market.rpc.http``), and
the body is parsed with bounds (``market.rpc.codec``): on the reactor when small, off it when large
(``parse_large``). Every refusal is a Fault from ``market.rpc.faults`` with a plain-words message.
States and results are opaque bytes (``xmlrpc.client.Binary``): the server stores them and reads
only the envelope header.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xmlrpc.client import Binary, Fault

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from market import accounts
from market.accounts import credentials
from market.core import caps, listing, money, prices, states
from market.core.errors import Conflict, Forbidden, MarketError, NotAuthenticated, NotFound, TooLarge
from market.core.pool import NoWork
from market.core.rules import RESULT_OUTCOMES, JobKind, Outcome, SliceStatus
from market.jobs import batches, results, submission, taskbundle
from market.rpc import codec, faults
from market.settings import ConnectionSettings
from market.store import accounts as sql_accounts
from market.store import batches as sql_batches
from market.store import caps as sql_caps
from market.store import clients as sql_clients
from market.store import jobs as sql_jobs
from market.store import live as sql_live
from market.store import logs as sql_logs
from market.store import notices as sql_notices
from market.store import statechunks
from market.store import statements as sql_statements
from market.store import tokens as sql_tokens

log = Logger()

AUTH_CACHE_SECONDS = 10.0
SLICE_STATUSES = tuple(s.value for s in SliceStatus)
OUTCOMES = tuple(o.value for o in RESULT_OUTCOMES)


def _base64_size(raw: int) -> int:
    """Bytes of ``raw`` bytes as xmlrpc.client sends a Binary: base64 with a newline every 76."""
    encoded = 4 * -(-raw // 3)
    return encoded + -(-encoded // 76)


#: the largest body a member (account token) may send: a task bundle (taskbundle.MAX_BUNDLE, the
#: largest thing a member submits; a module is at most 1 MiB) as base64, and the call around it.
#: A worker's limit is the state-body setting. (The body budget may lower both: ``market.rpc.http``.)
MEMBER_BODY = _base64_size(taskbundle.MAX_BUNDLE) + 64 * 1024
#: error strings a worker reports (result's info.error, fail's message) are kept this long
MAX_ERROR = 2000
#: a Fault's message is cut to this length (some quote what they refuse)
MAX_FAULT = 2000
#: a lease that is not the caller's answers exactly as one that does not exist
_NO_LEASE = "no checked-out state {}"
_WHOLE = object()  # a state over one chunk sent whole on a closed lease: checked in whole


@dataclass(frozen=True, eq=False)
class Caller:
    """Whom a call's credentials name (``market.rpc.http.Caller``): a ``client`` or an ``account``,
    its row, the account that owns its uploads (a client's owner), and its largest body."""

    kind: str
    row: dict[str, Any]
    owner: int
    max_body: int


def threaded_parse(at_once: int = 2) -> Callable[[bytes, int, int], defer.Deferred]:
    """``codec.parse_call`` in the reactor's thread pool, at most ``at_once`` at a time: the default
    ``parse_large`` where no helper pool exists (tests, embedding). ``twistd market`` uses its
    helper processes instead (``functools.partial(offload.call, "market.rpc.codec:parse_call")``):
    a parse holds the GIL most of the time, and a thread would take turns with the reactor."""
    semaphore = defer.DeferredSemaphore(at_once)

    def parse(body: bytes, max_depth: int, max_values: int) -> defer.Deferred:
        d = semaphore.run(deferToThread, _parse_in_thread, body, max_depth, max_values)
        return d.addCallback(_raised)

    return parse


def _parse_in_thread(body: bytes, max_depth: int, max_values: int) -> tuple[str, tuple[Any, ...]] | MarketError:
    # A refusal is returned, not raised: the thread pool would wrap a raised one in a Failure whose
    # traceback holds this frame and the pool's own, which holds the Failure: a reference cycle that
    # keeps the body (megabytes) alive until the cycle collector happens to run, and bytes alone
    # never make it run. Measured: +400 MB after a few seconds of nested 15 MiB bodies.
    try:
        return codec.parse_call(body, max_depth, max_values)
    except MarketError as e:
        return e.with_traceback(None)


def _raised(result: tuple[str, tuple[Any, ...]] | MarketError) -> tuple[str, tuple[Any, ...]]:
    if isinstance(result, MarketError):
        raise result
    return result


class Arg:
    """A declared argument: name, accepted Python types, and a plain description."""

    def __init__(self, name: str, types, what: str, optional: bool = False):
        self.name, self.types, self.what, self.optional = name, types, what, optional


def method(*spec: Arg):
    """Declare an XML-RPC method's arguments; wrong arity or types become BAD_ARGUMENT Faults."""

    def decorate(fn):
        required = sum(1 for a in spec if not a.optional)
        usage = (
            f"{fn.__name__[len('xmlrpc_') :]}("
            + ", ".join((f"[{a.name}]" if a.optional else a.name) for a in spec)
            + ")"
        )

        @functools.wraps(fn)
        def wrapper(self, auth, *args):
            if not required <= len(args) <= len(spec):
                raise Fault(
                    faults.BAD_ARGUMENT,
                    f"{usage} takes {required}"
                    + (f" to {len(spec)}" if len(spec) != required else "")
                    + f" arguments, got {len(args)}",
                )
            for i, (a, value) in enumerate(zip(spec, args)):
                if isinstance(value, bool) and bool not in a.types or not isinstance(value, a.types):
                    raise Fault(
                        faults.BAD_ARGUMENT,
                        f"{usage}: argument {i + 1} ({a.name}) must be {a.what}, got {type(value).__name__}",
                    )
            return fn(self, auth, *args)

        wrapper.usage = usage  # type: ignore[attr-defined]  # mypy does not model attributes set on functions (python/mypy#2087)
        return wrapper

    return decorate


INT = (int,)
STR = (str,)
NUM = (int, float)
BIN = (Binary, bytes)
PRICE = (str, int)
DICT = (dict,)


def _bytes(value) -> bytes:
    return value.data if isinstance(value, Binary) else bytes(value)


def _parse_price(value) -> int:
    if isinstance(value, str) and len(value) > 40:  # (the message would quote it)
        raise MarketError("price must be a number of credits like 5.20")
    return money.parse_price(value if isinstance(value, str) else str(value))


class MarketRPC:
    """The dispatcher's XML-RPC face: who is calling (:meth:`identify`), then a ``methodCall``
    body in and a ``methodResponse`` body out (a value or a Fault) (:meth:`answer`).
    ``market.rpc.http`` serves it over HTTP at /RPC2. Each call is one Deferred chain (no
    ``inlineCallbacks`` on the worker's two calls per slice, the server's hottest path).

    ``settings`` bound what a call may be (``[connections]``: state-body, inline-parse, max-depth,
    max-values); ``parse_large(body, max_depth, max_values) -> Deferred`` parses the bodies over
    inline-parse off the reactor (default :func:`threaded_parse`)."""

    def __init__(
        self,
        dispatcher,
        settings: ConnectionSettings | None = None,
        parse_large: Callable[[bytes, int, int], defer.Deferred] | None = None,
    ):
        self.dispatcher = dispatcher
        self.db = dispatcher.db
        self.settings = settings or ConnectionSettings()
        self.parse_large = parse_large or threaded_parse()
        self._limits = {"client": self.settings.state_body, "account": MEMBER_BODY}
        # Authorization header -> (caller, expires): saves a database round trip on every worker
        # call. A token replaced or revoked, a client revoked or an account disabled by another
        # process (another front end, the ``market`` command) keeps working for about a second (the
        # cache generations, ``market.dispatch.cachewatch``; AUTH_CACHE_SECONDS at most while the
        # database cannot be read); by this process (the web site), not at all.
        self._auth_cache: dict[bytes, tuple[Caller, float, int]] = {}
        # leases whose chunked state is being read back and committed here: no chunk of theirs
        # may change meanwhile (what is committed is what was hashed)
        self._committing: set[int] = set()

    # -- plumbing ------------------------------------------------------------------------------
    def identify(self, authorization: bytes) -> Caller | defer.Deferred[Caller]:
        """The caller an HTTP Basic Authorization header names: at once from the cache (a
        dictionary lookup), else a Deferred of a database read off the reactor thread. Raises or
        fails with NotAuthenticated (Fault 2) for no credentials or wrong ones."""
        now = self.dispatcher.clock.seconds()
        generation = accounts.credentials_generation()
        cached = self._auth_cache.get(authorization)
        if cached is not None and cached[1] > now and cached[2] == generation:
            return cached[0]
        user, token = _basic(authorization)
        if not user or not token:
            raise NotAuthenticated(
                "this call needs HTTP Basic credentials: user client/ID or account/NAME, password its token"
            )
        digest = credentials.token_hash(token)
        # a Basic user name cannot hold ':' (it separates the password), hence client/ID
        kind, _, ident = user.partition("/") if "/" in user else ("account", "", user)
        if kind not in self._limits or not ident or len(ident) > 200 or kind == "client" and not ident.isdigit():
            raise _wrong_credentials()

        def look(tx):
            if kind == "client":
                try:
                    client = sql_clients.client_by_id(tx, int(ident))
                except (ValueError, MarketError):
                    return None
                if not credentials.same(client["token_hash"], digest):
                    return None
                if client["revoked_at"] is not None:
                    raise Forbidden(
                        f"client {client['id']} was revoked — register a new client"
                        " (market client register, or the web's Clients page) and use its token"
                    )
                _refuse_disabled(sql_accounts.account_by_id(tx, client["account_id"]))
                return client
            try:
                row = sql_accounts.account_by_name(tx, ident)
            except MarketError:
                return None
            # the CLI's one token (market account token) or a live named token from the web
            if not (row["api_token_hash"] and credentials.same(row["api_token_hash"], digest)):
                named = sql_tokens.live_token(tx, row["id"], digest)
                if named is None:
                    return None
                sql_tokens.touch_api_token(tx, named["id"], now)
            _refuse_disabled(row)
            return row

        def check(row) -> Caller:
            if row is None:
                raise _wrong_credentials()
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            owner = row["account_id"] if kind == "client" else row["id"]
            caller = Caller(kind, row, owner, self._limits[kind])
            # keyed by the whole header, so only the same token finds it; never extended on use;
            # dropped when credentials change in this process (accounts.credentials_changed)
            self._auth_cache[authorization] = (caller, now + AUTH_CACHE_SECONDS, generation)
            return caller

        return self.db.run(look).addCallback(check)

    def answer(self, body: bytes, caller: Caller | bytes) -> bytes | defer.Deferred[bytes]:
        """The response body for a call by ``caller`` (or by whoever an Authorization header
        names: in-process callers): at once, or as a Deferred."""
        if not isinstance(caller, Caller):
            try:
                identity = self.identify(caller)
            except Exception as e:
                return self.refusal(e)
            if isinstance(identity, defer.Deferred):
                return identity.addCallbacks(lambda c: self.answer(body, c), lambda f: self.refusal(f.value))
            caller = identity
        settings = self.settings
        if len(body) > settings.inline_parse:
            parsed = self.parse_large(body, settings.max_depth, settings.max_values)
            return parsed.addCallback(self._call, caller).addErrback(lambda f: _encode(self._to_fault(f)))
        try:
            call = codec.parse_call(body, settings.max_depth, settings.max_values)
        except MarketError as e:
            return _encode(faults.fault_for(e))
        return self._call(call, caller)

    def refusal(self, error: BaseException) -> bytes:
        """The Fault response that refuses a call with ``error`` (a caller not identified, no room)."""
        return _encode(self._to_fault(Failure(error)))

    def _call(self, call: tuple[str, tuple[Any, ...]], caller: Caller) -> bytes | defer.Deferred[bytes]:
        name, args = call
        try:
            result = self.lookupProcedure(name)(caller, *args)
        except Exception:
            return _encode(self._to_fault(Failure()))
        if not isinstance(result, defer.Deferred):
            return _encode(result)
        return result.addErrback(self._to_fault).addCallback(_encode)

    def _to_fault(self, failure: Failure) -> Fault:
        e = failure.value
        if isinstance(e, Fault):
            return e
        if isinstance(e, MarketError):
            return faults.fault_for(e)
        log.failure("unexpected error in an XML-RPC call", failure)
        return Fault(faults.INTERNAL, "internal error in the market server; it has been logged")

    @staticmethod
    def _auth(caller: Caller, want: str) -> defer.Deferred:
        """-> Deferred of the client or account row of the call's caller, if it is of the ``want`` kind."""
        if caller.kind != want:
            return defer.fail(NotAuthenticated(f"this call is for {want}s; you authenticated as a {caller.kind}"))
        return defer.succeed(caller.row)

    def _submitter(self, caller: Caller) -> defer.Deferred:
        """-> Deferred of the account row of a member who may submit work: a confirmed account."""

        def confirmed(row):
            if not row["confirmed"]:
                raise Forbidden(
                    f"account {row['name']!r} is not confirmed yet, so it cannot submit jobs — follow the link"
                    " in the confirmation e-mail (a new one: the web site's /resend page), or ask the operator"
                    f" to run: market account confirm {row['name']}"
                )
            return row

        return self._auth(caller, "account").addCallback(confirmed)

    @staticmethod
    def _no_lease(failure: Failure, stateid: int) -> Failure:
        """Another client's lease answers exactly as one that does not exist (Fault 4, the same
        words): trying lease numbers tells a stranger nothing."""
        if failure.check(Forbidden):
            raise NotFound(_NO_LEASE.format(stateid))
        return failure

    # -- members (account credentials) --------------------------------------------------------
    @method(
        Arg("accountid", INT, "your account id (an integer)"),
        Arg("module", STR, "the module's source text"),
        Arg("price", PRICE, "credits per second as a string like '5.20'"),
        Arg("name", STR, "a job name"),
        Arg("entry", STR, "the function to call", optional=True),
    )
    @defer.inlineCallbacks
    def xmlrpc_job(self, auth, accountid, module, price, name, entry="main"):
        """Create a job (no state yet); returns its id. ``init`` then gives it its initial state."""
        account = yield self._submitter(auth)
        if accountid != account["id"]:
            raise Fault(faults.FORBIDDEN, f"you are account {account['id']}, not {accountid}")
        cents = self._price(price)
        # the server checks the module itself (it trusts no client): its size at once, then parsing,
        # validation and compilation in a helper process (CPU and memory a stranger chooses)
        yield submission.check_source_in(self.dispatcher.offload, module, entry, owner=account["id"])
        now = self.dispatcher.clock.seconds()
        job_id = yield self.db.run(submission.create, account["id"], name, cents, module, entry, now)
        return job_id

    def _price(self, price) -> int:
        """A member's price in cents, refused above the market's ceiling (``max-price``: Fault 11)."""
        cents = _parse_price(price)
        prices.check_ceiling(cents, getattr(getattr(self.dispatcher, "settings", None), "max_price", None))
        return cents

    @method(Arg("price", PRICE, "credits per second as a string like '5.20'"))
    @defer.inlineCallbacks
    def xmlrpc_price_check(self, auth, price):
        """New: what ``price`` buys against the jobs competing now (the quote rule) and whether it
        is unusual enough that ``market submit`` and the web form ask for a confirmation:
        ``{price, rank, competing, top_price, unusual, words}``. Refuses (Fault 11) above the ceiling."""
        yield self._auth(auth, "account")
        cents = self._price(price)
        view = prices.price_view(cents, (yield self.db.run(sql_jobs.competing_prices)))
        return {
            "price": money.format_cents(view.price),
            "rank": view.rank,
            "competing": view.competing,
            "top_price": money.format_cents(view.top_price),
            "unusual": view.unusual,
            "words": view.words,
        }

    @method()
    @defer.inlineCallbacks
    def xmlrpc_whoami(self, auth):
        """Your account's id and name (the paper's ``job`` takes the account id)."""
        account = yield self._auth(auth, "account")
        return {"id": account["id"], "name": account["name"]}

    @method(
        Arg("accountid", INT, "your account id"),
        Arg("bundle", BIN, "the task bundle (market.jobs.taskbundle)"),
        Arg("price", PRICE, "credits per second like '0.05'"),
        Arg("name", STR, "a task name"),
    )
    @defer.inlineCallbacks
    def xmlrpc_task(self, auth, accountid, bundle, price, name):
        """Submit a pythia-style task (description + task filesystem + input); returns its job id."""
        account = yield self._submitter(auth)
        if accountid != account["id"]:
            raise Fault(faults.FORBIDDEN, f"you are account {account['id']}, not {accountid}")
        cents = self._price(price)
        data = _bytes(bundle)
        if len(data) > taskbundle.MAX_BUNDLE:
            raise Fault(faults.TOO_LARGE, f"the task bundle is over {taskbundle.MAX_BUNDLE // (1024 * 1024)} MiB")
        try:
            spec, _, _, _ = taskbundle.unpack(data)
            taskbundle.validate_spec(spec)
        except taskbundle.BundleError as e:
            raise Fault(faults.BAD_ARGUMENT, f"task refused: {e}") from None
        spec_text = json.dumps(spec, sort_keys=True)
        now = self.dispatcher.clock.seconds()

        def work(tx):
            job_id = sql_jobs.create_job(tx, account["id"], name, cents, "", "task", now, kind="task", spec=spec_text)
            sql_jobs.init_job(tx, account["id"], job_id, data, now)
            return job_id

        job_id = yield self.db.run(work)
        return job_id

    @method(Arg("jobid", INT, "a job id"), Arg("state", BIN, "the initial frozen state (base64 binary)"))
    @defer.inlineCallbacks
    def xmlrpc_init(self, auth, jobid, state):
        """Give a new job its initial state (checked: envelope header, source hash, entry, sequence 0, job id)."""
        account = yield self._submitter(auth)
        data = _bytes(state)
        header = submission.read_initial_state(data)  # the checksum, outside the transaction
        yield self.db.run(submission.init, account["id"], jobid, data, header, self.dispatcher.clock.seconds())
        return True

    @method(Arg("jobid", INT, "a job id"), Arg("price", PRICE, "credits per second like '5.20'"))
    @defer.inlineCallbacks
    def xmlrpc_price(self, auth, jobid, price):
        account = yield self._auth(auth, "account")
        yield self.db.run(sql_jobs.set_price, account["id"], jobid, self._price(price))
        return True

    @method(Arg("jobid", INT, "a job id", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_status(self, auth, jobid=None):
        account = yield self._auth(auth, "account")
        if jobid is None:
            rows = yield self.db.run(sql_jobs.list_jobs, account["id"])
            return [_public_job(r) for r in rows]
        row = yield self.db.run(sql_jobs.job_status, account["id"], jobid)
        return _public_job(row)

    @method(Arg("query", DICT, "page, per, sort, dir, state, name, batch, q (docs/rpc.md)", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_jobs(self, auth, query=None):
        """One page of your jobs (issue 19): ``{jobs, total, page, pages, per}``, each job the
        struct ``status`` gives; ``query`` as the web's /jobs reads it (``market.core.listing``)."""
        account = yield self._auth(auth, "account")
        query = query or {}
        if len(query) > 16 or any(not isinstance(k, str) or not isinstance(v, (str, int)) for k, v in query.items()):
            raise Fault(faults.BAD_ARGUMENT, "query must be a struct of text or whole-number values")
        q, problems = listing.parse({k: str(v) for k, v in query.items()})
        if problems:
            raise Fault(faults.BAD_ARGUMENT, "; ".join(problems.values()))
        found = yield self.db.run(sql_jobs.page_of_jobs, account["id"], q)
        return {
            "jobs": [_public_job(r) for r in found["jobs"]],
            "total": found["total"],
            "page": q.page,
            "pages": q.pages(found["total"]),
            "per": q.per,
        }

    @method(Arg("jobid", INT, "a job id"))
    @defer.inlineCallbacks
    def xmlrpc_progress(self, auth, jobid):
        """A job's live figures for its owner: progress, slices, execution seconds, cost so far and
        the estimate of the rest at the current price (``market.store.live.job_live``; the web's
        live job page shows the same)."""
        account = yield self._auth(auth, "account")
        answer = yield self.db.run(sql_live.job_live, account["id"], jobid)
        return answer

    @method(Arg("jobid", INT, "a job id"), Arg("after", INT, "the 'next' of the previous call (0: all)", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_logs(self, auth, jobid, after=0):
        """What the job's slices printed (stdout and stderr, the newest ``job-log`` bytes), for its
        owner only: ``{job, status, log, next, slices}``; pass ``next`` back as ``after`` to read
        only what came since (``market logs --follow``). The text is a stranger's worker's: show
        it through ``market.core.text.printable``."""
        account = yield self._auth(auth, "account")
        answer = yield self.db.run(sql_logs.read, account["id"], jobid, after)
        return answer

    @method(
        Arg("by", STR, "job, batch, client or day"),
        Arg("since", STR, "first day, YYYY-MM-DD (UTC); '' for 30 days before until", optional=True),
        Arg("until", STR, "last day, YYYY-MM-DD (UTC), included; '' for now", optional=True),
    )
    @defer.inlineCallbacks
    def xmlrpc_statement(self, auth, by, since="", until=""):
        """The caller's money over a date range (at most a year), per job, batch, client or day
        (``market.store.statements``): ``{by, since, until, rows, truncated, paid, earned}``,
        amounts as credits like ``'5.20'``; owner-only (an account's own ledger rows)."""
        account = yield self._auth(auth, "account")
        start, end = sql_statements.parse_range(since or None, until or None, self.dispatcher.clock.seconds())
        answer = yield self.db.run(sql_statements.statement, account["id"], by, start, end)
        for row in answer["rows"]:
            for key in ("paid", "earned", "in", "out"):
                if key in row:
                    row[key] = money.format_cents(row[key])
        answer["paid"], answer["earned"] = money.format_cents(answer["paid"]), money.format_cents(answer["earned"])
        return answer

    # -- spending caps (issue 19; market.core.caps) ---------------------------------------------
    @method(Arg("jobid", INT, "a job id"), Arg("cap", PRICE, "credits like '5.00'; '' or 'none' clears it"))
    @defer.inlineCallbacks
    def xmlrpc_job_cap(self, auth, jobid, cap):
        """New: set (or clear) a job's spending cap; answers ``{cap, spent, left}`` ({} when cleared).
        A job whose next slice would pass it is held; raising it releases the job."""
        account = yield self._auth(auth, "account")
        yield self.db.run(sql_caps.set_job_cap, account["id"], jobid, caps.parse_cap(cap))
        return _public_cap((yield self.db.run(sql_caps.job_cap, account["id"], jobid)))

    @method(Arg("batchid", INT, "a batch id"), Arg("cap", PRICE, "credits like '50.00'; '' or 'none' clears it"))
    @defer.inlineCallbacks
    def xmlrpc_batch_cap(self, auth, batchid, cap):
        """New: set (or clear) a batch's spending cap, for all its jobs together: ``{cap, spent, left}``."""
        account = yield self._auth(auth, "account")
        yield self.db.run(sql_caps.set_batch_cap, account["id"], batchid, caps.parse_cap(cap))
        return _public_cap((yield self.db.run(sql_caps.batch_cap, account["id"], batchid)))

    @method(Arg("cap", PRICE, "credits like '100.00'; '' or 'none' clears it", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_account_cap(self, auth, cap=None):
        """New: your account's spending cap (counted from when it was first set) as ``{cap, spent,
        left}`` ({} without one); with ``cap``, set or clear it first."""
        account = yield self._auth(auth, "account")
        if cap is not None:
            now = self.dispatcher.clock.seconds()
            yield self.db.run(sql_caps.set_account_cap, account["id"], caps.parse_cap(cap), now)
        return _public_cap((yield self.db.run(sql_caps.account_cap, account["id"])))

    @method(Arg("on", (bool,), "true: an e-mail when a job or a batch ends", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_notify(self, auth, on=None):
        """New: whether your account gets an e-mail when a job finishes or fails (one per job; one
        per batch when the whole batch ends); with ``on``, turn it on or off first."""
        account = yield self._auth(auth, "account")
        if on is not None:
            yield self.db.run(sql_notices.set_notify, account["id"], bool(on))
        return (yield self.db.run(sql_notices.notify_of, account["id"]))

    @method(Arg("jobid", INT, "a job id"))
    @defer.inlineCallbacks
    def xmlrpc_cancel(self, auth, jobid):
        account = yield self._auth(auth, "account")
        yield self.db.run(sql_jobs.cancel_job, account["id"], jobid, self.dispatcher.clock.seconds())
        return True

    @method(Arg("jobid", INT, "a job id"))
    @defer.inlineCallbacks
    def xmlrpc_outcome(self, auth, jobid):
        """A finished job's result (encoded bytes), for its owner only, with a preview: its text
        within a budget, written in a helper (``preview`` None and ``preview_problem`` saying why
        when it cannot be shown; ``preview_complete`` False when it is cut)."""
        account = yield self._auth(auth, "account")
        row = yield self.db.run(sql_jobs.job_result, account["id"], jobid)
        answer = {
            "id": row["id"],
            "kind": row["kind"],
            "outcome": row["outcome"],
            "error": row["error"],
            "result": None if row["result"] is None else Binary(bytes(row["result"])),
            "verification": _standing(row),
            "verification_reason": row.get("verification_note") or "",
            "status": row["status"],  # new: finished or cancelled, as in status()
            **states.public(states.state_of(row)),
        }
        if row["result"] is not None and row["kind"] != "task":  # a task's result is its output, as text
            try:
                shown = yield results.show(
                    self.dispatcher.offload, row["result"], results.SHOWN_CHARS, None, owner=account["id"]
                )
            except MarketError as e:  # busy, too slow: the result itself is still answered
                shown = results.Shown(None, False, len(row["result"]), f"cannot be shown right now ({e})")
            answer.update(
                result_bytes=shown.size,
                preview=shown.text,
                preview_complete=shown.complete,
                preview_problem=shown.problem,
            )
        return answer

    # -- batches (account credentials; market.jobs.batches) -------------------------------------
    @method(
        Arg("accountid", INT, "your account id (an integer)"),
        Arg("module", STR, "the module's source text"),
        Arg("price", PRICE, "credits per second for each job, like '5.20'"),
        Arg("name", STR, "a batch name"),
        Arg("entry", STR, "the function to call"),
        Arg("size", INT, "how many argument sets (jobs) batch_add will bring"),
    )
    @defer.inlineCallbacks
    def xmlrpc_batch(self, auth, accountid, module, price, name, entry, size):
        """Create an empty batch (its module checked once); returns its id. ``batch_add`` then
        brings the jobs' initial states in chunks."""
        account = yield self._submitter(auth)
        if accountid != account["id"]:
            raise Fault(faults.FORBIDDEN, f"you are account {account['id']}, not {accountid}")
        most = self.dispatcher.settings.max_batch
        if not 0 < size <= most:
            raise TooLarge(f"a batch holds 1 to {most:,} argument sets (this market's max-batch); {size:,} asked")
        cents = _parse_price(price)
        submission.check_limits(module)
        batches.check_source_copies(module, size)
        yield submission.check_source_in(self.dispatcher.offload, module, entry, owner=account["id"])
        now = self.dispatcher.clock.seconds()
        batch_id = yield self.db.run(sql_batches.create_batch, account["id"], name, module, entry, cents, size, now)
        return batch_id

    @method(
        Arg("batchid", INT, "a batch id"),
        Arg("states", (list,), f"an array of at most {batches.CHUNK} initial states (base64 binary)"),
    )
    @defer.inlineCallbacks
    def xmlrpc_batch_add(self, auth, batchid, states):
        """Add jobs to a batch, one per initial state (made from the batch's module and entry, no
        job id); each is ready at once. Returns their job ids in order."""
        account = yield self._submitter(auth)
        if not 0 < len(states) <= batches.CHUNK:
            raise TooLarge(f"batch_add takes 1 to {batches.CHUNK} states at once; {len(states):,} sent")
        largest = self.dispatcher.settings.max_argument_set
        data = []
        for i, state in enumerate(states):
            if not isinstance(state, BIN):
                raise Fault(faults.BAD_ARGUMENT, f"state {i + 1} must be base64 binary, got {type(state).__name__}")
            raw = _bytes(state)
            if len(raw) > largest:
                raise TooLarge(
                    f"state {i + 1} is {len(raw):,} bytes; a batch job's argument set may take at most {largest:,}"
                )
            data.append(raw)
        batch = yield self.db.run(sql_batches.owned_batch, account["id"], batchid)
        # headers and hashes of up to CHUNK states: off the reactor thread
        source_sha256, read = yield deferToThread(batches.read_states, data, batch["entry"])
        now = self.dispatcher.clock.seconds()
        ids = yield self.db.run(sql_batches.add_jobs, account["id"], batchid, source_sha256, read, now)
        return ids

    @method(Arg("batchid", INT, "a batch id", optional=True))
    @defer.inlineCallbacks
    def xmlrpc_batch_status(self, auth, batchid=None):
        """A batch's aggregate progress (jobs per status, cost so far and estimate), or your batches."""
        account = yield self._auth(auth, "account")
        if batchid is None:
            rows = yield self.db.run(sql_batches.list_batches, account["id"])
            return [
                {
                    "id": r["id"],
                    "name": r["name"],
                    "entry": r["entry"],
                    "price": money.format_cents(r["price"]),
                    "size": r["size"],
                    "created_at": r["created_at"],
                }
                for r in rows
            ]
        row = yield self.db.run(sql_batches.summary, account["id"], batchid)
        return _public_batch(row)

    @method(Arg("batchid", INT, "a batch id"))
    @defer.inlineCallbacks
    def xmlrpc_batch_cancel(self, auth, batchid):
        """Cancel every job of the batch that is not over; returns how many were cancelled."""
        account = yield self._auth(auth, "account")
        n = yield self.db.run(sql_batches.cancel_batch, account["id"], batchid, self.dispatcher.clock.seconds())
        return n

    @method(Arg("batchid", INT, "a batch id"), Arg("price", PRICE, "credits per second like '5.20'"))
    @defer.inlineCallbacks
    def xmlrpc_batch_price(self, auth, batchid, price):
        """A new price for every job of the batch that is not over; returns how many."""
        account = yield self._auth(auth, "account")
        n = yield self.db.run(sql_batches.price_batch, account["id"], batchid, _parse_price(price))
        return n

    @method(
        Arg("batchid", INT, "a batch id"),
        Arg("after", INT, "the last argument-set index already read (-1 to start)", optional=True),
        Arg("limit", INT, f"jobs to answer, at most {batches.RESULTS_PAGE}", optional=True),
    )
    @defer.inlineCallbacks
    def xmlrpc_batch_results(self, auth, batchid, after=-1, limit=batches.RESULTS_PAGE):
        """The batch's jobs in argument-set order after ``after``: index, job, status, outcome,
        error, the encoded result (or nil) and its verification standing. Page on with the last index."""
        account = yield self._auth(auth, "account")
        limit = max(1, min(limit, batches.RESULTS_PAGE))
        rows = yield self.db.run(sql_batches.batch_results, account["id"], batchid, after, limit)
        return [
            {
                "index": r["batch_index"],
                "job": r["id"],
                "status": r["status"],
                "outcome": r["outcome"] or "",
                "error": r["error"] or "",
                "result": None if r["result"] is None else Binary(bytes(r["result"])),
                "verification": _standing({**r, "kind": JobKind.JOB}),
            }
            for r in rows
        ]

    # -- workers (client credentials) ----------------------------------------------------------
    @method(
        Arg("clientid", INT, "your client id"),
        Arg("slice", NUM, "proposed slice in seconds", optional=True),
        Arg("info", DICT, "a struct (sandbox level)", optional=True),
    )
    def xmlrpc_request(self, auth, clientid, slice_=None, info=None):
        """Ask for work: a test job at once, or a job after the pooling window, or {status: nowork}."""
        return self._auth(auth, "client").addCallback(self._request, clientid, slice_, info)

    def _request(self, client, clientid, slice_, info):
        if clientid != client["id"]:
            raise Fault(faults.FORBIDDEN, f"you are client {client['id']}, not {clientid}")
        if slice_ is not None and not (0 < slice_ < 1e7):
            raise Fault(faults.BAD_ARGUMENT, "slice must be a positive number of seconds")
        info = info or {}
        level = info.get("sandbox")
        level = str(level)[:16] if level is not None else None
        # a worker that opts in to verify names the interpreter its replays run on
        verify_on = None
        if info.get("verify") is True:
            interpreter = info.get("interpreter")
            if not isinstance(interpreter, str) or not interpreter.strip() or len(interpreter) > 64:
                raise Fault(faults.BAD_ARGUMENT, "to verify, name your interpreter: info {interpreter: 'cpython-3.11'}")
            verify_on = interpreter.strip()
        # a worker of this release fetches a state stored in chunks by them (``state_get``)
        by_chunks = info.get("chunks") is True
        return self.dispatcher.request(clientid, slice_, level, verify_on).addCallback(self._lease_answer, by_chunks)

    def _lease_answer(self, answer, by_chunks: bool = False):
        if isinstance(answer, NoWork) or answer is None:
            retry = getattr(answer, "retry_after", self.dispatcher.settings.window)
            return {
                "status": "nowork",
                "retry_after": float(retry),
                "message": f"no work for you in this window; ask again in {retry:g} s",
            }
        lease = {
            "status": "work",
            "stateid": answer["stateid"],
            "job": answer["job_id"],
            # "job" for a probe too: a worker must not tell a probe from a job (tasks run otherwise)
            "kind": "task" if answer["kind"] == JobKind.TASK else "job",
            "state": Binary(answer["state"]),
            "module": answer["source"],
            "entry": answer["entry"],
            "spec": answer["spec"],
            "seq": answer["seq"],
            "timeout": float(answer["timeout"]),
            "slice": float(answer["granted"]),
            "deadline": float(answer["deadline"]),
        }
        if "replay" in answer:  # a replay lease (docs/trust.md): compared, never committed
            lease["replay"] = answer["replay"]
        chunks = answer.get("state_chunks") or 0
        if "state_size" in answer:
            # new keys: the state's size, and its chunks when it is stored in chunks ("state" is
            # then empty: fetch chunk 0..state_chunks-1 with state_get, in order)
            lease["state_size"] = answer["state_size"]
            lease["state_chunks"] = chunks
        if chunks and not by_chunks:
            # a worker of an older release gets the state whole, read a chunk at a time off the reactor
            d = self.db.run(statechunks.state_bytes, answer["state_id"])

            def whole(data: bytes):
                lease["state"], lease["state_chunks"] = Binary(data), 0
                return lease

            return d.addCallback(whole)
        return lease

    @method(
        Arg("stateid", INT, "the stateid from request"),
        Arg("index", INT, "the chunk's number, from 0"),
    )
    def xmlrpc_state_get(self, auth, stateid, index):
        """Chunk ``index`` (1 MiB; the last one shorter) of the state a lease checked out."""

        def get(client):
            now = self.dispatcher.clock.seconds()
            return self.db.run(statechunks.leased_chunk, stateid, client["id"], index, now).addCallback(Binary)

        return self._auth(auth, "client").addCallback(get).addErrback(self._no_lease, stateid)

    @method(
        Arg("stateid", INT, "the stateid from request"),
        Arg("index", INT, "the chunk's number, from 0"),
        Arg("chunk", BIN, "the chunk: 1 MiB, the last one shorter"),
    )
    def xmlrpc_state_put(self, auth, stateid, index, chunk):
        """Send chunk ``index`` of a new state for a lease (sent again: replaced); then ``state``
        with an empty state and ``info {chunks, size}`` checks it in."""

        def put(client):
            data = _bytes(chunk)
            limit = self.settings.max_state_size
            statechunks.check_chunk(index, len(data), limit)  # refused before any database work
            if stateid in self._committing:
                raise Conflict(f"state {stateid} is being checked in; its chunks can no longer change")
            now = self.dispatcher.clock.seconds()
            d = self.db.run(statechunks.put_chunk, stateid, client["id"], index, data, now, limit)
            return d.addCallback(lambda n: {"status": "ok", "index": index, "bytes": n})

        return self._auth(auth, "client").addCallback(put).addErrback(self._no_lease, stateid)

    @method(
        Arg("stateid", INT, "the stateid from request"),
        Arg("state", BIN, "the new frozen state"),
        Arg("info", DICT, "a struct (slice status, progress, log; replay: 'capped' on a replay lease)", optional=True),
    )
    def xmlrpc_state(self, auth, stateid, state, info=None):
        """Check a state in: accepted before the deadline (and paid), rejected after it."""
        d = self._auth(auth, "client").addCallback(self._checkin, stateid, state, info or {})
        return d.addErrback(self._no_lease, stateid)

    def _checkin(self, client, stateid, state, info):
        status = info.get("status", SliceStatus.OK.value)
        if status not in SLICE_STATUSES:
            raise Fault(faults.BAD_ARGUMENT, f"status must be one of {', '.join(SLICE_STATUSES)}")
        progress = info.get("progress")
        if progress is not None and (
            not isinstance(progress, (int, float)) or isinstance(progress, bool) or not math.isfinite(progress)
        ):
            raise Fault(faults.BAD_ARGUMENT, "progress must be a number between 0 and 1")
        # the dispatcher reads the envelope and hashes it (off the reactor thread for a large one):
        # a malformed one is BAD_ARGUMENT, an older format and a state that does not follow from
        # its lease STATE_REFUSED
        # a verifier whose replay hit its step cap says so (a new key; no evidence of another state)
        capped = info.get("replay") == "capped"
        output = _log_of(info)
        data = _bytes(state)
        chunked = self._chunked(client["id"], stateid, data, info)
        if chunked is not None:
            d = chunked.addCallback(
                lambda read: (
                    self.dispatcher.checkin(client["id"], stateid, data, status, progress, capped)
                    if read is None
                    else self.dispatcher.checkin(
                        client["id"], stateid, b"", status, progress, capped, chunked=(read[:3], read[3])
                    )
                )
            )
            d.addBoth(self._committed, stateid)
        else:
            d = self.dispatcher.checkin(client["id"], stateid, data, status, progress, capped)
        if output:
            d.addCallback(lambda answer: self.dispatcher.record_log(client["id"], stateid, answer, output))
        return d

    def _chunked(self, client_id: int, stateid: int, data: bytes, info: dict[str, Any]) -> defer.Deferred | None:
        """For a state sent in chunks (``info {chunks, size}``) or sent whole but over one chunk:
        a Deferred of its facts read back from its stored chunks, chunk by chunk in a database
        thread (``statechunks.upload_facts``): ``(facts, interpreter, mark, (chunks, size, digest))``.
        None for a state checked in whole as before (one chunk or less, or a replay lease's)."""
        limit = self.settings.max_state_size
        count, size = info.get("chunks"), info.get("size")
        now = self.dispatcher.clock.seconds()
        if stateid in self._committing:
            raise Conflict(f"state {stateid} is already being checked in; wait for its answer")
        if count is None and size is None:
            if len(data) <= statechunks.CHUNK or stateid in getattr(self.dispatcher, "_replays", ()):
                return None
            count, size = statechunks.chunk_count(len(data)), len(data)
            stored = self.db.run(statechunks.store_whole, stateid, client_id, data, now, limit)
            # a closed or late lease: the check-in goes whole as before (rejected, or its first
            # answer again with duplicate: true); nothing of it is stored
            stored.addErrback(lambda f: f.trap(Conflict) and _WHOLE)
        else:
            for name, value in (("chunks", count), ("size", size)):
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    raise Fault(faults.BAD_ARGUMENT, f"info {name} must be a positive integer (with chunks and size)")
            if data:
                raise Fault(faults.BAD_ARGUMENT, "a state sent in chunks is checked in with an empty state")
            assert isinstance(size, int)
            statechunks.check_size(size, limit)  # refused before reading a chunk
            stored = defer.succeed(None)

        self._committing.add(stateid)

        def read(stored):
            if stored is _WHOLE:
                return None
            d = self.db.run(statechunks.upload_facts, stateid, client_id, count, size, now, limit)
            return d.addCallback(lambda r: (r[0], r[1], r[2], (count, size, r[3])))

        return stored.addCallback(read)

    def _committed(self, result, stateid: int):
        self._committing.discard(stateid)
        return result

    @method(
        Arg("stateid", INT, "the stateid from request"),
        Arg("result", BIN + (type(None),), "the encoded result"),
        Arg("info", DICT, "a struct (outcome, error, log)", optional=True),
    )
    @defer.inlineCallbacks
    def xmlrpc_result(self, auth, stateid, result, info=None):
        """The job finished during this lease: store its result (opaque bytes) and pay."""
        client = yield self._auth(auth, "client")
        info = info or {}
        outcome = info.get("outcome", Outcome.FINISHED.value)
        if outcome not in OUTCOMES:
            raise Fault(faults.BAD_ARGUMENT, f"outcome must be one of {', '.join(OUTCOMES)}")
        error = info.get("error")
        if error is not None and not isinstance(error, str):
            raise Fault(faults.BAD_ARGUMENT, "error must be a string")
        data = None if result is None else _bytes(result)
        output = _log_of(info)
        try:
            answer = yield self.dispatcher.finish(client["id"], stateid, data, outcome, _capped(error), output)
        except Forbidden:
            raise NotFound(_NO_LEASE.format(stateid)) from None
        return answer

    @method(
        Arg("stateid", INT, "the stateid from request"),
        Arg("status", STR, "what went wrong"),
        Arg("message", STR, "details", optional=True),
    )
    @defer.inlineCallbacks
    def xmlrpc_fail(self, auth, stateid, status, message=""):
        """A slice ended without a usable state: the job rolls back to its committed state."""
        client = yield self._auth(auth, "client")
        if status not in SLICE_STATUSES:
            raise Fault(faults.BAD_ARGUMENT, f"status must be one of {', '.join(SLICE_STATUSES)}")
        try:
            answer = yield self.dispatcher.fail(client["id"], stateid, status, _capped(message))
        except Forbidden:
            raise NotFound(_NO_LEASE.format(stateid)) from None
        return answer

    @method(Arg("stateid", INT, "the stateid from request"))
    @defer.inlineCallbacks
    def xmlrpc_alive(self, auth, stateid):
        """Is this lease still wanted? (False once the owner cancelled the job or the lease expired.)"""
        client = yield self._auth(auth, "client")
        d = yield self.db.run(sql_jobs.lease_row, stateid)
        if d["client_id"] != client["id"]:
            raise NotFound(_NO_LEASE.format(stateid))
        alive = yield self.db.run(sql_jobs.lease_is_open, stateid)
        return alive

    def lookupProcedure(self, procedurePath):
        # don't expose system.* or anything not declared with @method
        handler = getattr(self, "xmlrpc_" + procedurePath, None) if "." not in procedurePath else None
        if handler is None or not hasattr(handler, "usage"):
            raise Fault(faults.NO_SUCH_METHOD, f"no method {procedurePath[:80]!r}; see docs/rpc.md")
        return handler


def _public_job(row: dict[str, Any]) -> dict[str, Any]:
    out = {
        "id": row["id"],
        "kind": row["kind"],
        "name": row["name"],
        "price": money.format_cents(row["price"]),
        "status": row["status"],
        "executed_seconds": (row["executed_ms"] or 0) / 1000.0,
        "slices": row["slices"],
        "progress": row["progress"],
        "outcome": row["outcome"],
        "submitted_at": row["submitted_at"],
        "finished_at": row["finished_at"],
        # a result is final only once verified by replay; "" while the job has no result
        "verification": _standing(row),
        "verification_reason": row.get("verification_note") or "",
    }
    if "error" in row:
        out["error"] = row["error"]
    if row.get("batch_id") is not None:
        out["batch_id"] = row["batch_id"]  # new (issue 19): the job's batch
    if row.get("cap") is not None:
        out["cap"] = money.format_cents(row["cap"])  # new (issue 19): its spending cap
    out.update(states.public(states.state_of(row)))  # the words members read (core.states)
    last = row.get("last_slice")
    if last:
        out["last_slice_status"] = last["slice_status"] or last["status"]
    return out


def _public_cap(cap: caps.Cap | None) -> dict[str, str]:
    """A spending cap as XML-RPC answers it (money as text); {} for no cap."""
    if cap is None:
        return {}
    return {
        "cap": money.format_cents(cap.limit),
        "spent": money.format_cents(cap.spent),
        "left": money.format_cents(caps.left(cap)),
    }


def _public_batch(row: dict[str, Any]) -> dict[str, Any]:
    """A batch's summary (``market.store.batches.summary``) as XML-RPC answers it: money as text,
    the cost so far and, while it runs, an estimate of the whole (cost so far / share done)."""
    progress = row["progress"]
    estimate = round(row["paid"] / progress) if progress > 0 else None
    return {
        "id": row["id"],
        "name": row["name"],
        "entry": row["entry"],
        "price": money.format_cents(row["price"]),
        "size": row["size"],
        "jobs": row["jobs"],
        "counts": {str(k): v for k, v in row["counts"].items()},
        "states": {str(k): v for k, v in row["states"].items()},  # new (issue 19): failed apart from finished
        "outcomes": {str(k): v for k, v in row["outcomes"].items()},
        "progress": progress,
        "executed_seconds": row["executed_ms"] / 1000.0,
        "slices": row["slices"],
        "cost": money.format_cents(row["paid"]),
        "estimate": "" if estimate is None else money.format_cents(estimate),
        "created_at": row["created_at"],
    }


def _standing(row: dict[str, Any]) -> str:
    if row.get("verification"):
        return str(row["verification"])
    if row.get("outcome") == Outcome.FINISHED and row.get("kind") == JobKind.JOB:
        return "unverified"
    return ""


def _log_of(info: dict[str, Any]) -> str | bytes:
    """A slice's printed output in ``info {log}`` (text, or bytes as a Binary); "" if none. Its
    size is bounded by the call's body limit; the dispatcher cuts it to ``slice-log``."""
    value = info.get("log")
    if value is None:
        return ""
    if isinstance(value, Binary):
        return value.data
    if not isinstance(value, str):
        raise Fault(faults.BAD_ARGUMENT, "log must be a string (what the slice printed)")
    return value


def _capped(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_ERROR else text[:MAX_ERROR] + " …"


def _refuse_disabled(account: dict[str, Any]) -> None:
    if account.get("disabled_at") is not None:
        raise Forbidden(
            f"account {account['name']!r} is disabled by the market's operator — ask them why;"
            " its clients and tokens are refused until it is enabled again"
        )


def _wrong_credentials() -> NotAuthenticated:
    return NotAuthenticated(
        "wrong credentials — check --client/--token (workers) or the account API token (market account token NAME)"
    )


def _encode(result) -> bytes:
    if isinstance(result, Fault) and len(result.faultString) > MAX_FAULT:
        result = Fault(result.faultCode, result.faultString[:MAX_FAULT] + " …")
    try:
        text = xmlrpc.client.dumps(
            result if isinstance(result, Fault) else (result,), methodresponse=True, allow_none=True
        )
    except Exception:
        log.failure("cannot encode an XML-RPC answer")
        text = xmlrpc.client.dumps(
            Fault(faults.INTERNAL, "the server could not encode its answer; logged"), methodresponse=True
        )
    return text.encode("utf-8")


def _basic(header: bytes) -> tuple[str, str]:
    """(user, password) of an HTTP Basic Authorization header; ("", "") if it is not one."""
    scheme, _, encoded = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return "", ""
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return "", ""
    user, _, password = decoded.partition(b":")
    return user.decode("utf-8", "replace"), password.decode("utf-8", "replace")


def factory(
    dispatcher,
    settings: ConnectionSettings | None = None,
    parse_large: Callable[[bytes, int, int], defer.Deferred] | None = None,
):
    """The XML-RPC endpoint: POST /RPC2 over HTTP/1.1 (``market.rpc.http``) within ``settings``
    (``[connections]``); ``parse_large`` parses large bodies off the reactor (:func:`threaded_parse`)."""
    from market.rpc.http import RPCFactory

    settings = settings or ConnectionSettings()
    return RPCFactory(MarketRPC(dispatcher, settings, parse_large), b"/RPC2", settings, clock=dispatcher.clock)
