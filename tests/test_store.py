"""The store on both backends: schema, accounts, clients, ledger rules and bad input."""

from __future__ import annotations

import pytest

from market.core import ledger
from market.core.errors import Conflict, InsufficientFunds, MarketError, NotFound
from market.store import accounts as sql
from market.store import clients as csql
from market.store import schema
from market.store.dburl import parse

NOW = 1_800_000_000.0


def make_account(db, name, grant=0):
    return db.transact(sql.create_account, name, f"{name}@example.org", "hash", NOW, None, grant)


def test_fresh_database_gets_the_latest_schema(db):
    assert db.transact(schema.current_version) == schema.LATEST


def test_upgrade_is_idempotent(db):
    assert schema.upgrade(db) == (schema.LATEST, schema.LATEST)


def test_upgrade_applies_a_later_migration_and_keeps_data(db):
    alice = make_account(db, "alice", 500)
    later = list(schema.MIGRATIONS) + [(schema.LATEST + 1, ["ALTER TABLE accounts ADD COLUMN motto VARCHAR(64) NULL"])]
    assert schema.upgrade(db, later) == (schema.LATEST, schema.LATEST + 1)
    row = db.transact(sql.account_by_id, alice)
    assert row["name"] == "alice" and row["balance"] == 500 and "motto" in row


def test_a_newer_database_is_refused(db):
    db.transact(lambda tx: tx.execute("INSERT INTO schema_version (version) VALUES (?)", (schema.LATEST + 5,)))
    with pytest.raises(MarketError, match="newer"):
        schema.require_current(db)


def test_account_gets_its_starting_grant_on_the_ledger(db):
    alice = make_account(db, "alice", 1000)
    assert db.transact(sql.balance, alice) == 1000
    audit = db.transact(sql.audit)
    assert audit["balanced"] and audit["granted"] == 1000


def test_duplicate_account_name_is_refused_and_changes_nothing(db):
    make_account(db, "alice", 100)
    with pytest.raises(Conflict, match="already exists"):
        make_account(db, "alice", 100)
    assert len(db.transact(sql.list_accounts)) == 1
    assert db.transact(sql.audit)["granted"] == 100


@pytest.mark.parametrize("name", ["", "A", "UPPER", "-dash", "x" * 40, "sp ace", "semi;colon", "ünï"])
def test_bad_account_names_are_refused(db, name):
    with pytest.raises(MarketError, match="not allowed"):
        make_account(db, name)
    assert db.transact(sql.list_accounts) == []


def test_bad_email_is_refused(db):
    with pytest.raises(MarketError, match="e-mail"):
        db.transact(sql.create_account, "bob", "not-an-email", "h", NOW, None, 0)


def test_transfer_moves_money_and_keeps_the_total(db):
    a, b = make_account(db, "alice", 1000), make_account(db, "bob", 0)
    db.transact(sql.transfer, a, b, 250, NOW)
    assert db.transact(sql.balance, a) == 750 and db.transact(sql.balance, b) == 250
    assert db.transact(sql.audit)["balanced"]


def test_transfer_that_would_overdraw_is_refused_and_changes_nothing(db):
    a, b = make_account(db, "alice", 100), make_account(db, "bob", 0)
    with pytest.raises(InsufficientFunds):
        db.transact(sql.transfer, a, b, 101, NOW)
    assert db.transact(sql.balance, a) == 100 and db.transact(sql.balance, b) == 0
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM ledger")) == 1


@pytest.mark.parametrize("amount", [0, -5, 1.5, "10", True, 10**16])
def test_malformed_amounts_are_refused(db, amount):
    a, b = make_account(db, "alice", 100), make_account(db, "bob", 0)
    with pytest.raises(MarketError):
        db.transact(sql.transfer, a, b, amount, NOW)
    assert db.transact(sql.audit)["total"] == 100


def test_transfer_to_unknown_account_is_refused(db):
    a = make_account(db, "alice", 100)
    with pytest.raises(NotFound):
        db.transact(sql.transfer, a, 999, 10, NOW)
    assert db.transact(sql.balance, a) == 100


def test_a_failed_unit_of_work_rolls_back_everything(db):
    a = make_account(db, "alice", 100)

    def half_done(tx):
        sql.grant(tx, a, 50, NOW)
        raise RuntimeError("crash in the middle")

    with pytest.raises(RuntimeError):
        db.transact(half_done)
    assert db.transact(sql.balance, a) == 100
    assert db.transact(sql.audit)["balanced"]


def test_client_registration_and_speeds(db):
    a = make_account(db, "alice")
    cid = db.transact(csql.register_client, a, "laptop", "0" * 64, NOW)
    with pytest.raises(Conflict):
        db.transact(csql.register_client, a, "laptop", "1" * 64, NOW)
    db.transact(csql.record_speed, cid, 1000, 2.0, NOW)
    db.transact(csql.record_speed, cid, 3000, 2.0, NOW + 10)
    assert db.transact(csql.last_speed, cid)["speed"] == 1500.0
    assert [c["name"] for c in db.transact(csql.list_clients, a)] == ["laptop"]


def test_unknown_client_is_a_clear_error(db):
    with pytest.raises(NotFound, match="no client 42"):
        db.transact(csql.client_by_id, 42)


def test_confirmation_token_works_once(db):
    db.transact(sql.create_account, "carol", "c@example.org", "h", NOW, "a" * 64, 0)
    assert db.transact(sql.account_by_name, "carol")["confirmed"] == 0
    db.transact(sql.confirm_account, "a" * 64, NOW)
    assert db.transact(sql.account_by_name, "carol")["confirmed"] == 1
    with pytest.raises(NotFound, match="not valid"):
        db.transact(sql.confirm_account, "a" * 64, NOW)


def test_an_unconfirmed_account_gets_its_starting_grant_when_confirmed_and_only_once(db):
    db.transact(sql.create_account, "dora", "d@example.org", "h", NOW, "b" * 64, 2500)
    dora = db.transact(sql.account_by_name, "dora")
    assert dora["balance"] == 0 and dora["pending_grant"] == 2500
    assert db.transact(sql.audit)["granted"] == 0
    db.transact(sql.confirm_account, "b" * 64, NOW)
    db.transact(sql.confirm_account_by_name, "dora", NOW)  # an administrator confirming again pays nothing
    dora = db.transact(sql.account_by_name, "dora")
    assert dora["balance"] == 2500 and dora["pending_grant"] == 0
    audit = db.transact(sql.audit)
    assert audit["balanced"] and audit["granted"] == 2500


def test_an_administrator_confirming_without_the_token_pays_the_grant_once(db):
    db.transact(sql.create_account, "ed", "e@example.org", "h", NOW, "c" * 64, 700)
    for _ in range(2):
        db.transact(sql.confirm_account_by_name, "ed", NOW)
    assert db.transact(sql.balance, db.transact(sql.account_by_name, "ed")["id"]) == 700
    assert db.transact(sql.audit)["granted"] == 700


def test_an_account_created_confirmed_is_granted_at_once(db):
    db.transact(sql.create_account, "fay", "f@example.org", "h", NOW, None, 300)
    fay = db.transact(sql.account_by_name, "fay")
    assert fay["confirmed"] == 1 and fay["balance"] == 300 and fay["pending_grant"] == 0


@pytest.mark.parametrize("address", ["a\x1bb@example.org", "a\x9bb@example.org", "a\u202eb@example.org"])
def test_an_email_address_with_control_characters_is_refused(db, address):
    with pytest.raises(MarketError, match="does not look like an e-mail address"):
        db.transact(sql.create_account, "gil", address.encode().decode("unicode_escape"), "h", NOW, None, 0)


def test_web_sessions_expire(db):
    a = make_account(db, "alice")
    db.transact(sql.create_session, "s" * 64, a, "c" * 64, NOW, NOW + 60)
    assert db.transact(sql.session, "s" * 64, NOW + 30)["name"] == "alice"
    assert db.transact(sql.session, "s" * 64, NOW + 61) is None


@pytest.mark.parametrize("url", ["", "postgres://x/y", "mysql://host/", "mysql://h:notaport/db", "sqlite:"])
def test_bad_database_urls_are_refused_in_plain_words(url):
    with pytest.raises(MarketError, match="URL|port|path"):
        parse(url)


def test_unreachable_mariadb_is_a_clear_error():
    from market.core.errors import DatabaseUnavailable
    from market.store import Database

    db = Database("mysql://root@127.0.0.1:1/nothing")
    with pytest.raises(DatabaseUnavailable, match="cannot reach"):
        db.transact(schema.current_version)


def test_ledger_rules_are_pure():
    with pytest.raises(InsufficientFunds):
        ledger.transfer(1, 2, 10, payer_balance=9)
    with pytest.raises(MarketError):
        ledger.transfer(1, 1, 10, payer_balance=100)
    assert ledger.transfer(1, 2, 10, payer_balance=10).amount == 10


def test_accounts_signed_up_before_v4_were_granted_then_and_get_nothing_more_at_confirmation(db_url):
    from market.store import Database

    db = Database(db_url)
    try:
        schema.upgrade(db, schema.MIGRATIONS[:3])
        # v3 granted at creation, confirmed or not
        db.transact(sql.create_account, "old", "o@example.org", "h", NOW, None, 0)
        db.transact(
            lambda tx: tx.execute(
                "UPDATE accounts SET confirmed = 0, confirm_token_hash = ? WHERE name = 'old'", ("d" * 64,)
            )
        )
        old = db.transact(sql.account_by_name, "old")["id"]
        db.transact(sql.grant, old, 900, NOW, "starting grant")
        assert schema.upgrade(db) == (3, schema.LATEST)
        db.transact(sql.confirm_account, "d" * 64, NOW)
        assert db.transact(sql.balance, old) == 900
        assert db.transact(sql.audit)["balanced"]
    finally:
        db.close()


def test_v5_rewrites_stored_states_to_format_2_chained_by_parent_and_gives_open_leases_their_price(db_url):
    from market.core.rules import StateStatus
    from market.store import Database
    from market.store import jobs as jsql
    from market.tasklet import envelope
    from tests import marketdata as md

    db = Database(db_url)
    try:
        schema.upgrade(db, schema.MIGRATIONS[:4])
        owner = make_account(db, "owner", grant=10_000)
        host = make_account(db, "host")
        client = db.transact(csql.register_client, host, "box", "0" * 64, NOW)

        def v4_market(tx):
            job = tx.insert(
                "INSERT INTO jobs (account_id, name, price, source, source_sha256, entry, status, submitted_at, seq)"
                " VALUES (?, 'j', 250, ?, ?, 'main', 'running', ?, 2)",
                (owner, md.SOURCE, envelope.source_hash(md.SOURCE), NOW),
            )
            for seq in range(3):
                tx.insert(
                    "INSERT INTO states (job_id, seq, data, status, created_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        job,
                        seq,
                        md.v1_state(seq=seq, payload=b"p%d" % seq, job_id=job if seq else None),
                        StateStatus.COMMITTED if seq == 2 else StateStatus.SUPERSEDED,
                        NOW,
                    ),
                )
            state = tx.scalar("SELECT id FROM states WHERE job_id = ? AND seq = 2", (job,))
            lease = tx.insert(
                "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
                " status, reserved) VALUES (?, ?, ?, ?, 10, ?, 'out', 2500)",
                (job, state, client, NOW, NOW + 15),
            )
            tx.execute("UPDATE accounts SET reserved = 2500 WHERE id = ?", (owner,))
            return job, lease

        job, lease = db.transact(v4_market)
        assert schema.upgrade(db) == (4, schema.LATEST)
        rows = db.transact(
            lambda tx: tx.all(
                "SELECT seq, data, digest, payload_sha256 FROM states WHERE job_id = ? ORDER BY seq", (job,)
            )
        )
        parent = ""
        for row in rows:
            data = bytes(row["data"])
            header, payload_sha256 = envelope.inspect(data)  # format 2 now
            assert (header.seq, header.job_id, header.parent, header.interpreter) == (
                row["seq"],
                job,
                parent,
                "unknown",
            )
            assert row["digest"] == envelope.digest(data) and row["payload_sha256"] == payload_sha256
            parent = row["digest"]
        assert db.transact(jsql.lease_row, lease)["price"] == 250
        # the open lease is checked in by an upgraded worker, bound to the rewritten state, and paid
        # at its price: 10 s at 2.50
        answer = db.transact(jsql.checkin, lease, client, md.next_state(bytes(rows[-1]["data"])), NOW + 10)
        assert (answer["status"], answer["paid"]) == ("accepted", 2500)
        assert db.transact(sql.audit)["balanced"]
    finally:
        db.close()
