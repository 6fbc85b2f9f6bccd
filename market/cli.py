"""``market``: the administrator's and member's command line.

Every command takes ``--db URL`` and ``--config FILE`` (``market.settings``; the database is
``--db``, else the file's ``db``, else ``$MARKET_DB``, else the embedded ``sqlite:var/market.sqlite``).
Errors are one line on stderr with what to do, and the exit code of their kind in the one error
table (``market.core.errors.KINDS``): 2 for bad input, 1 for a refusal by the market or an
unreachable database or server.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time

from market.core import caps, money, states, verification
from market.core.errors import (
    EXIT_BAD_INPUT,
    EXIT_JOB_CANCELLED,
    EXIT_JOB_FAILED,
    EXIT_REFUSED,
    KINDS,
    DatabaseUnavailable,
    MarketError,
    kind_of,
)
from market.core.rules import JobStatus
from market.core.text import printable
from market.store import dburl


class UsageError(MarketError):
    pass


def _settings(args):
    """The settings of ``--config FILE`` (defaults without one), read once per command."""
    from market import settings

    if getattr(args, "_settings", None) is None:
        path = getattr(args, "config", None)
        args._settings = settings.load(path) if path else settings.Settings()
    return args._settings


def _db_url(args) -> str:
    return args.db or _settings(args).db or dburl.default_url()


def _db(args):
    from market.store import Database, require_current

    db = Database(_db_url(args))
    require_current(db)
    return db


def _token(args, environment: str | None = "MARKET_TOKEN") -> str | None:
    """The token of ``--token-file FILE`` (``-``: standard input), else of ``--token`` (with a
    warning on standard error), else of the environment variable ``environment``; None without any."""
    path = getattr(args, "token_file", None)
    if path is not None:
        try:
            if path == "-":
                text = sys.stdin.readline(4096)
            else:
                with open(path, encoding="utf-8") as f:
                    text = f.read(4096)
        except OSError as e:
            raise UsageError(f"cannot read --token-file {path}: {e.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"--token-file {path} is not a text file holding a token") from None
        token = text.strip()
        if not token or len(token.split()) != 1:
            raise UsageError(f"--token-file {path} must hold the token alone on its first line")
        return token
    if getattr(args, "token", None):
        # a command's arguments are readable by every user of the machine
        instead = f"--token-file FILE or ${environment}" if environment else "--token-file FILE"
        print(
            f"market: warning: --token shows the token to every user of this machine (ps); use {instead}",
            file=sys.stderr,
        )
        return args.token
    return os.environ.get(environment) if environment else None


def _add_token_options(parser: argparse.ArgumentParser, what: str, environment: str | None) -> None:
    """``--token TOKEN`` and ``--token-file FILE``, one or the other."""
    tokens = parser.add_mutually_exclusive_group()
    also = f"; or ${environment}" if environment else ""
    tokens.add_argument(
        "--token-file",
        default=None,
        metavar="FILE",
        help=f"read {what} from FILE ('-' for standard input){also}",
    )
    tokens.add_argument(
        "--token", default=None, help=f"{what} itself (every user of this machine sees it in ps: prefer --token-file)"
    )


def _read_password(args) -> str:
    if getattr(args, "password_stdin", False):
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise UsageError("the two passwords differ — try again")
        return first
    raise UsageError("give the password on standard input with --password-stdin")


# -- db ----------------------------------------------------------------------------------------


def cmd_db_init(args) -> int:
    from market.store import Database, schema

    db = Database(_db_url(args))
    before, after = schema.upgrade(db)
    if before == 0:
        print(f"created schema version {after} in {db.url.redacted()}")
    else:
        print(f"{db.url.redacted()} already has schema version {before}; now at {after}")
    return 0


def cmd_db_upgrade(args) -> int:
    from market.store import Database, schema

    db = Database(_db_url(args))
    before, after = schema.upgrade(db)
    print(f"schema version {before} -> {after}" if before != after else f"schema is current (version {after})")
    return 0


def cmd_db_audit(args) -> int:
    from market.store import accounts as sql

    result = _db(args).transact(sql.audit)
    if args.json:  # for scripts: the figures in cents, as the store returns them
        print(json.dumps(result))
    else:
        print(audit_words(result))
    return 0 if result["balanced"] else EXIT_REFUSED


def cmd_frontends(args) -> int:
    """``market frontends``: the front ends on this database, their last heartbeat and which one
    holds the matcher role (``market.core.frontends``)."""
    from market.store import frontends as sql

    shown = _db(args).transact(sql.listing)
    if args.json:
        print(json.dumps(shown))
    else:
        print(frontends_words(shown, everyone=args.all))
    return 0


def frontends_words(shown: dict, everyone: bool = False) -> str:
    """The front ends for people: live ones (all with ``everyone``), the role's holder marked."""
    rows = [f for f in shown["frontends"] if everyone or f["live"]]
    holder = shown["holder"]
    lines = [
        f"matcher role: {holder} (renewed; expires in {shown['role_expires_in']:.1f} s unless renewed)"
        if holder
        else "matcher role: nobody holds it (no live front end; it is taken within seconds of one starting)",
        f"requests waiting for the matcher: {shown['pending_requests']}",
    ]
    if not rows:
        lines.append("no live front end" + ("" if everyone else " (--all shows stopped and dead ones)"))
        return "\n".join(lines)
    lines.append(f"{'':2}{'front end':<48} {'rpc':<28} {'heartbeat':>10}  state")
    for f in rows:
        state = "stopped" if f["stopped_at"] is not None else ("live" if f["live"] else "dead (no heartbeat)")
        mark = "* " if f["matcher"] else "  "
        lines.append(f"{mark}{f['id']:<48} {f['rpc'][:28]:<28} {f['heartbeat_ago']:>8.1f} s  {state}")
    if any(f["matcher"] for f in rows):
        lines.append("(* holds the matcher role: it runs the one pooling window of the market)")
    return "\n".join(lines)


def audit_words(result: dict) -> str:
    """``market db audit`` for people: credits, not cents, and each problem on its own line."""
    credits = money.format_cents
    lines = [
        "the ledger balances" if result["balanced"] else "THE LEDGER DOES NOT BALANCE",
        f"  granted in all:      {credits(result['granted'])} credits",
        f"  held by accounts:    {credits(result['total'])} credits",
    ]
    if result["granted"] != result["total"]:
        lines.append(f"  difference:          {credits(result['total'] - result['granted'])} credits")
    for account_id, balance, expected in result["mismatched"]:
        lines.append(
            f"  account {account_id}: balance {credits(balance)} but its ledger entries add up to {credits(expected)}"
        )
    for account_id in result["negative"]:
        lines.append(f"  account {account_id}: negative balance")
    for account_id, reserved, promised in result["reservations"]:
        lines.append(
            f"  account {account_id}: {credits(reserved)} reserved but its open leases promise {credits(promised)}"
        )
    for job_id, carry in result.get("carries", ()):
        lines.append(f"  job {job_id}: carries {carry} thousandths of a cent (a carry stays below one cent)")
    return "\n".join(lines)


# -- accounts ------------------------------------------------------------------------------------


def cmd_account_create(args) -> int:
    from market import accounts

    db = _db(args)
    if args.grant is not None:
        grant = money.parse_amount(args.grant, "--grant")
    else:
        grant = _settings(args).accounts.starting_grant
        if "MARKET_STARTING_GRANT" in os.environ:  # read by earlier releases: say why it has no effect
            from market.settings import RETIRED_ENVIRONMENT

            instead = RETIRED_ENVIRONMENT["MARKET_STARTING_GRANT"]
            print(f"market: $MARKET_STARTING_GRANT is no longer read; {instead}", file=sys.stderr)
    new = accounts.create_account(
        db, args.name, args.email, _read_password(args), confirm=not args.confirmed, grant_cents=grant
    )
    print(f"account {new.name} created (id {new.id})")
    if new.confirm_token:
        paid = f"; its starting grant of {money.format_cents(grant)} is paid then" if grant else ""
        print(f"confirmation token: {new.confirm_token}")
        print(
            f"confirm with: market account confirm {new.name} --token-file FILE (FILE holding the token),"
            f" or as administrator without a token{paid}"
        )
    return 0


def cmd_account_confirm(args) -> int:
    from market.accounts import credentials
    from market.store import accounts as sql

    db = _db(args)
    token = _token(args, environment=None)

    def confirm(tx):
        account = sql.account_by_name(tx, args.name)
        if token is None:
            sql.confirm_account_by_name(tx, args.name, time.time())
            return account
        if account["confirmed"]:
            return account
        if not account["confirm_token_hash"] or not credentials.same(
            account["confirm_token_hash"], credentials.token_hash(token)
        ):
            raise MarketError(f"that token does not confirm account {args.name!r} — check the link in the e-mail")
        sql.confirm_account_by_name(tx, args.name, time.time())
        return account

    db.transact(confirm)
    print(f"account {args.name} confirmed")
    return 0


def cmd_account_list(args) -> int:
    from market.store import accounts as sql

    rows = _db(args).transact(sql.list_accounts)
    print(f"{'id':>5}  {'name':<20} {'confirmed':<9} {'balance':>12}  email")
    for r in rows:
        confirmed = "disabled" if r.get("disabled_at") is not None else "yes" if r["confirmed"] else "no"
        print(
            f"{r['id']:>5}  {printable(r['name']):<20} {confirmed:<9} "
            f"{money.format_cents(r['balance']):>12}  {printable(r['email'])}"
        )
    return 0


def cmd_account_balance(args) -> int:
    from market.store import accounts as sql

    row = _db(args).transact(sql.account_by_name, args.name)
    print(money.format_cents(row["balance"]))
    return 0


def cmd_account_grant(args) -> int:
    from market.store import accounts as sql

    db = _db(args)
    amount = money.parse_amount(args.amount, "amount")
    if amount <= 0:
        raise UsageError("a grant must be more than 0.00")

    def work(tx):
        from market.store import jobs as jsql

        account = sql.account_by_name(tx, args.name, lock=True)
        sql.grant(tx, account["id"], amount, time.time(), args.memo)
        jsql.release_held(tx, account["id"])  # held jobs are checked again at the next window
        return sql.balance(tx, account["id"])

    print(f"granted {money.format_cents(amount)}; balance {money.format_cents(db.transact(work))}")
    return 0


def cmd_account_token(args) -> int:
    from market import accounts
    from market.store import accounts as sql

    db = _db(args)
    account = db.transact(sql.account_by_name, args.name)
    token = accounts.issue_api_token(db, account["id"])
    print(f"API token for {args.name} (shown once; the previous one no longer works): {token}")
    return 0


def _cmd_account_standing(args, disable: bool) -> int:
    from market.store import accounts as sql

    _db(args).transact(sql.set_disabled, args.name, time.time() if disable else None)
    if disable:
        print(
            f"account {args.name} disabled: it cannot log in, its API tokens and clients are refused"
            " (a running server notices within 10 seconds), its ready jobs are held and its running"
            f" slices end at their lease; undo with: market account enable {args.name}"
        )
    else:
        print(f"account {args.name} enabled; its held jobs are checked again at the next window")
    return 0


def cmd_account_disable(args) -> int:
    return _cmd_account_standing(args, True)


def cmd_account_enable(args) -> int:
    return _cmd_account_standing(args, False)


# -- clients -------------------------------------------------------------------------------------


def cmd_client_register(args) -> int:
    from market import accounts
    from market.store import accounts as sql

    db = _db(args)
    account = db.transact(sql.account_by_name, args.account)
    new = accounts.register_client(db, account["id"], args.name or f"client-{int(time.time())}")
    print(f"client {new.id} registered for {args.account} as {new.name!r}")
    print(f"token (shown once): {new.token}")
    # the token goes in the environment, not the arguments (which every user sees in ps); a root
    # worker must name the unprivileged user that runs the jobs
    user = " --user nobody" if os.geteuid() == 0 else ""
    print(
        f"run it with: MARKET_CLIENT_TOKEN={new.token} twistd -n worker --server {_server_url(args)}"
        f" --client {new.id}{user}"
    )
    return 0


def cmd_client_revoke(args) -> int:
    from market.store import clients as csql

    row = _db(args).transact(csql.revoke_client, args.id, time.time())
    print(
        f"client {row['id']} ({printable(row['name'])}) revoked: its token is refused (a running server"
        " notices within 10 seconds); its open leases expire and their jobs go to other workers"
    )
    return 0


def cmd_client_list(args) -> int:
    from market.store import accounts as sql
    from market.store import clients as csql

    db = _db(args)

    def work(tx):
        account_id = sql.account_by_name(tx, args.account)["id"] if args.account else None
        return csql.list_clients(tx, account_id)

    print(f"{'id':>5}  {'name':<20} {'account':<20} {'status':<9} sandbox")
    for r in db.transact(work):
        flag = " (suspect)" if r["suspect"] else ""
        name, account, status, level = (printable(r[k]) for k in ("name", "account", "status", "sandbox_level"))
        status = "revoked" if r["revoked_at"] is not None else status
        print(f"{r['id']:>5}  {name:<20} {account:<20} {status:<9} {level}{flag}")
    return 0


# -- jobs (through the server's XML-RPC) ---------------------------------------------------------


def _server_url(args) -> str:
    from market.rpc.client import DEFAULT_SERVER, server_url

    return server_url(args.server or os.environ.get("MARKET_SERVER") or DEFAULT_SERVER)


def _server(args):
    from market.rpc.client import blocking

    account = args.account or os.environ.get("MARKET_ACCOUNT")
    token = _token(args)
    if not account or not token:
        raise UsageError(
            "give --account NAME and --token-file FILE (or $MARKET_ACCOUNT and $MARKET_TOKEN);"
            " get a token with: market account token NAME"
        )
    return blocking(_server_url(args), f"account/{account}", token), account


def _call(fn, *a):
    import xmlrpc.client
    from xml.parsers.expat import ExpatError

    from market.rpc import faults

    try:
        return fn(*a)
    except xmlrpc.client.Fault as f:
        # the refusal keeps its kind, so the exit code means what the Fault meant
        raise faults.error_from(f, f"the server refused: {f.faultString} (Fault {f.faultCode})") from None
    except (OSError, xmlrpc.client.ProtocolError) as e:
        raise DatabaseUnavailable(f"cannot reach the market server: {e}") from None
    except ExpatError as e:
        # a server (or something posing as one) answered with what is not XML: say so, no traceback
        raise DatabaseUnavailable(f"the market server's answer is not valid XML-RPC ({e})") from None


def _parse_json_args(values):
    out = []
    for text in values or []:
        try:
            out.append(json.loads(text))
        except ValueError:
            raise UsageError(f"--arg {text!r} is not JSON (strings need quotes: --arg '\"text\"')") from None
    return out


def cmd_submit(args) -> int:
    from market.core.errors import JobRefused
    from market.jobs import submission

    try:
        with open(args.module, encoding="utf-8") as f:
            source = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {args.module}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{args.module} is not UTF-8 text") from None
    cents = money.parse_price(args.price)
    positional = _parse_json_args(args.arg)
    try:  # validated, compiled and frozen once, here; the server checks the module again
        job = submission.prepare(source, args.function, positional, {})
    except JobRefused as e:
        print(f"market: {args.module} cannot run as a market job:\n{e}", file=sys.stderr)
        return KINDS[e.kind].exit
    # the fee before the job is sent (stderr: stdout stays the submission's answer, for scripts)
    print(verification.fee_words(), "(the market's default settings; docs/trust.md)", file=sys.stderr)
    proxy, account = _server(args)
    # the paper's job(accountid, ...) wants the account's id; the server tells it (whoami) unless given
    account_id = args.account_id if args.account_id is not None else _call(proxy.whoami)["id"]
    if not _price_is_meant(proxy, cents, args.yes):
        return EXIT_BAD_INPUT
    cap = caps.parse_cap(args.cap) if args.cap else None
    print(printable(_call(submission.submit_over_rpc, proxy, account_id, job, args.name, cents, cap)))
    return 0


def _refuse(fault):
    raise fault


def _price_is_meant(proxy, cents: int, yes: bool) -> bool:
    """Ask the server what the price buys (XML-RPC ``price_check``, the quote rule); an unusual
    price is refused here unless ``--yes`` confirms it. A server without ``price_check`` is
    trusted with the price (its own ceiling still applies)."""
    import xmlrpc.client

    try:
        view = proxy.price_check(money.format_cents(cents))
    except xmlrpc.client.Fault as e:
        if e.faultCode == KINDS["no-such-method"].fault:
            return True
        return _call(_refuse, e)
    words = printable(view.get("words", ""))
    if view.get("unusual") and not yes:
        print(f"{words}.\nSubmit again with --yes if you mean it.", file=sys.stderr)
        return False
    if view.get("unusual"):
        print(f"{words} (confirmed with --yes).", file=sys.stderr)
    return True


def cmd_submit_task(args) -> int:
    import xmlrpc.client

    from market.jobs import taskbundle

    try:
        with open(args.task, encoding="utf-8") as f:
            spec = json.load(f)
    except OSError as e:
        raise UsageError(f"cannot read {args.task}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{args.task} is not valid JSON: {e}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"{args.task} must hold a JSON object")
    taskbundle.validate_spec(spec)
    taskfs = args.taskfs or os.path.join(os.path.dirname(os.path.abspath(args.task)), str(spec.get("taskfs", "")))
    input_data = None
    if args.input:
        try:
            with open(args.input, "rb") as f:
                input_data = f.read()
        except OSError as e:
            raise UsageError(f"cannot read --input {args.input}: {e.strerror}") from None
    bundle = taskbundle.pack(spec, taskbundle.archive_taskfs(taskfs), input_data)
    cents = money.parse_price(args.price)
    proxy, _ = _server(args)
    account_id = _call(proxy.whoami)["id"]
    print(printable(_call(proxy.task, account_id, xmlrpc.client.Binary(bundle), money.format_cents(cents), args.name)))
    return 0


def cmd_status(args) -> int:
    proxy, _ = _server(args)
    page = None
    if args.job is not None:
        rows = [_call(proxy.status, args.job)]
    else:
        # one page of the list, as the web's /jobs shows it (market.core.listing checks each value)
        query = {k: str(v) for k, v in _list_query(args).items() if v is not None}
        page = _call(proxy.jobs, query)
        rows = page["jobs"]
    print(f"{'id':>5}  {'name':<24} {'price':>8} {'status':<10} {'executed':>9} {'slices':>6}  outcome  result")
    for r in rows:
        # every cell is the server's text (a job name is any member's): escaped, so no control reaches the terminal
        job_id, name, price, status, slices, outcome = (
            printable(r.get(k) if r.get(k) is not None else "")
            # the state members read (failed, not finished, for a job that ended without its
            # result: market.core.states); a server without it sends only the stored status
            for k in ("id", "name", "price", "state" if r.get("state") else "status", "slices", "outcome")
        )
        try:
            executed = f"{float(r['executed_seconds']):>8.1f}s"
        except (KeyError, TypeError, ValueError):
            executed = f"{'?':>8} "
        # a result is final only once verified by replay (docs/trust.md)
        standing = printable(r.get("verification") or "")
        print(f"{job_id:>5}  {name[:24]:<24} {price:>8} {status:<10} {executed} {slices:>6}  {outcome:<8} {standing}")
    if args.job is not None:
        for line in _live_lines(_call(proxy.progress, args.job)):
            print(line)
    elif page is not None and (page["pages"] > 1 or page["page"] > 1):
        more = f"; next: --page {page['page'] + 1}" if page["page"] < page["pages"] else ""
        # only when the list is paged, on standard error: standard output stays the table
        print(
            f"{page['total']} job{'s' if page['total'] != 1 else ''}; page {page['page']} of {page['pages']}{more}",
            file=sys.stderr,
        )
    return 0


def _list_query(args) -> dict:
    return {
        "page": args.page,
        "per": args.per,
        "sort": args.sort,
        "dir": args.dir,
        "state": args.state,
        "name": args.name,
        "batch": args.batch,
        "q": args.search,
    }


def _live_lines(live: dict) -> list[str]:
    """``market status JOB`` / ``market watch JOB``: the job's live figures, one per line."""
    progress = live.get("progress")
    shown = "not reported" if progress is None else f"{100 * float(progress):.0f}%"
    lines = [
        f"progress: {shown}",
        f"slices: {int(live.get('slices') or 0)}",
        f"cpu-seconds: {float(live.get('executed_seconds') or 0):.1f}",
        f"cost so far: {printable(live.get('cost') or '0.00')} credits",
    ]
    if live.get("over"):
        lines.append("remaining: none (the job has ended)")
    elif live.get("remaining_seconds") is None:
        lines.append("remaining: unknown until the job reports progress")
    else:
        lines.append(
            f"remaining: about {float(live['remaining_seconds']):.1f} cpu-seconds, "
            f"{printable(live.get('remaining_cost'))} credits at {printable(live.get('price'))} per second"
            f" (total about {printable(live.get('total_cost'))})"
        )
    return lines


def cmd_watch(args) -> int:
    """Refresh the job's live figures until it ends; exit 0 if it finished, 1 otherwise."""
    proxy, _ = _server(args)
    while True:
        live = _call(proxy.progress, args.job)
        status = printable(live.get("status") or "")
        outcome = printable(live.get("outcome") or "")
        print(f"job {args.job}: {status}" + (f" ({outcome})" if outcome else ""))
        for line in _live_lines(live):
            print("  " + line)
        sys.stdout.flush()
        if live.get("over"):
            if live.get("error"):
                print(f"job {args.job} failed: {printable(live['error'], lines=True)}", file=sys.stderr)
            return 0 if live.get("outcome") == "finished" and not live.get("error") else EXIT_REFUSED
        time.sleep(args.every)


#: seconds between reads of ``market logs --follow``
FOLLOW_SECONDS = 1.0


def cmd_logs(args) -> int:
    """What the job's slices printed; with --follow, the new output as it arrives, until the job ends."""
    proxy, _ = _server(args)
    after = 0
    while True:
        answer = _call(proxy.logs, args.job, after)
        # a worker's text: escaped, so no control character reaches the terminal
        sys.stdout.write(printable(answer.get("log") or "", lines=True))
        sys.stdout.flush()
        after = int(answer.get("next") or after)
        if not args.follow or answer.get("status") in ("finished", "cancelled"):
            return 0
        time.sleep(args.every)


#: ``market statement``'s columns per grouping: (row key, heading, width)
STATEMENT_COLUMNS = {
    "job": [
        ("job", "job", 6),
        ("name", "name", 24),
        ("batch", "batch", 6),
        ("slices", "slices", 7),
        ("paid", "paid", 12),
    ],
    "batch": [
        ("batch", "batch", 6),
        ("name", "name", 24),
        ("jobs", "jobs", 6),
        ("slices", "slices", 7),
        ("paid", "paid", 12),
    ],
    "client": [("client", "client", 6), ("name", "name", 24), ("slices", "slices", 7), ("earned", "earned", 12)],
    "day": [("day", "day (UTC)", 10), ("in", "in", 12), ("out", "out", 12)],
}


def cmd_statement(args) -> int:
    """Your money per job, batch, client or day over a date range: a table, --json or --csv."""
    import csv

    proxy, _ = _server(args)
    answer = _call(proxy.statement, args.by, args.since or "", args.until or "")
    columns = STATEMENT_COLUMNS[args.by]
    rows = answer.get("rows") or []
    if args.json:
        print(json.dumps(answer, indent=2))
    elif args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow([key for key, _, _ in columns])
        for r in rows:  # names are members' text: kept as they are, quoted by csv
            out.writerow([r.get(key, "") for key, _, _ in columns])
    else:
        print("  ".join(f"{head:<{width}}" if key == "name" else f"{head:>{width}}" for key, head, width in columns))
        for r in rows:
            print(
                "  ".join(
                    f"{printable(r.get(key, '')):<{width}}"
                    if key == "name"
                    else f"{printable(r.get(key, '')):>{width}}"
                    for key, _, width in columns
                )
            )
        if args.by in ("job", "batch"):
            print(f"paid in all: {answer['paid']} credits")
        elif args.by == "client":
            print(f"earned in all: {answer['earned']} credits")
        if answer.get("truncated"):
            print(f"(only the first {len(rows)} rows: narrow --since/--until)")
    return 0


#: what ``market result`` prints at most: values (shared parts counted where they appear), characters
PRINT_NODES = 1_000_000
PRINT_CHARS = 4 * 1024 * 1024


def cmd_result(args) -> int:
    from market.core.errors import TooLarge
    from market.jobs import results

    proxy, _ = _server(args)
    row = _call(proxy.outcome, args.job)
    # exit codes per outcome (docs/operations.md): 0 finished, EXIT_JOB_FAILED failed (the error on
    # stderr), EXIT_JOB_CANCELLED cancelled; a job not over yet is the server's refusal (1)
    state = states.state_of({**row, "status": row.get("status") or "finished"})
    if state.status == JobStatus.CANCELLED:
        print(f"job {args.job} was cancelled: no result", file=sys.stderr)
        return EXIT_JOB_CANCELLED
    if state.failed and row.get("kind") != "task":
        line = f" (line {state.error_line} of the module)" if state.error_line else ""
        print(f"job {args.job} failed: {state.reason}{line}", file=sys.stderr)
        if state.error:
            print(printable(state.error, lines=True), file=sys.stderr)
        return EXIT_JOB_FAILED
    data = row["result"].data if row.get("result") is not None else None
    if row.get("verification") == "unverified":  # on stderr: stdout stays the value, for scripts
        reason = printable(row.get("verification_reason") or "not yet replayed by another member's worker")
        print(f"result unverified: {reason}", file=sys.stderr)
    if args.output:  # the bytes as the worker sent them: nothing is decoded, whatever their size
        with open(args.output, "wb") as f:
            f.write(data or b"")
        what = "output" if row.get("kind") == "task" else "encoded result (market.tasklet.codec)"
        print(f"wrote the {what} of job {args.job} to {args.output}: {len(data or b''):,} bytes", file=sys.stderr)
        return 0
    if row.get("kind") == "task":
        print(f"status: {row['outcome']}", file=sys.stderr)
        sys.stdout.write((data or b"").decode("utf-8", "replace"))
        return EXIT_JOB_FAILED if state.failed else 0
    if data is None:
        print("null")
        return 0
    # the member's own terminal: printed within a budget, so a result of a few bytes that stands
    # for 2**40 values is refused at once instead of hanging it
    shown = results.show_here(data, PRINT_CHARS, PRINT_NODES)
    if shown.malformed:
        raise MarketError(f"the result of job {args.job} {shown.problem}")
    if shown.text is None or not shown.complete:
        raise TooLarge(
            f"the result of job {args.job} ({shown.size:,} bytes encoded) {shown.problem}: too large to print;"
            f" save it with: market result {args.job} --output FILE"
        )
    print(shown.text)
    return 0


def cmd_price(args) -> int:
    proxy, _ = _server(args)
    cents = money.parse_price(args.price)
    _call(proxy.price, args.job, money.format_cents(cents))
    print(f"job {args.job} now pays {money.format_cents(cents)} per second")
    return 0


def cmd_cap(args) -> int:
    """``market cap job ID AMOUNT`` / ``batch ID AMOUNT`` / ``account [AMOUNT]``: set a spending cap
    ('none' clears it) and show what was spent under it."""
    proxy, _ = _server(args)
    if args.what == "account":
        if len(args.values) > 1:
            raise UsageError("market cap account [AMOUNT] — one amount at most")
        answer = _call(proxy.account_cap, *args.values)
        what = "your account"
    else:
        if len(args.values) != 2:
            raise UsageError(f"market cap {args.what} {args.what.upper()}_ID AMOUNT (credits like 5.00, or none)")
        try:
            ident = int(args.values[0])
        except ValueError:
            raise UsageError(f"{args.values[0]!r} is not a {args.what} id") from None
        answer = _call(getattr(proxy, f"{args.what}_cap"), ident, args.values[1])
        what = f"{args.what} {ident}"
    if not answer:
        print(f"{what}: no spending cap")
    else:
        print(f"{what}: spending cap {answer['cap']} credits, {answer['spent']} spent, {answer['left']} left")
    return 0


def cmd_notify(args) -> int:
    """``market notify [on|off]``: an e-mail when a job finishes or fails (a batch: when it ends)."""
    proxy, _ = _server(args)
    on = _call(proxy.notify, *([args.state == "on"] if args.state else []))
    print(f"e-mail when a job or batch ends: {'on' if on else 'off'}")
    return 0


def cmd_cancel(args) -> int:
    proxy, _ = _server(args)
    _call(proxy.cancel, args.job)
    print(f"job {args.job} cancelled")
    return 0


# -- batches (parameter sweeps; market.jobs.batches) ---------------------------------------------

#: the largest argument file ``market batch submit`` reads
MAX_ARGUMENT_FILE = 64 * 1024 * 1024


def cmd_batch_submit(args) -> int:
    from market.core.errors import JobRefused
    from market.jobs import batches
    from market.settings import DispatchSettings

    source = _read_text(args.module)
    if os.path.getsize(args.arguments) > MAX_ARGUMENT_FILE:
        raise UsageError(f"{args.arguments} is over {MAX_ARGUMENT_FILE // (1024 * 1024)} MiB")
    text = _read_text(args.arguments)
    cents = money.parse_price(args.price)
    fmt = args.format or batches.format_of(args.arguments)
    # the default max-batch: the server refuses a batch over its own setting before any work
    sets = batches.read_argument_sets(text, fmt, DispatchSettings().max_batch)
    try:  # validated and compiled once, here; each argument set frozen; the server checks the module again
        states = batches.prepare_states(source, args.function, sets)
    except JobRefused as e:
        print(f"market: {args.module} cannot run as a market batch:\n{e}", file=sys.stderr)
        return KINDS[e.kind].exit
    print(verification.fee_words(), "(the market's default settings; docs/trust.md)", file=sys.stderr)
    proxy, _ = _server(args)
    account_id = _call(proxy.whoami)["id"]
    cap = caps.parse_cap(args.cap) if args.cap else None
    batch_id, jobs = _call(
        batches.submit_over_rpc, proxy, account_id, source, args.function, states, args.name, cents, cap
    )
    print(f"batch {batch_id}: {len(jobs):,} jobs", file=sys.stderr)
    print(batch_id)
    return 0


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text") from None


def cmd_batch_status(args) -> int:
    proxy, _ = _server(args)
    if args.batch is None:
        print(f"{'id':>5}  {'name':<24} {'price':>8} {'jobs':>6}  function")
        for r in _call(proxy.batch_status):
            name, price, entry = (printable(r.get(k) or "") for k in ("name", "price", "entry"))
            print(f"{r['id']:>5}  {name[:24]:<24} {price:>8} {r['size']:>6}  {entry}")
        return 0
    r = _call(proxy.batch_status, args.batch)
    counts = ", ".join(f"{printable(k)} {v}" for k, v in sorted(r["counts"].items())) or "no jobs yet"
    print(f"batch {r['id']}  {printable(r['name'])}  ({printable(r['entry'])}, {r['jobs']:,} of {r['size']:,} jobs)")
    print(f"progress  {100 * float(r['progress']):.1f} %   {counts}")
    if r["outcomes"]:
        print("outcomes  " + ", ".join(f"{printable(k)} {v}" for k, v in sorted(r["outcomes"].items())))
    estimate = f"   estimate {printable(r['estimate'])}" if r["estimate"] else ""
    print(f"price     {printable(r['price'])} per second   cost so far {printable(r['cost'])}{estimate}")
    print(f"executed  {float(r['executed_seconds']):.1f} s in {r['slices']:,} slices")
    return 0


def cmd_batch_cancel(args) -> int:
    proxy, _ = _server(args)
    n = _call(proxy.batch_cancel, args.batch)
    print(f"batch {args.batch}: {n:,} jobs cancelled")
    return 0


def cmd_batch_price(args) -> int:
    proxy, _ = _server(args)
    cents = money.parse_price(args.price)
    n = _call(proxy.batch_price, args.batch, money.format_cents(cents))
    print(f"batch {args.batch}: {n:,} jobs now pay {money.format_cents(cents)} per second")
    return 0


def cmd_batch_results(args) -> int:
    """Every job's line, in argument-set order, paged from the server; each result shown within the
    budget ``market result`` prints with (a result too large to show is null with its reason)."""
    from market.jobs import batches, results

    proxy, _ = _server(args)
    out = open(args.output, "w", encoding="utf-8", newline="") if args.output else sys.stdout
    try:
        after, first = -1, True
        while True:
            page = _call(proxy.batch_results, args.batch, after)
            if not page:
                break
            records = []
            for r in page:
                text = None
                data = r["result"].data if r.get("result") is not None else None
                if data is not None:  # as JSON (a text result quoted), within market result's budget
                    shown, complete, problem, _ = results.rendered(data, PRINT_CHARS, PRINT_NODES, None, False)
                    if shown is not None and complete:
                        text = shown
                    else:
                        r["error"] = r.get("error") or f"the result {problem}; get it with: market result {r['job']}"
                records.append(batches.result_record(r, text))
            if args.format == "csv":
                out.write(batches.csv_lines(records, first))
            else:
                out.writelines(batches.jsonl_line(rec) for rec in records)
            first, after = False, page[-1]["index"]
        if first and args.format == "csv":
            out.write(batches.csv_lines([], True))
    finally:
        if args.output:
            out.close()
    return 0


def cmd_report(args) -> int:
    from market import report

    return report.main(args.rest, args.db or _settings(args).db)


def cmd_demo(args) -> int:
    from market import demo

    return demo.main(args.dir)


def cmd_run_local(args) -> int:
    from market.tasklet import localrun

    return localrun.main(args.rest)


# -- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="market", description="Community Market Dispatcher: administration and jobs")
    db_help = f"database URL (default: the config file's db, else $MARKET_DB, else {dburl.DEFAULT_URL})"
    config_help = "a TOML settings file (docs/operations.md): db, and [accounts] starting-grant"
    p.add_argument("--db", default=None, help=db_help)
    p.add_argument("--config", default=None, metavar="FILE", help=config_help)
    # the global options are accepted after the command too (market db init --db URL): every
    # command's parser has them, defaulting to "not given" so the one before the command stays
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    common.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE", help=config_help)
    sub = _Commands(p.add_subparsers(dest="command", metavar="COMMAND"), common)  # _Commands makes COMMAND required

    db = sub.group("db", help="create, upgrade or audit the database")
    db.add_parser("init", help="create the tables").set_defaults(func=cmd_db_init)
    db.add_parser("upgrade", help="apply pending schema migrations, keeping data").set_defaults(func=cmd_db_upgrade)
    audit = db.add_parser("audit", help="check the ledger invariants (in credits; --json for the raw cents)")
    audit.add_argument("--json", action="store_true", help="print the figures as JSON, in cents")
    audit.set_defaults(func=cmd_db_audit)

    acc = sub.group("account", help="member accounts")
    c = acc.add_parser(
        "create",
        help="create an account; the password is asked for on a terminal, or read"
        " from standard input with --password-stdin (needed when input is piped)",
    )
    c.add_argument("name")
    c.add_argument("--email", required=True)
    c.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input instead of asking for it",
    )
    c.add_argument("--confirmed", action="store_true", help="skip e-mail confirmation (administrators)")
    c.add_argument(
        "--grant", default=None, help="starting grant in credits (default: the config file's starting-grant, or 100.00)"
    )
    c.set_defaults(func=cmd_account_create)
    c = acc.add_parser("confirm", help="confirm an account (with the e-mailed token, or as administrator without)")
    c.add_argument("name")
    _add_token_options(c, "the confirmation token", None)
    c.set_defaults(func=cmd_account_confirm)
    acc.add_parser("list", help="list accounts").set_defaults(func=cmd_account_list)
    c = acc.add_parser("balance", help="show an account's balance")
    c.add_argument("name")
    c.set_defaults(func=cmd_account_balance)
    c = acc.add_parser("grant", help="grant credits to an account")
    c.add_argument("name")
    c.add_argument("amount")
    c.add_argument("--memo", default="grant")
    c.set_defaults(func=cmd_account_grant)
    c = acc.add_parser("token", help="issue a new XML-RPC API token for an account")
    c.add_argument("name")
    c.set_defaults(func=cmd_account_token)
    c = acc.add_parser(
        "disable", help="disable an account: no log-in, no API, no new leases for its jobs or its clients"
    )
    c.add_argument("name")
    c.set_defaults(func=cmd_account_disable)
    c = acc.add_parser("enable", help="enable a disabled account again")
    c.add_argument("name")
    c.set_defaults(func=cmd_account_enable)

    cl = sub.group("client", help="computation clients")
    c = cl.add_parser("register", help="register a client for an account; prints its id and token once")
    c.add_argument("account")
    c.add_argument("--name", default=None)
    c.add_argument(
        "--server",
        default=None,
        help="the market's XML-RPC URL the worker will use, for the printed command"
        " (default $MARKET_SERVER or http://127.0.0.1:7080/RPC2)",
    )
    c.set_defaults(func=cmd_client_register)
    c = cl.add_parser("list", help="list clients")
    c.add_argument("--account", default=None)
    c.set_defaults(func=cmd_client_list)
    c = cl.add_parser("revoke", help="revoke a client for good: its token is refused, its open leases expire")
    c.add_argument("id", type=int)
    c.set_defaults(func=cmd_client_revoke)

    def server_opts(c):
        c.add_argument(
            "--server",
            default=None,
            help="the market's XML-RPC URL, like http://HOST:7080/RPC2 or HOST:7080"
            " (default $MARKET_SERVER or http://127.0.0.1:7080/RPC2)",
        )
        c.add_argument("--account", default=None, help="your account name (or $MARKET_ACCOUNT)")
        _add_token_options(c, "your API token", "MARKET_TOKEN")

    c = sub.add_parser("frontends", help="the market front ends on this database and which holds the matcher role")
    c.add_argument("--all", action="store_true", help="stopped and dead front ends too")
    c.add_argument("--json", action="store_true", help="print them as JSON")
    c.set_defaults(func=cmd_frontends)
    c = sub.add_parser("submit", help="validate and freeze a job locally, then submit it (job + init)")
    c.add_argument("module")
    c.add_argument("function")
    c.add_argument("--name", required=True)
    c.add_argument("--price", required=True, help="credits per second, like 0.05")
    c.add_argument("--yes", action="store_true", help="confirm an unusual price (far above what wins the fastest)")
    c.add_argument("--arg", action="append", help="a positional argument as JSON (repeatable)")
    c.add_argument("--cap", default=None, help="a spending cap for the job, in credits like 5.00")
    c.add_argument("--account-id", type=int, default=None)
    server_opts(c)
    c.set_defaults(func=cmd_submit)
    c = sub.add_parser("submit-task", help="submit a pythia-style task (.task JSON + task filesystem + input)")
    c.add_argument("task")
    c.add_argument("--taskfs", default=None, help="the task filesystem (default: the .task file's taskfs)")
    c.add_argument("--input", default=None, help="a file fed to the task on standard input")
    c.add_argument("--name", required=True)
    c.add_argument("--price", required=True)
    server_opts(c)
    c.set_defaults(func=cmd_submit_task)
    c = sub.add_parser("status", help="your jobs (a page of them: sort, filter, search), or one job")
    c.add_argument("job", nargs="?", type=int)
    c.add_argument("--page", type=int, default=None, help="which page of the list (default 1)")
    c.add_argument("--per", type=int, default=None, help="jobs per page (1-100, default 25)")
    c.add_argument("--sort", default=None, help="id, name, status, price, progress or submitted (default id)")
    c.add_argument("--dir", default=None, choices=("asc", "desc"), help="order (default: newest, dearest first)")
    c.add_argument(
        "--state", default=None, help="only jobs in this state: new, ready, running, held, finished, failed, cancelled"
    )
    c.add_argument("--name", default=None, help="only jobs whose name contains this")
    c.add_argument("--batch", type=int, default=None, help="only the jobs of this batch")
    c.add_argument("--search", default=None, help="a job id, or words in a job's name or error")
    server_opts(c)
    c.set_defaults(func=cmd_status)
    c = sub.add_parser("result", help="print a finished job's result (or save it with --output FILE)")
    c.add_argument("job", type=int)
    c.add_argument(
        "--output", metavar="FILE", default=None, help="write the result's encoded bytes to FILE instead of printing it"
    )
    server_opts(c)
    c.set_defaults(func=cmd_result)
    c = sub.add_parser("watch", help="show a job's progress, cost and estimate until it ends (exit 0: finished)")
    c.add_argument("job", type=int)
    c.add_argument("--every", type=float, default=2.0, help="seconds between refreshes (default 2)")
    server_opts(c)
    c.set_defaults(func=cmd_watch)
    c = sub.add_parser("logs", help="what a job printed (stdout and stderr; the newest job-log bytes)")
    c.add_argument("job", type=int)
    c.add_argument("--follow", "-f", action="store_true", help="keep printing new output until the job ends")
    c.add_argument("--every", type=float, default=FOLLOW_SECONDS, help=argparse.SUPPRESS)
    server_opts(c)
    c.set_defaults(func=cmd_logs)
    c = sub.add_parser("statement", help="your money per job, batch, client or day over a date range")
    c.add_argument("--by", choices=("job", "batch", "client", "day"), default="job")
    c.add_argument("--since", help="first day, YYYY-MM-DD (UTC; default 30 days before --until)")
    c.add_argument("--until", help="last day, YYYY-MM-DD (UTC, included; default today)")
    fmt = c.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="the server's answer as JSON (amounts as credits)")
    fmt.add_argument("--csv", action="store_true", help="the rows as CSV")
    server_opts(c)
    c.set_defaults(func=cmd_statement)
    c = sub.add_parser("price", help="change a job's price")
    c.add_argument("job", type=int)
    c.add_argument("price")
    server_opts(c)
    c.set_defaults(func=cmd_price)
    c = sub.add_parser(
        "cap",
        help="a spending cap: cap job ID AMOUNT, cap batch ID AMOUNT, cap account [AMOUNT] ('none' clears it)",
    )
    c.add_argument("what", choices=("job", "batch", "account"))
    c.add_argument("values", nargs="*", help="the job or batch id, then the cap in credits (none: no cap)")
    server_opts(c)
    c.set_defaults(func=cmd_cap)
    c = sub.add_parser("notify", help="an e-mail when a job finishes or fails, one per batch (on, off; none: show)")
    c.add_argument("state", nargs="?", choices=("on", "off"))
    server_opts(c)
    c.set_defaults(func=cmd_notify)
    c = sub.add_parser("cancel", help="cancel a job (a running task is aborted)")
    c.add_argument("job", type=int)
    server_opts(c)
    c.set_defaults(func=cmd_cancel)

    bt = sub.group("batch", help="batches: one function over many argument sets (parameter sweeps)")
    c = bt.add_parser(
        "submit",
        help="validate the module once, freeze every argument set of a JSON, JSON Lines or CSV file, submit them",
    )
    c.add_argument("module")
    c.add_argument("function")
    c.add_argument(
        "arguments",
        help="argument sets: a .json array of sets, a .jsonl file (one set a line) or a .csv (header: argument names);"
        " a set is a JSON array (positional), an object (keywords) or one value",
    )
    c.add_argument("--format", choices=("json", "jsonl", "csv"), default=None, help="default: from the file's name")
    c.add_argument("--name", required=True)
    c.add_argument("--price", required=True, help="credits per second for each job, like 0.05")
    c.add_argument("--cap", default=None, help="a spending cap for the whole batch, in credits like 50.00")
    server_opts(c)
    c.set_defaults(func=cmd_batch_submit)
    c = bt.add_parser("status", help="your batches, or one batch's progress, counts and cost")
    c.add_argument("batch", nargs="?", type=int)
    server_opts(c)
    c.set_defaults(func=cmd_batch_status)
    c = bt.add_parser("cancel", help="cancel every job of a batch that is not over")
    c.add_argument("batch", type=int)
    server_opts(c)
    c.set_defaults(func=cmd_batch_cancel)
    c = bt.add_parser("price", help="a new price for every job of a batch that is not over")
    c.add_argument("batch", type=int)
    c.add_argument("price")
    server_opts(c)
    c.set_defaults(func=cmd_batch_price)
    c = bt.add_parser("results", help="every job's result, as JSON Lines (default) or CSV")
    c.add_argument("batch", type=int)
    c.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    c.add_argument("--output", metavar="FILE", default=None, help="write to FILE instead of standard output")
    server_opts(c)
    c.set_defaults(func=cmd_batch_results)

    c = sub.add_parser(
        "report", help="write the XML system report: [-o FILE] [--as ACCOUNT]", add_help=False, plain=True
    )
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_report)

    c = sub.add_parser(
        "run-local", help="run a job locally, freezing and thawing it every slice", add_help=False, plain=True
    )
    c.add_argument("rest", nargs=argparse.REMAINDER)
    c.set_defaults(func=cmd_run_local)

    c = sub.add_parser("demo", help="run a market, a worker and a sample job on embedded SQLite, then stop")
    c.add_argument("--dir", default="demo", help="a folder for the demo's database and logs (emptied first)")
    c.set_defaults(func=cmd_demo)
    return p


class _Commands:
    """The ``COMMAND`` level of the parser: every command (and every action of a group) inherits the
    global options, so they work before or after the command."""

    def __init__(self, subparsers, common: argparse.ArgumentParser):
        self._sub, self._common = subparsers, common
        subparsers.required = True

    def add_parser(self, name: str, plain: bool = False, **kwargs) -> argparse.ArgumentParser:
        kwargs.setdefault("description", kwargs.get("help"))
        return (
            self._sub.add_parser(name, **kwargs)
            if plain
            else self._sub.add_parser(name, parents=[self._common], **kwargs)
        )

    def group(self, name: str, help: str) -> _Commands:
        actions = self._sub.add_parser(name, help=help).add_subparsers(dest="what", metavar="ACTION")
        return _Commands(actions, self._common)


PASS_THROUGH = ("report", "run-local")  # commands that parse their own options


def _split_pass_through(argv: list[str]):
    """(global args, command, rest) when the command parses its own options, else None."""
    i = 0
    while i < len(argv):
        if argv[i] in ("--db", "--config") and i + 1 < len(argv):
            i += 2
        elif argv[i].startswith(("--db=", "--config=")):
            i += 1
        else:
            break
    if i < len(argv) and argv[i] in PASS_THROUGH:
        return argv[:i], argv[i], argv[i + 1 :]
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    split = _split_pass_through(argv)
    if split is not None:
        head, command, rest = split
        argv = head + [command]
    try:
        args = parser.parse_args(argv)
        if split is not None:
            args.rest = rest
    except SystemExit as e:
        return int(e.code or 0) and EXIT_BAD_INPUT
    try:
        return args.func(args)
    except MarketError as e:
        # a refusal may quote a server's words or a member's text: escaped, lines kept
        print(f"market: {printable(e, lines=True)}", file=sys.stderr)
        return kind_of(e).exit
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
