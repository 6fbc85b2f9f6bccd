"""Ledger invariants under random grants and concurrent transfers, and across a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.core.errors import InsufficientFunds
from market.store import accounts as sql

NOW = 1_800_000_000.0
ACCOUNTS = 4

operation = st.one_of(
    st.tuples(st.just("grant"), st.integers(0, ACCOUNTS - 1), st.integers(1, 500)),
    st.tuples(st.just("transfer"), st.integers(0, ACCOUNTS - 1), st.integers(0, ACCOUNTS - 1), st.integers(1, 400)),
)


def reset(db):
    def work(tx):
        tx.execute("DELETE FROM ledger")
        tx.execute("DELETE FROM accounts")
        return [sql.create_account(tx, f"acct{i}", f"a{i}@example.org", "h", NOW, None, 100) for i in range(ACCOUNTS)]

    return db.transact(work)


def test_concurrent_transfers_keep_the_ledger_balanced_and_never_overdraw(db):
    # @given sits on an inner function: pytest-twisted's test wrapper and hypothesis's don't nest
    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(batches=st.lists(st.lists(operation, min_size=1, max_size=12), min_size=1, max_size=4))
    def check(batches):
        concurrent_transfers_keep_the_ledger_balanced(db, batches)

    check()


def concurrent_transfers_keep_the_ledger_balanced(db, batches):
    ids = reset(db)
    granted = 100 * ACCOUNTS
    lock = threading.Lock()
    errors = []

    def run(ops):
        nonlocal granted
        for op in ops:
            try:
                if op[0] == "grant":
                    db.transact(sql.grant, ids[op[1]], op[2], NOW)
                    with lock:
                        granted += op[2]
                elif op[1] != op[2]:
                    db.transact(sql.transfer, ids[op[1]], ids[op[2]], op[3], NOW)
            except InsufficientFunds:
                pass
            except Exception as e:  # anything else is a bug
                errors.append(e)

    threads = [threading.Thread(target=run, args=(ops,)) for ops in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    audit = db.transact(sql.audit)
    assert audit["negative"] == [] and audit["mismatched"] == []
    assert audit["total"] == granted == audit["granted"]


TRANSFER_STREAM = r"""
import random, sys, time
from market.store import Database
from market.store import accounts as sql
from market.core.errors import InsufficientFunds
db = Database(sys.argv[1])
ids = [int(x) for x in sys.argv[2:]]
rng = random.Random(7)
n = 0
while True:
    a, b = rng.sample(ids, 2)
    try:
        db.transact(sql.transfer, a, b, rng.randint(1, 50), time.time())
    except InsufficientFunds:
        pass
    n += 1
    if n % 20 == 0:
        print(n, flush=True)
"""


def test_kill_9_in_the_middle_of_transfers_leaves_every_balance_consistent(db, db_url):
    ids = [db.transact(sql.create_account, f"k{i}", f"k{i}@example.org", "h", NOW, None, 1000) for i in range(5)]
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    child = subprocess.Popen(
        [sys.executable, "-c", TRANSFER_STREAM, db_url, *map(str, ids)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        done = 0
        while done < 200:
            line = child.stdout.readline()
            assert line, "the transfer stream died on its own"
            done = int(line)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    from market.store import Database

    reopened = Database(db_url)  # a "restart": a new connection, as a new server process would
    try:
        audit = reopened.transact(sql.audit)
        assert audit["balanced"], audit
        assert audit["total"] == 5000
        assert reopened.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger WHERE kind = 'transfer'")) >= 150
    finally:
        reopened.close()
