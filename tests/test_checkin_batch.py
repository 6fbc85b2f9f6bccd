"""Group-committed check-ins on both backends: a batch answers and writes exactly what the same
check-ins would, one transaction each; the set-based statements (``Tx.script``) and the schema
migration they rely on."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from market.core import ledger, matcher
from market.core.errors import MarketError
from market.store import Many, schema
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md

T0 = 1_800_000_000.0
SLICE, GRACE = 30.0, 5.0
_worlds = itertools.count()

checkin = st.fixed_dictionaries(
    {
        "lease": st.integers(0, 4),  # 4 = a state id that was never checked out
        "own": st.booleans() | st.just(True),  # mostly the client the lease belongs to
        "after": st.sampled_from([0.0, 0.001, 1.5, SLICE, SLICE + GRACE - 0.01, SLICE + GRACE + 1]),
        "status": st.sampled_from(["ok", "timeout"]),
        "progress": st.none() | st.floats(-1, 2, allow_nan=False),
    }
)


def world(db, prices, holders):
    """Two owners, two hosts with two clients each, one job per price leased to ``holders[i]``."""
    n = next(_worlds)
    owners = [md.account(db, f"o{n}x{i}", grant=10_000_000)[0] for i in range(2)]
    hosts = [md.account(db, f"h{n}x{i}", grant=0)[0] for i in range(2)]
    clients = [md.client(db, hosts[i // 2], f"c{n}x{i}", 10.0 + i)[0] for i in range(4)]
    jobs = [md.job(db, owners[i % 2], price, f"j{i}", submitted_at=T0 + i) for i, price in enumerate(prices)]

    def lease(tx):
        return [jsql.checkout(tx, job, clients[holders[i]], SLICE, GRACE, T0) for i, job in enumerate(jobs)]

    leases = db.transact(lease)
    return {
        "owners": owners,
        "hosts": hosts,
        "clients": clients,
        "jobs": jobs,
        "leases": [lease["stateid"] for lease in leases],
        "next": [md.next_state(lease["state"]) for lease in leases],  # what an honest slice checks in
        "holders": holders,
    }


def as_checkins(w, plan, unknown):
    out = []
    for p in plan:
        if p["lease"] >= len(w["leases"]):
            dispatch, client, state = unknown, w["clients"][0], md.fake_state(seq=1)
        else:
            dispatch = w["leases"][p["lease"]]
            holder = w["holders"][p["lease"]]
            client = w["clients"][holder if p["own"] else (holder + 1) % 4]
            state = w["next"][p["lease"]]
        out.append(jsql.CheckIn(dispatch, client, state, T0 + p["after"], p["status"], p["progress"]))
    return out


def outcome(db, w, answers):
    """Everything a check-in decides, with ids replaced by positions so two worlds compare."""
    index = {d: i for i, d in enumerate(w["leases"])}

    def plain(a):
        if isinstance(a, MarketError):
            return type(a).__name__
        return {k: (index.get(v, "?") if k == "stateid" else v) for k, v in a.items()}

    def read(tx):
        dispatches = [
            tx.one(
                "SELECT status, paid, accepted_ms, slice_status, checked_in_at, new_state_id FROM leases WHERE id = ?",
                (d,),
            )
            for d in w["leases"]
        ]
        for d in dispatches:
            d["new_state"] = d.pop("new_state_id") is not None
        jobs = [
            tx.one("SELECT status, executed_ms, slices, seq, progress FROM jobs WHERE id = ?", (j,)) for j in w["jobs"]
        ]
        states = [jsql.committed_state(tx, j)["seq"] for j in w["jobs"]]
        money = [(sql.balance(tx, a), sql.account_by_id(tx, a)["reserved"]) for a in w["owners"] + w["hosts"]]
        return dispatches, jobs, states, money

    return [plain(a) for a in answers], db.transact(read)


@pytest.mark.parametrize("examples", [30])
def test_a_batch_of_check_ins_answers_and_writes_what_they_would_one_by_one(db, backend, examples):
    # @given sits on an inner function: pytest-twisted's test wrapper and hypothesis's don't nest
    @settings(
        max_examples=examples if backend == "sqlite" else examples // 3,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        prices=st.lists(st.integers(1, 5000), min_size=1, max_size=4),
        holders=st.lists(st.integers(0, 3), min_size=4, max_size=4, unique=True),
        plan=st.lists(checkin, min_size=1, max_size=10),
    )
    def check(prices, holders, plan):
        batch_world, single_world = world(db, prices, holders), world(db, prices, holders)
        batch = db.transact(jsql.checkin_many, as_checkins(batch_world, plan, 10**9))

        def one(c):
            try:
                return db.transact(jsql.checkin, c.lease_id, c.client_id, c.state, c.at, c.slice_status, c.progress)
            except MarketError as e:
                return e

        singles = [one(c) for c in as_checkins(single_world, plan, 10**9)]
        for a in batch:
            event(type(a).__name__ if isinstance(a, MarketError) else f"{a['status']}, duplicate={a['duplicate']}")
        assert outcome(db, batch_world, batch) == outcome(db, single_world, singles)
        assert db.transact(sql.audit)["balanced"]

    check()


def test_a_batch_pays_each_accepted_slice_once_and_closes_its_lease(db):
    w = world(db, [1000, 2000], [0, 1, 2, 3])
    first, second = w["leases"]
    one, two = w["next"]
    checkins = [
        jsql.CheckIn(first, w["clients"][0], one, T0 + 2.0),
        jsql.CheckIn(first, w["clients"][0], one, T0 + 2.5),  # a retry
        jsql.CheckIn(second, w["clients"][0], two, T0 + 2.0),  # not its lease
        jsql.CheckIn(second, w["clients"][1], two, T0 + 99),
    ]  # too late
    answers = db.transact(jsql.checkin_many, checkins)
    assert answers[0] == {"stateid": first, "status": "accepted", "paid": 2000, "duplicate": False, "accepted_ms": 2000}
    assert answers[1] == dict(answers[0], duplicate=True)
    assert type(answers[2]).__name__ == "Forbidden"
    assert answers[3]["status"] == "rejected" and answers[3]["paid"] == 0
    assert db.transact(sql.balance, w["hosts"][0]) == 2000
    assert db.transact(sql.audit)["balanced"]
    assert db.transact(jsql.committed_state, w["jobs"][0])["seq"] == 1
    assert db.transact(jsql.committed_state, w["jobs"][1])["seq"] == 0
    assert {db.transact(jsql.job_row, j)["status"] for j in w["jobs"]} == {"ready"}


def test_states_that_do_not_follow_from_their_lease_are_refused_in_a_batch_and_a_right_one_after_them_counts(db):
    from market.core.errors import StateRefused
    from market.tasklet import envelope

    w = world(db, [1000, 2000], [0, 1, 2, 3])
    first, second = w["leases"]
    one, two = w["next"]
    leased = bytes(db.transact(jsql.committed_state, w["jobs"][0])["data"])
    header = envelope.read_header(one)
    unchanged = envelope.make_envelope(header, leased[10 + int.from_bytes(leased[6:10], "big") : -32])
    client = w["clients"][0]
    before = db.transact(sql.balance, w["hosts"][0])
    answers = db.transact(
        jsql.checkin_many,
        [
            jsql.CheckIn(first, client, two, T0 + 1.0),  # the other job's state
            jsql.CheckIn(first, client, leased, T0 + 1.1),  # the leased state itself
            jsql.CheckIn(first, client, unchanged, T0 + 1.2),  # bound header, unchanged payload
            jsql.CheckIn(first, client, one, T0 + 2.0),  # the right one
        ],
    )
    assert [type(a).__name__ for a in answers[:3]] == ["StateRefused"] * 3
    assert all(isinstance(a, StateRefused) for a in answers[:3])
    assert "names job" in str(answers[0]) and "unchanged" in str(answers[2])
    assert answers[3]["status"] == "accepted" and answers[3]["paid"] == 2000 and not answers[3]["duplicate"]
    assert db.transact(sql.balance, w["hosts"][0]) == before + 2000
    # refused alone, the lease stays open and nothing moves
    refused = db.transact(jsql.checkin_many, [jsql.CheckIn(second, w["clients"][1], one, T0 + 1.0)])
    assert isinstance(refused[0], StateRefused)
    assert db.transact(jsql.lease_row, second)["status"] == "out"
    assert db.transact(jsql.committed_state, w["jobs"][1])["seq"] == 0
    assert db.transact(sql.audit)["balanced"]


def test_a_window_checks_out_in_one_transaction_and_reserves_the_owners_money(db):
    w = world(db, [], [0, 1, 2, 3])
    owner = w["owners"][0]
    jobs = [md.job(db, owner, price, f"w{price}", submitted_at=T0) for price in (300, 100, 200)]
    pooled = [matcher.PooledClient(id=c, speed=10.0 + i, requested_at=T0) for i, c in enumerate(w["clients"][:3])]
    leases = db.transact(
        jsql.assign_window,
        pooled,
        T0 + 1,
        GRACE,
        {c.id: SLICE for c in pooled},
        matcher.match,
        lambda r: matcher.ReadyJob(id=r["id"], price=r["price"], submitted_at=r["submitted_at"]),
    )
    assert {c: lease["job_id"] for c, lease in leases.items()} == {
        w["clients"][2]: jobs[0],
        w["clients"][1]: jobs[2],
        w["clients"][0]: jobs[1],
    }
    assert db.transact(sql.account_by_id, owner)["reserved"] == (300 + 100 + 200) * SLICE
    assert db.transact(sql.audit)["balanced"]
    assert {db.transact(jsql.job_row, j)["status"] for j in jobs} == {"running"}


def test_a_script_returns_each_statements_rows_and_inserts_many_rows(db):
    owner = md.account(db, "scripted")[0]

    def work(tx):
        return tx.script(
            [
                ("SELECT name FROM accounts WHERE id = ?", [owner]),
                Many(
                    "INSERT INTO ledger (at, debit_account, credit_account, amount, kind, lease_id, memo)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(T0, None, owner, 0, "grant", None, f"m{i}") for i in range(3)],
                ),
                Many(
                    "INSERT INTO ledger (at, debit_account, credit_account, amount, kind, lease_id, memo)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [],
                ),
                ("UPDATE accounts SET email = ? WHERE id = ?", ["new@example.org", owner]),
                ("SELECT COUNT(*) AS n FROM ledger WHERE memo LIKE ? AND credit_account = ?", ["m%", owner]),
            ]
        )

    results = db.transact(work)
    assert results == [[{"name": "scripted"}], None, None, None, [{"n": 3}]]


def test_a_failing_statement_in_a_script_rolls_the_whole_transaction_back(db):
    owner = md.account(db, "rolled")[0]

    def work(tx):
        tx.script(
            [
                ("UPDATE accounts SET email = ? WHERE id = ?", ["changed@example.org", owner]),
                ("INSERT INTO no_such_table (x) VALUES (?)", [1]),
            ]
        )

    with pytest.raises(Exception):  # noqa: B017 - whichever error the driver raises for a missing table
        db.transact(work)
    assert db.transact(sql.account_by_id, owner)["email"] == "rolled@example.org"


def test_upgrading_from_v1_keeps_open_leases_reserved_finds_committed_states_and_renames_leases(db_url):
    from market.store import Database

    db = Database(db_url)
    try:
        schema.upgrade(db, schema.MIGRATIONS[:1])
        owner = db.transact(sql.create_account, "old", "old@example.org", "x", T0, None, 0)

        def v1_market(tx):
            # a v1 grant, written as v1 wrote it
            tx.execute("UPDATE accounts SET balance = 100000 WHERE id = ?", (owner,))
            tx.insert(
                "INSERT INTO ledger (at, debit_account, credit_account, amount, kind, memo)"
                " VALUES (?, NULL, ?, 100000, 'grant', 'start')",
                (T0, owner),
            )
            host = sql.create_account(tx, "oldhost", "h@example.org", "x", T0, None, 0)
            client = tx.insert(
                "INSERT INTO clients (account_id, name, token_hash, created_at) VALUES (?, ?, ?, ?)",
                (host, "box", "0" * 64, T0),
            )
            job = tx.insert(
                "INSERT INTO jobs (account_id, name, price, source, source_sha256, entry, status,"
                " submitted_at) VALUES (?, 'j', 7, '', '', 'main', 'running', ?)",
                (owner, T0),
            )
            for seq in range(3):
                tx.insert(
                    "INSERT INTO states (job_id, seq, data, status, created_at) VALUES (?, ?, ?, ?, ?)",
                    (job, seq, b"s", "committed" if seq == 2 else "superseded", T0),
                )
            state = tx.scalar("SELECT id FROM states WHERE job_id = ? AND seq = 2", (job,))
            lease = tx.insert(
                "INSERT INTO dispatches (job_id, state_id, client_id, checked_out_at, granted_seconds,"
                " deadline, status, reserved) VALUES (?, ?, ?, ?, 10, ?, 'out', 70)",
                (job, state, client, T0, T0 + 15),
            )
            tx.execute("UPDATE states SET dispatch_id = ? WHERE job_id = ? AND seq = 2", (lease, job))
            tx.insert(
                "INSERT INTO ledger (at, debit_account, credit_account, amount, kind, dispatch_id, memo)"
                " VALUES (?, NULL, ?, 1, 'grant', ?, 'old')",
                (T0, host, lease),
            )
            tx.execute("UPDATE accounts SET balance = 1 WHERE id = ?", (host,))
            return job, lease

        job, lease = db.transact(v1_market)
        assert schema.upgrade(db) == (1, schema.LATEST)
        # v3: the paper's dispatches are leases, in the table and in the columns that point at them
        row = db.transact(jsql.lease_row, lease)
        assert (row["job_id"], row["status"], row["reserved"]) == (job, "out", 70)
        assert db.transact(lambda tx: tx.scalar("SELECT lease_id FROM states WHERE job_id = ? AND seq = 2", (job,)))
        assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger WHERE lease_id = ?", (lease,))) == 1
        assert db.transact(sql.account_by_id, owner)["reserved"] == 70
        assert db.transact(jsql.job_row, job)["seq"] == 2
        assert db.transact(jsql.committed_state, job)["seq"] == 2
        assert db.transact(sql.audit)["balanced"]
    finally:
        db.close()


def test_ledger_apply_refuses_to_overdraw_and_moves_nothing():
    balances = {1: 50, 2: 0}
    with pytest.raises(ledger.InsufficientFunds):
        ledger.apply(balances, ledger.Entry(1, 2, 51, "payment"))
    assert balances == {1: 50, 2: 0}
    ledger.apply(balances, ledger.Entry(1, 2, 50, "payment"))
    assert balances == {1: 0, 2: 50}
