"""Many front ends, one matcher: the role's rules (pure), its rows (SQLite and MariaDB), the one
window over requests put by several front ends, and ``market frontends``."""

from __future__ import annotations

import pytest

from market.core import frontends as rules
from market.core import matcher
from market.core.errors import Conflict
from market.dispatch.frontends import new_frontend
from market.dispatch.service import _ready_job
from market.store import frontends as sql
from tests import marketdata as md

NOW = 1_800_000_000.0


def fe(name: str, host: str = "h1", pid: int = 100) -> rules.FrontEnd:
    return rules.FrontEnd(f"{host}:{pid}:{name}", host, pid, f"tcp:{pid}")


# -- the rules --------------------------------------------------------------------------------------


def test_the_role_is_taken_only_when_free_expired_or_already_ones_own():
    assert rules.may_take_role(None, 0.0, "a", NOW)
    assert rules.may_take_role("a", NOW + 3, "a", NOW)  # renewal
    assert not rules.may_take_role("b", NOW + 0.001, "a", NOW)  # b's lease still runs
    assert rules.may_take_role("b", NOW, "a", NOW)  # expired exactly now
    assert rules.may_take_role("b", NOW - 10, "a", NOW)


def test_liveness_and_stale_local_processes():
    assert rules.is_live(NOW - 1, None, NOW)
    assert not rules.is_live(NOW - rules.LIVE_SECONDS, None, NOW)
    assert not rules.is_live(NOW, NOW, NOW)  # stopped
    assert rules.stale_local("h1", 5, "h1", lambda pid: False)
    assert not rules.stale_local("h1", 5, "h1", lambda pid: True)
    assert not rules.stale_local("h2", 5, "h1", lambda pid: False)  # another host: cannot tell, trust the beat


def test_the_sqlite_refusal_says_who_and_what_to_do():
    words = rules.sqlite_refusal(
        {"id": "h:1:x", "pid": 1, "host": "h", "rpc": "tcp:7080", "heartbeat_at": NOW - 2}, NOW
    )
    assert "h:1:x" in words and "2.0 s ago" in words and "MariaDB" in words and "Stop the other one" in words


def test_new_front_end_ids_are_unique_and_bounded():
    a, b = new_frontend("tcp:1", host="x" * 500, pid=7), new_frontend("tcp:1", host="x" * 500, pid=7)
    assert a.id != b.id and len(a.host) == 120 and len(a.id) <= 160


# -- the rows ---------------------------------------------------------------------------------------


def test_a_dead_holder_loses_the_role_after_its_expiry_and_a_clean_stop_frees_it_at_once(db):
    a, b = fe("a", pid=1), fe("b", pid=2)
    first = db.transact(sql.register, a, 4.0, False, lambda pid: True, NOW)
    assert first.holds_role and first.live == 1
    second = db.transact(sql.register, b, 4.0, False, lambda pid: True, NOW + 0.5)
    assert not second.holds_role and second.holder == a.id and second.live == 2
    # a renews; b cannot take it while a beats
    for t in (1.0, 2.0, 3.0):
        assert db.transact(sql.beat, a.id, 4.0, NOW + t).holds_role
        assert not db.transact(sql.beat, b.id, 4.0, NOW + t + 0.1).holds_role
    # a stops beating (kill -9): the role is b's once a's last renewal (at +3 s, for 4 s) ran out
    assert not db.transact(sql.beat, b.id, 4.0, NOW + 6.9).holds_role
    taken = db.transact(sql.beat, b.id, 4.0, NOW + 7.0)
    assert taken.holds_role and taken.live == 1  # a is dead by its heartbeat too
    # a comes back from a freeze: it does not take the role back while b renews
    assert not db.transact(sql.beat, a.id, 4.0, NOW + 7.5).holds_role
    shown = db.transact(sql.listing, NOW + 7.5)
    assert shown["holder"] == b.id and [f["matcher"] for f in shown["frontends"] if f["id"] == b.id] == [True]
    # b stops cleanly: the role is free at once, a takes it at its next beat
    db.transact(sql.stop, b.id, NOW + 8.0)
    assert db.transact(sql.beat, a.id, 4.0, NOW + 8.1).holds_role
    shown = db.transact(sql.listing, NOW + 8.1)
    assert {f["id"]: f["stopped_at"] is not None for f in shown["frontends"]} == {a.id: False, b.id: True}


def test_on_sqlite_a_second_live_front_end_is_refused_but_not_after_its_process_is_gone(tmp_path):
    from market.store import Database, upgrade

    db = Database(f"sqlite:{tmp_path}/one.sqlite")
    upgrade(db)
    a, b = fe("a", pid=1), fe("b", pid=2)
    assert db.transact(sql.register, a, 4.0, True, lambda pid: True, NOW).holds_role
    with pytest.raises(Conflict) as refused:
        db.transact(sql.register, b, 4.0, True, lambda pid: True, NOW + 1)
    assert a.id in str(refused.value) and "MariaDB" in str(refused.value)
    # nothing of b was written
    assert [f["id"] for f in db.transact(sql.listing, NOW + 1)["frontends"]] == [a.id]
    # a was killed (its pid is gone on this host): b starts at once and holds the role
    assert db.transact(sql.register, b, 4.0, True, lambda pid: pid != 1, NOW + 1).holds_role
    # another host's fresh heartbeat is trusted (its pid cannot be checked from here)
    c = fe("c", host="h2", pid=1)
    with pytest.raises(Conflict):
        db.transact(sql.register, c, 4.0, True, lambda pid: False, NOW + 2)
    # after its heartbeat is older than LIVE_SECONDS, anyone may start
    assert db.transact(sql.register, c, 4.0, True, lambda pid: True, NOW + 1 + rules.LIVE_SECONDS + 0.1).holds_role


def _market(db, speeds, prices):
    owner, _ = md.account(db, "owner", grant=10**7)
    host, _ = md.account(db, "host", grant=0)
    jobs = {p: md.job(db, owner, p, f"p{p}") for p in prices}
    clients = {s: md.client(db, host, f"c{s}", s)[0] for s in speeds}
    return jobs, clients


def test_one_window_over_requests_of_two_front_ends_gives_dearer_jobs_to_faster_workers(db):
    a, b = fe("a", pid=1), fe("b", pid=2)
    db.transact(sql.register, a, 4.0, False, lambda pid: True)
    db.transact(sql.register, b, 4.0, False, lambda pid: True)
    jobs, clients = _market(db, (10.0, 40.0, 20.0, 30.0), (100, 400, 300, 200))
    # the slow and the fastest ask b (through the database); the others ask a (the holder) directly
    rows = {s: db.transact(sql.put_request, b.id, clients[s], s, 5.0) for s in (10.0, 40.0)}
    pending = db.transact(sql.new_requests, rules.REMOTE_WAIT_SECONDS)
    assert sorted(r["id"] for r in pending) == sorted(rows.values())
    pooled = [matcher.PooledClient(clients[s], s, 0.0) for s in (10.0, 40.0, 20.0, 30.0)]
    remote = {clients[s]: row for s, row in rows.items()}
    issued = {clients[s]: (b.id if s in rows else a.id) for s in clients}
    granted = {c: 5.0 for c in clients.values()}
    leases, claimed = db.transact(
        sql.assign_shared_window, pooled, remote, issued, NOW, 5.0, granted, matcher.match, _ready_job
    )
    assert claimed == set(rows.values())
    assert {s: leases[clients[s]]["job_id"] for s in clients} == {
        40.0: jobs[400],
        30.0: jobs[300],
        20.0: jobs[200],
        10.0: jobs[100],
    }
    frontend_of = db.transact(
        lambda tx: {r["client_id"]: r["frontend"] for r in tx.all("SELECT client_id, frontend FROM leases")}
    )
    assert frontend_of == issued
    # b collects its two answers: the same leases, read back; the rows are gone afterwards
    got = db.transact(sql.collect, b.id, list(rows.values()), [])
    for s, row in rows.items():
        mine = leases[clients[s]]
        # every key the window's lease has, read back equal (a chunked state's keys included)
        assert set(got[row]) == set(mine)
        assert {k: got[row][k] for k in mine if k != "timeout"} == {k: mine[k] for k in mine if k != "timeout"}
        assert got[row]["timeout"] == pytest.approx(mine["timeout"])
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM work_requests")) == 0


def test_a_withdrawn_request_is_left_out_of_the_window_and_its_worker_gets_no_lease(db):
    a, b = fe("a", pid=1), fe("b", pid=2)
    db.transact(sql.register, a, 4.0, False, lambda pid: True)
    db.transact(sql.register, b, 4.0, False, lambda pid: True)
    jobs, clients = _market(db, (10.0, 40.0), (100, 400))
    row = db.transact(sql.put_request, b.id, clients[40.0], 40.0, 5.0)
    # b gives up on it (its worker hung up) before the window claims it
    assert db.transact(sql.collect, b.id, [row], [row]) == {row: None}
    pooled = [matcher.PooledClient(clients[s], s, 0.0) for s in (10.0, 40.0)]
    leases, claimed = db.transact(
        sql.assign_shared_window,
        pooled,
        {clients[40.0]: row},
        {},
        NOW,
        5.0,
        {c: 5.0 for c in clients.values()},
        matcher.match,
        _ready_job,
    )
    assert claimed == set() and set(leases) == {clients[10.0]}
    assert leases[clients[10.0]]["job_id"] == jobs[400]  # the dearest job to the only worker left


def test_another_front_ends_rows_are_not_collected(db):
    a, b = fe("a", pid=1), fe("b", pid=2)
    db.transact(sql.register, a, 4.0, False, lambda pid: True)
    _, clients = _market(db, (10.0,), (100,))
    row = db.transact(sql.put_request, b.id, clients[10.0], 10.0, 5.0)
    db.transact(sql.withdraw, [row])
    assert db.transact(sql.collect, a.id, [row], []) == {}  # not a's to read or delete
    assert db.transact(sql.collect, b.id, [row], []) == {row: None}


def test_market_frontends_shows_the_holder_and_hides_dead_ones_unless_asked(db, db_url, capsys):
    from market import cli

    a, b = fe("a", pid=1), fe("b", pid=2)
    db.transact(sql.register, a, 4.0, False, lambda pid: True)
    db.transact(sql.register, b, 4.0, False, lambda pid: True)
    assert cli.main(["--db", db_url, "frontends"]) == 0
    out = capsys.readouterr().out
    assert f"matcher role: {a.id}" in out and f"* {a.id}" in out and f"  {b.id}" in out
    db.transact(sql.stop, b.id)
    assert cli.main(["--db", db_url, "frontends"]) == 0
    out = capsys.readouterr().out
    assert b.id not in out
    assert cli.main(["--db", db_url, "frontends", "--all"]) == 0
    assert "stopped" in capsys.readouterr().out
    db.transact(sql.stop, a.id)
    assert cli.main(["--db", db_url, "frontends"]) == 0
    assert "nobody holds it" in capsys.readouterr().out


def test_the_holder_tidies_left_over_requests_and_long_gone_front_ends(db):
    a, b = fe("a", pid=1), fe("b", pid=2)
    db.transact(sql.register, b, 4.0, False, lambda pid: True, NOW - sql.KEEP_FRONTENDS - 10)
    db.transact(sql.register, a, 4.0, False, lambda pid: True, NOW)
    _, clients = _market(db, (10.0,), (100,))
    old = db.transact(sql.put_request, b.id, clients[10.0], 10.0, 5.0)
    db.transact(lambda tx: tx.execute("UPDATE work_requests SET requested_at = ? WHERE id = ?", (NOW - 61, old)))
    young = db.transact(sql.put_request, a.id, clients[10.0], 10.0, 5.0)
    db.transact(lambda tx: tx.execute("UPDATE work_requests SET requested_at = ? WHERE id = ?", (NOW - 1, young)))
    db.transact(sql.beat, a.id, 4.0, NOW)  # no tidy: everything stays
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM work_requests")) == 2
    db.transact(sql.beat, a.id, 4.0, NOW, 30.0)  # 30 s asked: at least KEEP_REQUESTS (60 s) kept
    assert db.transact(lambda tx: [r["id"] for r in tx.all("SELECT id FROM work_requests")]) == [young]
    assert [f["id"] for f in db.transact(sql.listing, NOW)["frontends"]] == [a.id]


def test_requests_written_in_one_batch_get_their_own_rows_and_a_repeat_gets_the_newest(db):
    a = fe("a", pid=1)
    db.transact(sql.register, a, 4.0, False, lambda pid: True)
    _, clients = _market(db, (10.0, 20.0), (100,))
    c1, c2 = clients[10.0], clients[20.0]
    first = db.transact(sql.put_requests, a.id, [(c1, 10.0, 5.0)])
    rows = db.transact(sql.put_requests, a.id, [(c2, 20.0, 5.0), (c1, 10.0, 6.0)])
    assert rows[1] > first[0] and rows[0] != rows[1]
    stored = db.transact(
        lambda tx: {r["id"]: (r["client_id"], r["slice"]) for r in tx.all("SELECT * FROM work_requests")}
    )
    assert stored[rows[0]] == (c2, 5.0)
    assert stored[rows[1]] == (c1, 6.0)
    assert db.transact(sql.put_requests, a.id, []) == []
