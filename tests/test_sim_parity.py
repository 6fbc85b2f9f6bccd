"""The simulator keeps the market's books by the market's own rules: one scenario (prices, owners
who can and cannot pay, clients with speeds and slices, windows, check-ins at chosen times, a
repeat, a late check-in, one at the very deadline, failures up to three strikes, an expiry, a
grant that releases a held job, a bob's job on alice's machine, alice's job on her own) is driven
with explicit times through the real store (SQLite and MariaDB: assign_window, checkin,
finish, fail_lease, expire_leases, grant + release_held) and through the simulator's code path
(``sim.engine.close_window`` and ``sim.books.Books``). Every answer, every status, every balance
and reservation after every event, and every ledger entry must be the same, to the cent."""

from __future__ import annotations

from typing import Any

from market.core import matcher
from market.core.errors import MarketError
from market.core.matcher import PooledClient, ReadyJob
from market.store import accounts as sql
from market.store import jobs as jsql
from sim.books import Books
from sim.engine import close_window
from sim.ready import ReadyList
from tests import marketdata as md

T0 = 1_800_000_000.0
GRACE = 5.0

ACCOUNTS = {"alice": 100_000, "bob": 1_000, "host": 0}
# name: (owner, speed, granted slice in seconds)
CLIENTS = {"fast": ("host", 30.0, 30.0), "slow": ("host", 20.0, 20.0), "home": ("alice", 10.0, 25.0)}
# name: (owner, price in cents per second); submitted one second apart in this order
JOBS = {"j1": ("alice", 137), "j2": ("alice", 53), "j3": ("bob", 50), "j4": ("alice", 7)}

# (event, ...): times are absolute, or seconds after the job's current lease was checked out
SCENARIO: list[tuple[Any, ...]] = [
    ("window", T0 + 10, ["fast", "slow", "home"]),  # bob cannot pay 50 c/s x 30 s: j3 is held
    ("checkin", "j1", 12.3456),
    ("repeat", "j1"),  # the same check-in again: the same answer, paid once
    ("late", "j2"),  # half a second after the deadline: rejected, j2 back to ready
    ("fail", "j4", 3.0, "crash"),  # strike one; alice's job on alice's machine
    ("grant", "bob", 10_000, T0 + 40),  # releases j3
    ("window", T0 + 60, ["fast", "slow", "home"]),  # j3 runs on alice's machine
    ("finish", "j1", 25.5),
    ("checkin", "j2", 19.9999),
    ("reap", T0 + 91),  # j3's lease (deadline T0 + 90) expires
    ("window", T0 + 200, ["slow", "home"]),
    ("at_deadline", "j2"),  # in time, and paid for the granted slice only
    ("checkin", "j3", 10.0),  # bob pays alice
    ("window", T0 + 300, ["fast", "slow", "home"]),
    ("fail", "j4", 1.0, "crash"),  # strike two
    ("finish", "j2", 7.25),
    ("fail", "j3", 2.0, "timeout"),  # not the job's fault: back to ready
    ("window", T0 + 400, ["fast", "home"]),
    ("fail", "j4", 1.5, "crash"),  # strike three: j4 ends 'crash'
    ("finish", "j3", 29.999),
]


class StoreMarket:
    """The scenario on the real store, one transaction per event."""

    def __init__(self, db):
        self.db = db
        self.accounts = {name: md.account(db, name, grant=amount)[0] for name, amount in ACCOUNTS.items()}
        self.clients = {name: md.client(db, self.accounts[owner], name)[0] for name, (owner, _, _) in CLIENTS.items()}
        self.jobs = {
            name: md.job(db, self.accounts[owner], price, name, submitted_at=T0 + i)
            for i, (name, (owner, price)) in enumerate(JOBS.items())
        }

    def window(self, at, clients, granted):
        def ready_job(row):
            return ReadyJob(row["id"], row["price"], row["submitted_at"])

        leases = self.db.transact(jsql.assign_window, clients, at, GRACE, granted, matcher.match, ready_job)
        return {client: (lease["stateid"], lease["job_id"], lease["deadline"]) for client, lease in leases.items()}

    def checkin(self, lease_id, client_id, at):
        try:  # what an honest slice of the lease's state checks in
            state = md.next_state_of(self.db, self.db.transact(jsql.lease_row, lease_id)["job_id"])
        except MarketError:
            state = md.fake_state(seq=1)
        return self._call(jsql.checkin, lease_id, client_id, state, at)

    def finish(self, lease_id, client_id, at):
        return self._call(jsql.finish, lease_id, client_id, b"result", "finished", None, at)

    def fail(self, lease_id, client_id, at, status):
        return self._call(jsql.fail_lease, lease_id, client_id, status, "it broke", at)

    def grant(self, account, amount, at):
        def work(tx):
            sql.grant(tx, account, amount, at)
            jsql.release_held(tx, account)

        self.db.transact(work)

    def reap(self, at):
        return len(self.db.transact(jsql.expire_leases, at))

    def _call(self, fn, *args):
        try:
            return self.db.transact(fn, *args)
        except MarketError as e:
            return type(e).__name__

    def state(self):
        def read(tx):
            jobs = {n: jsql.job_row(tx, j) for n, j in self.jobs.items()}
            money = {n: sql.account_by_id(tx, a) for n, a in self.accounts.items()}
            ledger = tx.all(
                "SELECT debit_account, credit_account, amount, kind, memo, lease_id FROM ledger ORDER BY id"
            )
            return jobs, money, ledger

        jobs, money, ledger = self.db.transact(read)
        return (
            {n: (j["status"], j["outcome"], int(j["carry"])) for n, j in jobs.items()},
            {n: (int(a["balance"]), int(a["reserved"])) for n, a in money.items()},
            ledger,
        )


class SimMarket:
    """The scenario on the simulator's books, windows through ``close_window``."""

    def __init__(self, store: StoreMarket):
        self.books = Books(grace=GRACE, keep_history=True)
        self.accounts = {name: self.books.open_account(amount) for name, amount in ACCOUNTS.items()}
        # the same client and job ids as the store's, so the matcher's tie-breaks are the same
        self.clients = dict(store.clients)
        for name, (owner, _, _) in CLIENTS.items():
            self.books.add_client(self.clients[name], self.accounts[owner])
        self.jobs = dict(store.jobs)
        self.ready_jobs = {}
        for i, (name, (owner, price)) in enumerate(JOBS.items()):
            self.books.add_job(self.jobs[name], self.accounts[owner], price)
            self.ready_jobs[self.jobs[name]] = ReadyJob(self.jobs[name], price, T0 + i)

    def window(self, at, clients, granted):
        # the simulator's ready list holds the books' ready jobs (the engine pushes them back)
        ready = ReadyList(matcher.job_order_key)
        for job in self.books.jobs.values():
            if job.status == "ready":
                ready.push(self.ready_jobs[job.id])
        leases = close_window(self.books, ready, clients, granted, matcher.match, at)
        return {a.client.id: (lease.id, lease.job_id, lease.deadline) for a, lease in leases}

    def checkin(self, lease_id, client_id, at):
        return self.books.checkin(lease_id, at)

    def finish(self, lease_id, client_id, at):
        return self.books.finish(lease_id, at, "finished")

    def fail(self, lease_id, client_id, at, status):
        return self.books.fail(lease_id, at, status)

    def grant(self, account, amount, at):
        self.books.grant(account, amount, at)

    def reap(self, at):
        return len(self.books.expire_leases(at))

    def state(self):
        jobs = {
            n: (self.books.jobs[j].status, self.books.jobs[j].outcome, self.books.carries[j])
            for n, j in self.jobs.items()
        }
        money = {n: (self.books.balances[a], self.books.reserved[a]) for n, a in self.accounts.items()}
        ledger = [
            {
                "debit_account": e.debit_account,
                "credit_account": e.credit_account,
                "amount": e.amount,
                "kind": e.kind,
                "memo": e.memo,
                "lease_id": lease_id,
            }
            for e, lease_id, _ in self.books.ledger
        ]
        return jobs, money, ledger


class Run:
    """Drives one market through the scenario, remembering each job's current lease."""

    def __init__(self, market):
        self.market = market
        self.lease_of: dict[str, tuple[int, int, float, float]] = {}  # job -> (lease, client, out, deadline)
        self.lease_name: dict[int, str] = {}  # lease id -> "job@window"
        self.last: dict[str, tuple] = {}  # job -> its last check-in, for a repeat
        self.windows = 0

    def event(self, kind, *args):
        m = self.market
        if kind == "window":
            at, names = args
            self.windows += 1
            clients = [PooledClient(m.clients[n], CLIENTS[n][1], at) for n in names]
            granted = {m.clients[n]: CLIENTS[n][2] for n in names}
            assigned = m.window(at, clients, granted)
            by_client = {v: k for k, v in m.clients.items()}
            by_job = {v: k for k, v in m.jobs.items()}
            out = {}
            for client_id, (lease_id, job_id, deadline) in assigned.items():
                job = by_job[job_id]
                self.lease_of[job] = (lease_id, client_id, at, deadline)
                self.lease_name[lease_id] = f"{job}@{self.windows}"
                out[by_client[client_id]] = (job, deadline)
            return out
        if kind == "grant":
            name, amount, at = args
            return m.grant(m.accounts[name], amount, at)
        if kind == "reap":
            return m.reap(args[0])
        job = args[0]
        lease_id, client_id, out, deadline = self.lease_of[job]
        if kind == "checkin":
            call = ("checkin", lease_id, client_id, out + args[1])
        elif kind == "late":
            call = ("checkin", lease_id, client_id, deadline + 0.5)
        elif kind == "at_deadline":
            call = ("checkin", lease_id, client_id, deadline)
        elif kind == "finish":
            call = ("finish", lease_id, client_id, out + args[1])
        elif kind == "fail":
            call = ("fail", lease_id, client_id, out + args[1], args[2])
        elif kind == "repeat":
            call = self.last[job]
        else:
            raise ValueError(kind)
        self.last[job] = call
        answer = getattr(m, call[0])(*call[1:])
        if isinstance(answer, dict):
            answer = dict(answer, stateid=self.lease_name[answer["stateid"]])
        return answer

    def normalized_ledger(self, ledger):
        """Entries with account and lease ids replaced by names; each memo checked against its own ids."""
        account_name = {v: k for k, v in self.market.accounts.items()}
        job_name = {v: k for k, v in self.market.jobs.items()}
        out = []
        for e in ledger:
            lease = None
            if e["kind"] == "payment":
                lease = self.lease_name[e["lease_id"]]
                job_id = next(j for j, n in job_name.items() if lease.startswith(n + "@"))
                assert e["memo"] == f"job {job_id} slice {e['lease_id']}"
            out.append(
                (account_name.get(e["debit_account"]), account_name[e["credit_account"]], e["amount"], e["kind"], lease)
            )
        return out


def test_the_simulator_pays_every_slice_as_the_store_does_to_the_cent(db):
    store = StoreMarket(db)
    sim = SimMarket(store)
    runs = {"store": Run(store), "sim": Run(sim)}
    for step, event in enumerate(SCENARIO):
        answers = {side: run.event(*event) for side, run in runs.items()}
        assert answers["sim"] == answers["store"], f"step {step} {event}"
        jobs_store, money_store, _ = store.state()
        jobs_sim, money_sim, _ = sim.state()
        assert jobs_sim == jobs_store, f"jobs after step {step} {event}"
        assert money_sim == money_store, f"balances and reservations after step {step} {event}"

    _, _, store_ledger = store.state()
    _, _, sim_ledger = sim.state()
    payments = runs["store"].normalized_ledger(store_ledger)
    assert runs["sim"].normalized_ledger(sim_ledger) == payments
    # the scenario does what it says: these are the payments, to the cent
    assert [p for p in payments if p[3] == "payment"] == [
        # each slice pays its exact cost plus its job's carry below a cent, rounded down
        ("alice", "host", 1691, "payment", "j1@1"),  # 137 c/s x 12.345 s = 1691.265: carries .265
        ("alice", "host", 3493, "payment", "j1@2"),  # 137 x 25.5 s = 3493.5, + .265 = 3493.765
        ("alice", "host", 1059, "payment", "j2@2"),  # 53 x 19.999 s = 1059.947: carries .947
        ("alice", "host", 1060, "payment", "j2@3"),  # 53 x the granted 20 s (at the deadline), + .947
        ("bob", "alice", 500, "payment", "j3@3"),  # bob's job on alice's machine
        ("alice", "host", 385, "payment", "j2@4"),  # 53 x 7.25 s = 384.25, + .947 = 385.197: not 384
        ("bob", "host", 1499, "payment", "j3@5"),  # 50 x 29.999 s = 1499.95
    ]
    jobs, money, _ = store.state()
    assert jobs == {  # status, outcome, and what each job's slices left below a cent
        "j1": ("finished", "finished", 765),
        "j2": ("finished", "finished", 197),
        "j3": ("finished", "finished", 950),
        "j4": ("finished", "crash", 0),  # alice's job on alice's machine carries nothing
    }
    assert all(reserved == 0 for _, reserved in money.values())
    assert sum(balance for balance, _ in money.values()) == sum(ACCOUNTS.values()) + 10_000
    assert db.transact(sql.audit)["balanced"]


def test_the_scenario_holds_a_job_and_rejects_the_late_and_the_failed(db):
    """The first steps of the scenario, read as a specification of what the rules decided."""
    store = StoreMarket(db)
    run = Run(store)
    window = run.event(*SCENARIO[0])
    assert {c: job for c, (job, _) in window.items()} == {"fast": "j1", "slow": "j2", "home": "j4"}
    assert store.state()[0]["j3"][0] == "held"
    assert run.event(*SCENARIO[1])["status"] == "accepted"
    assert run.event(*SCENARIO[2])["duplicate"] is True
    assert run.event(*SCENARIO[3])["status"] == "rejected"
    assert run.event(*SCENARIO[4])["status"] == "rejected"
    run.event(*SCENARIO[5])
    assert store.state()[0]["j3"][0] == "ready"
