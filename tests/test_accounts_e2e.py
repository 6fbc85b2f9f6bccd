"""Issue 19, accounts through the real parts: a real ``twistd market`` and the ``market`` command.
Only confirmed accounts submit; an operator's ``market account disable/enable`` and ``market client
revoke`` reach the running server within AUTH_CACHE_SECONDS (its credentials cache)."""

from __future__ import annotations

import subprocess
import time
import xmlrpc.client

import pytest
import pytest_twisted

from market import accounts
from market.rpc.methods import AUTH_CACHE_SECONDS, MarketRPC
from market.store import jobs as jsql
from tests.servers import MARKET, Market, env

SOURCE = "def main(n):\n    total = 0\n    for i in range(n):\n        total += i\n    return total\n"


def _until(check, what: str, within: float):
    """Poll ``check`` until it returns something true; -> (that value, seconds it took)."""
    started = time.monotonic()
    while True:
        value = check()
        if value:
            return value, time.monotonic() - started
        if time.monotonic() - started > within:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.25)


def test_confirmed_only_submission_disable_enable_and_client_revoke(db, db_url, tmp_path):
    accounts.create_account(db, "carol", "carol@example.org", "correct horse", confirm=True)
    module = tmp_path / "job.py"
    module.write_text(SOURCE)
    server = Market(db_url, str(tmp_path), "--window", "0.2").start()
    try:

        def operator(*args):
            r = subprocess.run([*MARKET, "--db", db_url, *args], capture_output=True, text=True, env=env(), timeout=60)
            assert r.returncode == 0, r.stderr
            return r.stdout

        def member(token, *args):
            e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="carol", MARKET_TOKEN=token)
            return subprocess.run([*MARKET, *args], capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)

        def submit(token):
            return member(token, "submit", str(module), "main", "--name", "sum", "--price", "0.05", "--arg", "100")

        # an unconfirmed account's token (given by the operator) may read, not submit
        token = operator("account", "token", "carol").rsplit(": ", 1)[1].strip()
        r = submit(token)
        assert r.returncode == 1 and "not confirmed" in r.stderr and "(Fault 3)" in r.stderr, r.stderr
        assert "Traceback" not in r.stderr and db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0
        assert member(token, "status").returncode == 0

        operator("account", "confirm", "carol")
        token = operator("account", "token", "carol").rsplit(": ", 1)[1].strip()  # the CLI's token still works
        r = submit(token)
        assert r.returncode == 0, r.stderr
        job_id = int(r.stdout.strip())

        # a client of the account works until the operator revokes it
        out = operator("client", "register", "carol", "--name", "box")
        client_id = int(out.split()[1])
        client_token = out.split("token (shown once): ")[1].split()[0]
        port = server.url.split(":")[2].split("/")[0]
        worker = xmlrpc.client.ServerProxy(f"http://client%2F{client_id}:{client_token}@127.0.0.1:{port}/RPC2")
        worker.request(client_id)
        operator("client", "revoke", str(client_id))

        def refused(call, words):
            def check():
                try:
                    call()
                except xmlrpc.client.Fault as e:
                    return e.faultCode == 3 and words in e.faultString and e.faultString
                return False

            return check

        _, took = _until(
            refused(lambda: worker.request(client_id), "revoked"), "the revocation", AUTH_CACHE_SECONDS + 5
        )
        assert took <= AUTH_CACHE_SECONDS + 2
        print(f"client revocation reached the running server in {took:.1f} s")
        assert "revoked" in operator("client", "list")

        # disabled: its ready job is held at once, its token refused within the cache time
        operator("account", "disable", "carol")
        assert db.transact(jsql.job_row, job_id)["status"] == "held"
        (_, took) = _until(
            lambda: (lambda r: r.returncode == 1 and "disabled" in r.stderr)(member(token, "status")),
            "the refusal of a disabled account",
            AUTH_CACHE_SECONDS + 5,
        )
        assert took <= AUTH_CACHE_SECONDS + 2
        print(f"account disabling reached the running server in {took:.1f} s")
        assert "disabled" in operator("account", "list")

        operator("account", "enable", "carol")
        assert db.transact(jsql.job_row, job_id)["status"] == "ready"
        _until(lambda: member(token, "status").returncode == 0, "the account working again", AUTH_CACHE_SECONDS + 5)
    finally:
        server.stop()


def test_a_disabled_accounts_jobs_are_held_by_the_window_even_when_money_releases_them(db):
    from market.core import rules
    from market.store import accounts as sql_accounts
    from tests import marketdata as md

    owner, _ = md.account(db, "dora")
    job_id = md.job(db, owner, 5)
    db.transact(sql_accounts.set_disabled, "dora", time.time())
    # a credit puts held jobs back on the ready list (release_held_statements) ...
    db.transact(sql_accounts.grant, owner, 100, time.time())
    assert db.transact(jsql.job_row, job_id)["status"] == "ready"
    # ... but the window offers them no lease: their owner can pay nothing while disabled
    rows = db.transact(jsql.ready_jobs, 10)
    available = {r["account_id"]: int(r["available"]) for r in rows}
    plan = rules.plan_window((rules.WindowJob(r["id"], r["account_id"], r["price"]) for r in rows), available, 1, 1.0)
    assert plan.candidates == [] and plan.held == [job_id]


@pytest_twisted.ensureDeferred
async def test_an_unconfirmed_account_cannot_submit_by_any_xmlrpc_method(db):
    from tests.test_submission import SOURCE as JOB_SOURCE
    from tests.test_submission import _auth, _call, _Dispatcher

    new = accounts.create_account(db, "una", "una@example.org", "correct horse", confirm=True)
    auth = _auth("una", accounts.issue_api_token(db, new.id))
    rpc = MarketRPC(_Dispatcher(db))
    calls = [
        ("job", new.id, JOB_SOURCE, "0.05", "x", "main"),
        ("task", new.id, xmlrpc.client.Binary(b"x"), "0.05", "x"),
        ("init", 1, xmlrpc.client.Binary(b"x")),
        ("batch", new.id, JOB_SOURCE, "0.05", "x", "main", 2),
        ("batch_add", 1, [xmlrpc.client.Binary(b"x")]),
    ]
    for method, *args in calls:
        with pytest.raises(xmlrpc.client.Fault) as e:
            await _call(rpc, auth, method, *args)
        assert e.value.faultCode == 3 and "not confirmed" in e.value.faultString, method
    assert await _call(rpc, auth, "whoami")  # reading is allowed
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0
