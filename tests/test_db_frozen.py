"""A real ``twistd market`` on a private ``mariadbd`` (its own port and data directory) under load,
while the database is frozen (SIGSTOP) for ~15 s and while it is killed and restarted (issue 20
item 6): no call waits more than ~10 s, the refusals are Fault 9, the service is back within
10 s of the database's return, and nothing is lost (every accepted check-in committed, the
ledger balanced)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
import xmlrpc.client

import pymysql
import pytest

from market.rpc.client import blocking
from market.store import Database
from market.store import accounts as sql
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import Market, free_port, stop_all
from tests.support import need

#: the longest a call may take while the database is frozen: the read timeout (10 s) and a little
LONGEST_CALL = 12.0
#: how soon after the database returns the calls must succeed again
BACK_WITHIN = 10.0


class PrivateMariaDB:
    """A ``mariadbd`` of the test's own: started, frozen, thawed, killed and restarted at will."""

    def __init__(self, root: str):
        self.binary = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")
        self.install = shutil.which("mariadb-install-db")
        need(bool(self.binary and self.install), "the programs mariadbd and mariadb-install-db")
        self.root = root
        self.datadir = os.path.join(root, "data")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    def create(self) -> PrivateMariaDB:
        subprocess.run(
            [
                self.install,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                f"--user={_user()}",
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )
        return self

    def start(self) -> PrivateMariaDB:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.root}/mariadb.sock",
                f"--pid-file={self.root}/mariadb.pid",
                f"--log-error={self.root}/mariadb.err",
                "--innodb-buffer-pool-size=32M",
                f"--user={_user()}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                pymysql.connect(host="127.0.0.1", port=self.port, user="root", connect_timeout=2).close()
                return self
            except pymysql.Error:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the private mariadbd did not start: " + self.errors()) from None
                time.sleep(0.1)

    def errors(self) -> str:
        path = os.path.join(self.root, "mariadb.err")
        return open(path).read()[-2000:] if os.path.exists(path) else ""

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        with conn.cursor() as c:
            c.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        conn.close()
        return self.url(name)

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _user() -> str:
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


@pytest.fixture
def private_mariadb(tmp_path):
    server = PrivateMariaDB(str(tmp_path / "mariadb")).create().start()
    yield server
    server.stop()


class Load:
    """Simulated workers: each asks for work and checks in the next state at once, for ever,
    sending a check-in again after a Fault as a real worker does. Every call is timed."""

    def __init__(self, url: str, clients: list[tuple[int, str]]):
        self.url = url
        self.clients = clients
        self.calls: list[tuple[float, float, str]] = []  # (start, seconds, "ok" or the failure)
        self.accepted: dict[int, set[int]] = {}  # job -> the leases whose check-in was answered accepted
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.work, args=c, daemon=True) for c in clients]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a simulated worker is stuck"

    def call(self, fn, *args):
        start = time.monotonic()
        try:
            answer = fn(*args)
            outcome = "ok"
        except xmlrpc.client.Fault as e:
            answer, outcome = e, f"Fault {e.faultCode}: {e.faultString}"
        except Exception as e:  # a transport error: recorded, and the assertions name it
            answer, outcome = e, f"{type(e).__name__}: {e}"
        with self.lock:
            self.calls.append((start, time.monotonic() - start, outcome))
        return answer, outcome == "ok"

    def work(self, cid: int, token: str) -> None:
        rpc = blocking(self.url, f"client/{cid}", token)
        while not self.stopping.is_set():
            lease, ok = self.call(rpc.request, cid, 4)
            if not ok or lease.get("status") != "work":
                time.sleep(0.05)
                continue
            state = xmlrpc.client.Binary(md.next_state(lease["state"].data))
            # a check-in is sent until it is answered (also after the load stops), as a worker
            # keeps finished work; an answer "accepted" counts once per lease, duplicate or not:
            # a Fault 9 may have come after the commit (the answer lost with the database)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                answer, ok = self.call(rpc.state, lease["stateid"], state, {"progress": 0.5})
                if ok:
                    if answer["status"] == "accepted":
                        with self.lock:
                            self.accepted.setdefault(lease["job"], set()).add(lease["stateid"])
                    break
                time.sleep(0.2)

    def between(self, start: float, end: float) -> list[tuple[float, float, str]]:
        with self.lock:
            return [c for c in self.calls if start <= c[0] < end]


def _setup(url: str, jobs: int, workers: int) -> tuple[list[int], list[tuple[int, str]]]:
    db = Database(url)
    try:
        from market.store import upgrade

        upgrade(db)
        owner, _ = md.account(db, "owner", grant=10_000_000)
        host, _ = md.account(db, "host", grant=0)
        job_ids = [md.job(db, owner, 10, f"j{i}") for i in range(jobs)]
        clients = [md.client(db, host, f"w{i}", 20.0 + i) for i in range(workers)]
        return job_ids, clients
    finally:
        db.close()


def _nothing_lost(url: str, load: Load, job_ids: list[int]) -> None:
    db = Database(url)
    try:
        assert db.transact(sql.audit)["balanced"]
        for job_id in job_ids:
            # every check-in answered "accepted" is one committed step, and no step is committed twice
            assert db.transact(jsql.committed_state, job_id)["seq"] == len(load.accepted.get(job_id, ()))
    finally:
        db.close()


def _market(url: str, tmp_path) -> Market:
    return Market(url, str(tmp_path), "--window", "0.2", "--threshold", "1", "--grace", "20").start()


def test_a_frozen_database_is_refused_within_seconds_and_the_service_comes_back(private_mariadb, tmp_path):
    url = private_mariadb.create_database("market")
    job_ids, clients = _setup(url, jobs=6, workers=6)
    market = _market(url, tmp_path)
    load = Load(market.url, clients).start()
    try:
        time.sleep(3)
        frozen_at = time.monotonic()
        private_mariadb.signal(signal.SIGSTOP)
        time.sleep(15)
        thawed_at = time.monotonic()
        private_mariadb.signal(signal.SIGCONT)
        time.sleep(12)
        ended_at = time.monotonic()
    finally:
        load.stop()
        stop_all([market])
    before = [c for c in load.between(0, frozen_at) if c[0] + c[1] < frozen_at]
    during = load.between(frozen_at, thawed_at)
    after = load.between(thawed_at, ended_at)
    assert before and all(outcome == "ok" for _, _, outcome in before), [c for c in before if c[2] != "ok"][:5]
    longest = max(seconds for _, seconds, _ in load.calls)
    assert longest <= LONGEST_CALL, f"a call waited {longest:.1f} s"
    refused = [outcome for _, _, outcome in during if outcome != "ok"]
    assert refused, "the frozen database was not noticed"
    assert all(o.startswith("Fault 9:") for o in refused), sorted(set(refused))[:5]
    assert any("did not answer within" in o or "has not answered" in o for o in refused)
    # back: the first call started 10 s after the database returned, and every one after it, succeed
    late = [outcome for start, _, outcome in after if start >= thawed_at + BACK_WITHIN]
    assert late and all(o == "ok" for o in late), sorted(set(late))[:5]
    first_ok = min(start + seconds for start, seconds, outcome in after if outcome == "ok")
    print(
        f"frozen 15 s: longest call {longest:.2f} s, {len(refused)} refusals,"
        f" first success {first_ok - thawed_at:.2f} s after SIGCONT"
    )
    _nothing_lost(url, load, job_ids)


def test_a_killed_database_restarted_under_load_loses_nothing(private_mariadb, tmp_path):
    url = private_mariadb.create_database("market")
    job_ids, clients = _setup(url, jobs=6, workers=6)
    market = _market(url, tmp_path)
    load = Load(market.url, clients).start()
    try:
        time.sleep(3)
        killed_at = time.monotonic()
        private_mariadb.kill9()
        time.sleep(3)
        private_mariadb.start()
        back_at = time.monotonic()
        time.sleep(12)
        ended_at = time.monotonic()
    finally:
        load.stop()
        stop_all([market])
    down = [o for _, _, o in load.between(killed_at, back_at) if o != "ok"]
    assert down and all(o.startswith("Fault 9:") for o in down), sorted(set(down))[:5]
    longest = max(seconds for _, seconds, _ in load.calls)
    assert longest <= LONGEST_CALL, f"a call waited {longest:.1f} s"
    late = [o for start, _, o in load.between(back_at + BACK_WITHIN, ended_at)]
    assert late and all(o == "ok" for o in late), sorted(set(late))[:5]
    _nothing_lost(url, load, job_ids)
