"""Spending caps (issue 19, item 6): a job, a batch or an account never pays above its cap.

The rule is pure (``core.caps`` + ``rules.plan_window``): a job whose slice reservation would pass
a cap over it is held with the cap's figures; a lease never reserves beyond what the cap leaves,
and no slice pays more than its lease reserved. Checked with hypothesis on the rules alone and on
the real store (SQLite and MariaDB); raising the cap releases the held job."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from market.core import caps, matcher, rules, states
from market.core.matcher import PooledClient, ReadyJob
from market.store import accounts as sql
from market.store import batches as bsql
from market.store import caps as csql
from market.store import jobs as jsql
from tests import marketdata as md

PAYEE = 99


def job(i, owner, price, keys=(), seconds=None):
    return rules.WindowJob(i, owner, price, seconds, tuple(keys))


def test_a_job_whose_slice_would_pass_its_cap_is_held_with_the_figures():
    cap = caps.Cap(caps.JOB, 35, 30)
    plan = rules.plan_window([job(1, 1, 10, [("job", 1)])], {1: 10_000}, 1, 1.0, {("job", 1): cap})
    assert plan.candidates == [] and plan.held == [1]
    assert plan.capped == {1: cap}
    assert caps.reason(cap).startswith("spending cap reached: 0.30 of 0.35 credits")


def test_a_slice_that_fits_what_the_cap_leaves_is_leased():
    plan = rules.plan_window([job(1, 1, 10, [("job", 1)])], {1: 10_000}, 1, 1.0, {("job", 1): caps.Cap("job", 40, 30)})
    assert [j.id for j in plan.candidates] == [1] and plan.held == []


def test_a_candidates_reservation_counts_against_a_shared_cap_for_the_jobs_after_it():
    # an account cap of 0.15 left: the first job's 0.10 slice fits, the second's does not
    keys = [("account", 1)]
    plan = rules.plan_window(
        [job(1, 1, 10, keys), job(2, 1, 10, keys)], {1: 10_000}, 2, 1.0, {("account", 1): caps.Cap("account", 15, 0)}
    )
    assert [j.id for j in plan.candidates] == [1] and plan.held == [2] and plan.capped[2].what == "account"


def test_without_caps_window_planning_is_unchanged():
    plan = rules.plan_window([job(1, 1, 10), job(2, 2, 10)], {1: 5, 2: 100}, 2, 1.0)
    assert [j.id for j in plan.candidates] == [2] and plan.held == [1] and plan.capped == {}


def test_a_held_jobs_reason_is_the_caps_words():
    words = caps.reason(caps.Cap(caps.BATCH, 100, 95))
    state = states.state_of({"status": "held", "hold_reason": words, "available": 5000, "price": 10})
    assert state.status == "held" and state.reason == words


def test_a_cap_is_written_in_credits_and_cleared_with_none():
    assert caps.parse_cap("5.20") == 520 and caps.parse_cap("none") is None and caps.parse_cap("") is None


# windows of random jobs under random job, batch and account caps: each leased job's slice is
# paid some share of its reservation (with its carry); nothing ever spends above its cap
worlds = st.fixed_dictionaries(
    {
        "jobs": st.lists(
            st.tuples(st.integers(1, 3), st.integers(1, 500), st.sampled_from([None, 0, 50, 500, 2000])),
            min_size=1,
            max_size=8,
        ),
        "batch_cap": st.sampled_from([None, 0, 100, 1000]),
        "account_caps": st.lists(st.sampled_from([None, 0, 300, 3000]), min_size=3, max_size=3),
        "slices": st.lists(st.tuples(st.integers(100, 5000), st.floats(0.0, 1.0)), min_size=1, max_size=25),
    }
)


@settings(max_examples=150, deadline=None)
@given(worlds)
def test_no_job_batch_or_account_ever_pays_above_its_cap(world):
    balances = defaultdict(int, {1: 10**9, 2: 10**9, 3: 10**9})
    carries: dict[int, int] = {}
    paid = defaultdict(int)  # cap key -> cents paid
    limits = {}
    jobs = []
    for i, (owner, price, job_cap) in enumerate(world["jobs"]):
        keys = []
        if job_cap is not None:
            keys.append(("job", i))
            limits[("job", i)] = job_cap
        if i % 2 == 0 and world["batch_cap"] is not None:  # the even jobs form one batch
            keys.append(("batch", 0))
            limits[("batch", 0)] = world["batch_cap"]
        if world["account_caps"][owner - 1] is not None:
            keys.append(("account", owner))
            limits[("account", owner)] = world["account_caps"][owner - 1]
        jobs.append(job(i, owner, price, keys))
        carries[i] = 0
    for granted_ms, share in world["slices"]:
        granted = granted_ms / 1000
        current = {k: caps.Cap(k[0], limits[k], paid[k]) for k in limits}
        plan = rules.plan_window(jobs, {o: balances[o] for o in (1, 2, 3)}, 2, granted, current)
        for j in plan.candidates:
            reserved = rules.reservation(rules.JobKind.JOB, j.price, granted)
            for k in j.caps:
                assert paid[k] + reserved <= limits[k]  # a lease never reserves beyond what a cap leaves
            ms = rules.accepted_ms(0.0, granted, granted * share)
            entry = rules.pay(
                rules.Slice(0, j.id, rules.JobKind.JOB, j.price, j.owner, PAYEE, ms, reserved), balances, carries
            )
            for k in j.caps:
                paid[k] += entry.amount if entry else 0
        for key, limit in limits.items():
            assert paid[key] <= limit
        for j in jobs:  # a job is held by a cap over it, never by another's
            if j.id in plan.capped:
                assert any(
                    current[k].what == plan.capped[j.id].what and current[k].limit == plan.capped[j.id].limit
                    for k in j.caps
                )


# -- the real store ----------------------------------------------------------------------------


def window(db, client, at, seconds=1.0):
    def run(tx):
        return jsql.assign_window(
            tx,
            [PooledClient(client, 10.0, at)],
            at,
            5.0,
            {client: seconds},
            matcher.match,
            lambda r: ReadyJob(r["id"], r["price"], r["submitted_at"]),
        )

    return db.transact(run).get(client)


def run_until_held(db, client, t, limit=20):
    """Windows of one 1 s slice each, checked in in full, until no job is leased: what each paid."""
    paid = []
    for i in range(limit):
        at = t + i * 10
        lease = window(db, client, at)
        if lease is None:
            return paid
        answer = db.transact(jsql.checkin, lease["stateid"], client, md.next_state_of(db, lease["job_id"]), at + 1.0)
        assert answer["status"] == "accepted"
        paid.append(answer["paid"])
    raise AssertionError("the cap never held the job")


T = 1_800_000_000.0


def test_a_job_capped_in_the_store_stops_at_its_cap_and_runs_again_when_it_is_raised(db):
    owner, _ = md.account(db, "alice", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box")
    jid = md.job(db, owner, 10, "capped", submitted_at=T)  # 10 cents a second: 0.10 a slice
    db.transact(csql.set_job_cap, owner, jid, 35)
    assert run_until_held(db, client, T) == [10, 10, 10]
    row = db.transact(jsql.job_status, owner, jid)
    state = states.state_of(row)
    assert state.status == "held"
    assert state.reason.startswith("spending cap reached: 0.30 of 0.35 credits")
    assert db.transact(csql.job_cap, owner, jid) == caps.Cap(caps.JOB, 35, 30)
    db.transact(csql.set_job_cap, owner, jid, 50)  # raising it releases the job
    assert db.transact(jsql.job_row, jid)["status"] == "ready"
    assert run_until_held(db, client, T + 1000) == [10, 10]
    assert db.transact(sql.audit)["balanced"]


def test_an_account_cap_covers_all_its_jobs_from_when_it_was_set(db):
    owner, _ = md.account(db, "alice", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box")
    first = md.job(db, owner, 10, "one", submitted_at=T)
    second = md.job(db, owner, 10, "two", submitted_at=T + 1)
    db.transact(csql.set_account_cap, owner, 45, T)
    assert sum(run_until_held(db, client, T + 10)) == 40
    held = {r["id"]: states.state_of(r) for r in db.transact(jsql.list_jobs, owner)}
    assert {held[first].status, held[second].status} == {"held"}
    assert "0.40 of 0.45" in held[first].reason and "account's cap" in held[first].reason
    db.transact(csql.set_account_cap, owner, 60, T + 500)  # the count keeps its start
    assert db.transact(csql.account_cap, owner) == caps.Cap(caps.ACCOUNT, 60, 40)
    assert sum(run_until_held(db, client, T + 1000)) == 20


def test_a_batch_cap_covers_its_jobs_together(db):
    owner, _ = md.account(db, "alice", grant=10_000)
    host, _ = md.account(db, "host", grant=0)
    client, _ = md.client(db, host, "box")
    ids = [md.job(db, owner, 10, f"j{i}", submitted_at=T + i) for i in range(3)]
    batch = db.transact(bsql.create_batch, owner, "sweep", md.SOURCE, "main", 10, 3, T)
    db.transact(lambda tx: tx.execute(f"UPDATE jobs SET batch_id = ? WHERE id IN ({ids[0]}, {ids[1]})", (batch,)))
    db.transact(csql.set_batch_cap, owner, batch, 25)
    db.transact(csql.set_job_cap, owner, ids[2], 10)  # the job outside the batch: one slice
    paid = run_until_held(db, client, T + 10)
    # the batch's two jobs pay 0.20 together (a third slice would pass 0.25), the other job 0.10
    assert sum(paid) == 30
    assert db.transact(csql.batch_cap, owner, batch) == caps.Cap(caps.BATCH, 25, 20)
    for jid in ids[:2]:
        reason = states.state_of(db.transact(jsql.job_status, owner, jid)).reason
        assert reason.startswith("spending cap reached: 0.20 of 0.25") and "batch's cap" in reason


# -- the simulator's books run the same rule ---------------------------------------------------

sim_runs = st.lists(
    st.tuples(st.integers(1, 400), st.sampled_from([None, 0, 30, 250, 1000]), st.integers(0, 3)),
    min_size=1,
    max_size=6,
)


@settings(max_examples=100, deadline=None)
@given(sim_runs, st.lists(st.tuples(st.integers(200, 4000), st.floats(0.0, 1.2)), min_size=1, max_size=30))
def test_in_the_simulators_books_no_job_pays_above_its_cap(jobs, windows):
    from sim.books import Books

    books = Books(grace=1.0)
    owner, host = books.open_account(10**9), books.open_account(0)
    books.add_client(1, host)
    for i, (price, cap, _) in enumerate(jobs):
        books.add_job(i, owner, price)
        books.set_cap(i, cap)
    paid = defaultdict(int)
    at = 0.0
    for n, (granted_ms, share) in enumerate(windows):
        granted = granted_ms / 1000
        ready = [j.window for j in books.jobs.values() if j.status == "ready"]
        plan = books.plan_window(ready, 1, granted)
        if n == len(windows) // 2:  # raising a cap half way releases its job; the cap still holds
            for i, (_, cap, bump) in enumerate(jobs):
                if cap is not None:
                    books.set_cap(i, cap + 100 * bump)
        for j in plan.candidates:
            lease = books.checkout(j.id, 1, granted, at)
            answer = books.checkin(lease.id, at + granted * share)  # late (share > 1 + grace): rejected
            paid[j.id] += answer["paid"]
        at += 10.0
        for i in paid:
            cap = books.jobs[i].cap
            assert cap is None or paid[i] <= cap
            assert books.jobs[i].spent == paid[i]  # no lease open between windows
