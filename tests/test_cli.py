"""The ``market`` CLI as a user runs it: real subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.servers import MARKET


def market(db_url, *args, stdin=None):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.run(
        [*MARKET, "--db", db_url, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_account_and_client_lifecycle(db_url):
    assert market(db_url, "db", "init").returncode == 0
    r = market(
        db_url,
        "account",
        "create",
        "alice",
        "--email",
        "alice@example.org",
        "--password-stdin",
        "--grant",
        "12.50",
        stdin="correct horse\n",
    )
    assert r.returncode == 0, r.stderr
    token = r.stdout.split("confirmation token: ")[1].split()[0]
    assert "--token-file FILE" in r.stdout and token not in r.stdout.split("confirm with:")[1]
    # the grant waits for the confirmation
    assert market(db_url, "account", "balance", "alice").stdout.strip() == "0.00"
    assert market(db_url, "account", "confirm", "alice", "--token-file", "-", stdin="wrong\n").returncode == 2
    assert market(db_url, "account", "confirm", "alice", "--token-file", "-", stdin=token + "\n").returncode == 0
    assert market(db_url, "account", "balance", "alice").stdout.strip() == "12.50"
    assert market(db_url, "account", "confirm", "alice").returncode == 0  # again, as administrator: no second grant
    assert market(db_url, "account", "balance", "alice").stdout.strip() == "12.50"
    assert market(db_url, "account", "grant", "alice", "0.50").returncode == 0
    assert market(db_url, "account", "balance", "alice").stdout.strip() == "13.00"
    r = market(db_url, "client", "register", "alice", "--name", "laptop")
    assert r.returncode == 0 and "token (shown once)" in r.stdout
    listing = market(db_url, "client", "list").stdout
    assert "laptop" in listing and "alice" in listing
    assert market(db_url, "db", "audit").returncode == 0


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["account", "balance", "nobody"], 1, "no account 'nobody'"),
        (["client", "register", "nobody"], 1, "no account 'nobody'"),
        (["account", "grant", "alice", "-3"], 2, "credits"),
        (["account", "grant", "alice", "1.234"], 2, "2 decimals"),
        (["account", "create", "Bad Name", "--email", "x@example.org", "--password-stdin"], 2, "not allowed"),
    ],
)
def test_bad_input_gives_one_line_and_changes_nothing(db_url, args, code, words):
    market(db_url, "db", "init")
    market(
        db_url,
        "account",
        "create",
        "alice",
        "--email",
        "alice@example.org",
        "--password-stdin",
        "--confirmed",
        stdin="correct horse\n",
    )
    before = market(db_url, "account", "list").stdout
    r = market(db_url, *args, stdin="correct horse\n")
    assert r.returncode == code, (r.stdout, r.stderr)
    assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert market(db_url, "account", "list").stdout == before


def test_duplicate_account_is_refused(db_url):
    market(db_url, "db", "init")
    args = ["account", "create", "alice", "--email", "alice@example.org", "--password-stdin"]
    assert market(db_url, *args, stdin="correct horse\n").returncode == 0
    r = market(db_url, *args, stdin="correct horse\n")
    assert r.returncode == 1 and "already exists" in r.stderr


def test_short_password_is_refused(db_url):
    market(db_url, "db", "init")
    r = market(db_url, "account", "create", "alice", "--email", "a@example.org", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "at least 8" in r.stderr


def test_unreachable_database_and_bad_url():
    r = market("mysql://root@127.0.0.1:1/none", "account", "list")
    assert r.returncode == 1 and "cannot reach" in r.stderr and "Traceback" not in r.stderr
    r = market("oracle://x", "account", "list")
    assert r.returncode == 2 and "unknown database URL" in r.stderr


def test_a_grant_puts_the_accounts_held_jobs_back_on_the_ready_list(db, db_url):
    from market.store import jobs as jsql
    from tests import marketdata as md

    owner, _ = md.account(db, "poor", grant=1)
    job_id = md.job(db, owner, 100)
    db.transact(lambda tx: tx.execute("UPDATE jobs SET status = 'held' WHERE id = ?", (job_id,)))
    assert market(db_url, "account", "grant", "poor", "50.00").returncode == 0
    assert db.transact(jsql.job_row, job_id)["status"] == "ready"


def test_new_tokens_never_look_like_a_command_line_option():
    from market.accounts import credentials

    tokens = [credentials.new_token()[0] for _ in range(2000)]
    assert not [t for t in tokens if t.startswith("-")]
    assert len(set(tokens)) == len(tokens) and all(len(t) >= 43 for t in tokens)


def bare_market(*args, stdin=None, **env):
    e = dict(os.environ, PYTHONPATH=os.getcwd(), **env)
    return subprocess.run([*MARKET, *args], input=stdin, capture_output=True, text=True, env=e, timeout=60)


def test_global_options_work_before_and_after_the_command(tmp_path):
    first, second = f"sqlite:{tmp_path}/a.sqlite", f"sqlite:{tmp_path}/b.sqlite"
    assert bare_market("db", "init", "--db", first).returncode == 0
    assert bare_market("--db", second, "db", "init").returncode == 0
    bare_market(
        "account",
        "create",
        "alice",
        "--db",
        first,
        "--email",
        "a@example.org",
        "--password-stdin",
        "--confirmed",
        stdin="correct horse\n",
    )
    assert "alice" in bare_market("--db", first, "account", "list").stdout
    assert "alice" not in bare_market("account", "list", "--db", second).stdout
    # the command's own --db wins over the one before it
    assert "alice" in bare_market("--db", second, "account", "list", "--db", first).stdout
    report = bare_market("report", "--db", first)
    assert report.returncode == 0 and "<report" in report.stdout


def test_account_create_help_says_when_the_password_comes_from_standard_input():
    text = " ".join(bare_market("account", "create", "--help").stdout.split())
    assert "asked for on a terminal" in text and "--password-stdin" in text and "piped" in text


@pytest.mark.parametrize(
    "typed, expected",
    [
        ("127.0.0.1:7080", "http://127.0.0.1:7080/RPC2"),
        ("market.example.org", "http://market.example.org/RPC2"),
        ("https://market.example.org/", "https://market.example.org/RPC2"),
        ("http://[::1]:7080/RPC2", "http://[::1]:7080/RPC2"),
        ("http://h:7080/custom", "http://h:7080/custom"),
    ],
)
def test_server_urls_without_a_scheme_or_path_are_completed(typed, expected):
    from market.rpc.client import server_url

    assert server_url(typed) == expected


@pytest.mark.parametrize(
    "typed, words",
    [
        ("ftp://h/RPC2", "must start with http:// or https://"),
        ("http://h:port/RPC2", "is not valid"),
        ("http://h:99999/RPC2", "is not valid"),
        ("http://:7080/RPC2", "names no host"),
    ],
)
def test_a_bad_server_url_is_one_clear_line(typed, words):
    r = bare_market("status", "--server", typed, "--account", "a", MARKET_TOKEN="t")
    assert r.returncode == 2 and words in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_a_worker_refuses_a_bad_server_url_in_one_line(tmp_path):
    from tests.servers import TWISTD, env

    r = subprocess.run(
        [*TWISTD, "-n", "worker", "--server", "ftp://h", "--client", "1", "--token", "x"],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
    )
    assert r.returncode != 0 and "must start with http:// or https://" in r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr


def test_client_register_prints_a_worker_command_that_keeps_the_token_out_of_the_arguments(tmp_path):
    url = f"sqlite:{tmp_path}/m.sqlite"
    bare_market("db", "init", "--db", url)
    bare_market(
        "account",
        "create",
        "bob",
        "--db",
        url,
        "--email",
        "b@example.org",
        "--password-stdin",
        "--confirmed",
        stdin="correct horse\n",
    )
    out = bare_market("client", "register", "bob", "--db", url, "--server", "10.0.0.5:7080").stdout
    token = out.split("token (shown once): ")[1].split()[0]
    command = out.split("run it with: ")[1].strip()
    assert command.startswith(f"MARKET_CLIENT_TOKEN={token} twistd -n worker --server http://10.0.0.5:7080/RPC2")
    assert "--token" not in command
    assert ("--user nobody" in command) == (os.geteuid() == 0)


# -- tokens never only on the command line --------------------------------------------------------


def _member_market(tmp_path):
    """A running market over a fresh database with member ``ann`` (API token) and her token in a file."""
    from market.accounts import issue_api_token
    from market.store import Database, upgrade
    from tests import marketdata as md
    from tests.servers import Market

    url = f"sqlite:{tmp_path}/m.sqlite"
    db = Database(url)
    upgrade(db)
    account_id, _ = md.account(db, "ann")
    token = issue_api_token(db, account_id)
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    return db, account_id, token, token_file, Market(url, str(tmp_path)).start()


def test_member_commands_read_the_token_from_a_file_or_the_environment_and_warn_about_the_argument(tmp_path):
    db, _, token, token_file, server = _member_market(tmp_path)
    try:
        where = ["--server", server.url, "--account", "ann"]
        from_file = bare_market("status", *where, "--token-file", str(token_file))
        from_stdin = bare_market("status", *where, "--token-file", "-", stdin=token + "\n")
        from_environment = bare_market("status", *where, MARKET_TOKEN=token)
        for r in (from_file, from_stdin, from_environment):
            assert r.returncode == 0 and r.stderr == "", r.stderr
        argument = bare_market("status", *where, "--token", token)
        assert argument.returncode == 0
        assert argument.stderr.count("\n") == 1 and "ps" in argument.stderr and "--token-file" in argument.stderr
        both = bare_market("status", *where, "--token", token, "--token-file", str(token_file))
        assert both.returncode == 2 and "not allowed with" in both.stderr
        missing = bare_market("status", *where, "--token-file", str(tmp_path / "none"))
        assert missing.returncode == 2 and "cannot read --token-file" in missing.stderr
    finally:
        server.stop()
        db.close()


def test_every_command_that_takes_a_token_also_takes_a_token_file():
    from market.cli import build_parser

    def commands(parser, path=()):
        for action in parser._actions:
            if isinstance(action, __import__("argparse")._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, (*path, name))
        yield path, {o for a in parser._actions for o in a.option_strings}

    with_token = [(path, options) for path, options in commands(build_parser()) if "--token" in options]
    assert len(with_token) >= 7  # submit, submit-task, status, result, price, cancel, account confirm
    assert all("--token-file" in options for _, options in with_token)


def test_market_status_shows_no_control_character_of_a_job_name(tmp_path):
    from tests import marketdata as md

    db, account_id, token, token_file, server = _member_market(tmp_path)
    try:
        # names from before job names were checked (XML-RPC carries these; the store now refuses them)
        for name in ("csi \x9b2J", "del \x7f", "bidi \u202eabc", "tab\tand\nline"):
            job_id = md.job(db, account_id, 1, name="plain")
            db.transact(lambda tx, n=name, j=job_id: tx.execute("UPDATE jobs SET name = ? WHERE id = ?", (n, j)))
        r = bare_market("status", "--server", server.url, "--account", "ann", "--token-file", str(token_file))
        assert r.returncode == 0, r.stderr
        assert "\\x9b2J" in r.stdout and "\\u202eabc" in r.stdout and "tab\\x09and\\x0aline" in r.stdout
        body = r.stdout.replace("\n", "")
        assert not [c for c in body if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c == "\u202e"]
        assert len(r.stdout.splitlines()) == 5  # a header and one line per job
    finally:
        server.stop()
        db.close()


def test_account_and_client_lists_escape_what_members_typed(db, db_url):
    from tests import marketdata as md

    owner, _ = md.account(db, "ann")
    md.client(db, owner, "box")
    db.transact(lambda tx: tx.execute("UPDATE clients SET sandbox_level = ?", ("\x1b]0;owned\x07",)))
    db.transact(lambda tx: tx.execute("UPDATE accounts SET email = ?", ("ann\x1b[2J@example.org",)))
    for listing in (market(db_url, "client", "list").stdout, market(db_url, "account", "list").stdout):
        assert "\x1b" not in listing and "\x07" not in listing and "\\x1b" in listing


def test_market_result_refuses_to_print_a_result_bomb_and_saves_its_bytes(db, db_url, tmp_path):
    import xmlrpc.client

    from market.rpc.client import blocking
    from market.tasklet import codec
    from tests import marketdata as md
    from tests.servers import Market, env

    bomb: list = []
    for _ in range(40):
        bomb = [bomb, bomb]
    owner, token = md.account(db, "owner")
    host, _ = md.account(db, "host")
    job_id = md.job(db, owner, 1)
    cid, ctoken = md.client(db, host, "box", 100.0)
    server = Market(db_url, str(tmp_path), "--window", "0.2", "--threshold", "1").start()
    try:
        worker = blocking(server.url, f"client/{cid}", ctoken)
        lease = worker.request(cid, 5)
        worker.result(lease["stateid"], xmlrpc.client.Binary(codec.encode(bomb)))
        e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="owner", MARKET_TOKEN=token)

        def result(*args):
            return subprocess.run([*MARKET, "result", *args], capture_output=True, text=True, env=e, timeout=60)

        r = result(str(job_id))
        assert r.returncode == 2 and not r.stdout and "Traceback" not in r.stderr
        assert "too large to print" in r.stderr and f"market result {job_id} --output FILE" in r.stderr
        saved = tmp_path / "result.bin"
        r = result(str(job_id), "--output", str(saved))
        assert r.returncode == 0 and saved.read_bytes() == codec.encode(bomb)
    finally:
        server.stop()
