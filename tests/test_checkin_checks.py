"""A slice's replay check is opened in its check-in's own transaction (``jobs.checkin_many`` with
the market's verification settings), on SQLite and MariaDB: whether it is due is decided there,
from the draw the check-in brings and the worker's verified slices read with the locked lease,
and however many checks a batch opens, the batch costs no extra round trip."""

from __future__ import annotations

from market.core import verification as policy
from market.store import checks as sql_checks
from market.store import jobs as jsql
from market.tasklet import envelope
from tests import marketdata as md

T0 = 1_800_000_000.0
SLICE, GRACE = 30.0, 5.0
PRICE = 100  # cents per second
VERIFY = policy.Settings(fraction=0.05, watch_slices=10, margin=16.0)
SPEED = 2_000_000.0


def leases(db, n: int, verified_slices: int = 0, speed: float | None = 5.0):
    """``n`` jobs of one member, each leased to its own worker of one owner -> (clients, leases)."""
    member = md.account(db, "member", grant=10_000_000)[0]
    host = md.account(db, "host", grant=0)[0]
    clients, out = [], []
    for i in range(n):
        client = md.client(db, host, f"box-{i}", speed)[0]
        db.transact(
            lambda tx, c=client: tx.execute("UPDATE clients SET verified_slices = ? WHERE id = ?", (verified_slices, c))
        )
        job = md.job(db, member, PRICE, f"job-{i}", submitted_at=T0)
        clients.append(client)
        out.append(db.transact(jsql.checkout, job, client, SLICE, GRACE, T0))
    return clients, out


def checkin(lease, client, draw, at=T0 + 2, speed=SPEED, state=None):
    state = md.next_state(lease["state"]) if state is None else state
    facts, interpreter, mark = jsql.state_facts_and_origin(state)
    return jsql.CheckIn(
        lease["stateid"], client, state, at, facts=facts, check=jsql.SliceCheck(draw, interpreter, mark, speed)
    )


def checks(db):
    return db.transact(lambda tx: tx.all("SELECT * FROM checks ORDER BY id"))


def test_every_slice_of_a_worker_under_watch_gets_its_check_in_the_check_ins_transaction(db):
    (client,), (lease,) = leases(db, 1)
    c = checkin(lease, client, draw=0.99)
    (answer,) = db.transact(jsql.checkin_many, [c], VERIFY)
    assert answer["status"] == "accepted"
    (check,) = checks(db)
    row = db.transact(jsql.lease_row, lease["stateid"])
    assert check["kind"] == "slice" and check["reason"] == "watch" and check["status"] == "waiting"
    assert (check["lease_id"], check["worker_id"], check["job_id"]) == (lease["stateid"], client, row["job_id"])
    assert check["parent_state_id"] == row["state_id"]
    assert db.transact(sql_checks.checked_state, check) == row["new_state_id"] is not None
    assert check["target_sha256"] == envelope.payload_sha256(c.state)
    assert check["interpreter"] == envelope.INTERPRETER and check["created_at"] == c.at
    assert check["checked_ms"] == answer["accepted_ms"] == 2000
    assert check["steps"] == policy.max_steps(2.0, SPEED, VERIFY.margin)


def test_a_trusted_workers_slice_is_checked_only_when_its_draw_falls_within_the_fraction(db):
    clients, (kept, sampled) = leases(db, 2, verified_slices=VERIFY.watch_slices)
    db.transact(
        jsql.checkin_many, [checkin(kept, clients[0], draw=0.06), checkin(sampled, clients[1], draw=0.04)], VERIFY
    )
    (check,) = checks(db)
    assert (check["lease_id"], check["reason"]) == (sampled["stateid"], "sampled")


def test_the_watch_is_read_with_the_lease_not_from_a_stale_copy(db):
    # the dispatcher's cached client row may be gone or old: what counts is the row locked now
    (client,), (lease,) = leases(db, 1, verified_slices=VERIFY.watch_slices - 1)
    db.transact(
        lambda tx: tx.execute("UPDATE clients SET verified_slices = verified_slices + 1 WHERE id = ?", (client,))
    )
    db.transact(jsql.checkin_many, [checkin(lease, client, draw=0.5)], VERIFY)
    assert checks(db) == []


def test_without_verification_settings_no_check_is_opened(db):
    (client,), (lease,) = leases(db, 1)
    db.transact(jsql.checkin_many, [checkin(lease, client, draw=0.0)])
    assert checks(db) == []


def test_a_refused_a_late_or_a_repeated_check_in_opens_no_check_of_its_own(db):
    clients, (refused, late, twice) = leases(db, 3)
    wrong = md.next_state(refused["state"], job_id=refused["job_id"] + 1000)
    batch = [
        checkin(refused, clients[0], draw=0.0, state=wrong),
        checkin(late, clients[1], draw=0.0, at=T0 + SLICE + GRACE + 1),
        checkin(twice, clients[2], draw=0.0),
        checkin(twice, clients[2], draw=0.0),
    ]
    answers = db.transact(jsql.checkin_many, batch, VERIFY)
    assert isinstance(answers[0], Exception) and answers[1]["status"] == "rejected"
    assert answers[2]["status"] == "accepted" and answers[3]["duplicate"] is True
    assert [c["lease_id"] for c in checks(db)] == [twice["stateid"]]


def test_a_speed_the_dispatcher_did_not_have_is_read_in_the_transaction(db):
    (client,), (lease,) = leases(db, 1, speed=7.0)  # md.client records speed x 10 ops in 10 s
    db.transact(jsql.checkin_many, [checkin(lease, client, draw=0.99, speed=None)], VERIFY)
    (check,) = checks(db)
    assert check["steps"] == policy.max_steps(2.0, 7.0, VERIFY.margin)


class Counting:
    """A transaction that counts the statements sent to the database (a script is one)."""

    def __init__(self, tx):
        self.tx, self.sent = tx, 0

    def __getattr__(self, name):
        attr = getattr(self.tx, name)
        if name in ("execute", "insert", "one", "all", "scalar", "script"):

            def counted(*args, **kwargs):
                self.sent += 1
                return attr(*args, **kwargs)

            return counted
        return attr


def test_opening_the_checks_of_a_whole_batch_costs_no_extra_round_trip(db):
    clients, batch = leases(db, 12)
    sent = []
    for verify, part in ((None, batch[:6]), (VERIFY, batch[6:])):

        def work(tx, verify=verify, part=part):
            counting = Counting(tx)
            offset = 0 if verify is None else 6
            jsql.checkin_many(
                counting, [checkin(lease, clients[offset + i], draw=0.99) for i, lease in enumerate(part)], verify
            )
            return counting.sent

        sent.append(db.transact(work))
    assert len(checks(db)) == 6
    # the parties' plain read, the locking read (accounts in id order, then the leases) and one
    # script, with or without 6 checks
    assert sent[0] == sent[1] == 3


def test_the_markets_draws_are_uniform_in_0_1_unpredictable_and_refilled():
    from market.dispatch.service import SecureDraws

    draws = SecureDraws()
    xs = [draws() for _ in range(3 * SecureDraws.BATCH + 7)]  # crosses three refills
    assert all(0.0 <= x < 1.0 for x in xs)
    assert len(set(xs)) == len(xs)  # 53 random bits each: no repeats across refills
    assert 0.45 < sum(xs) / len(xs) < 0.55
    assert 0.01 < sum(x < 0.05 for x in xs) / len(xs) < 0.09  # the 5 % a fraction of 0.05 samples
    other = SecureDraws()
    assert [other() for _ in range(8)] != xs[:8]  # another market's draws are its own
