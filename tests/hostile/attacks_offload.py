"""Attacks on the market's CPU-heavy paths: a result bomb, huge modules, a hash-flooded test answer.

Each attack is a function ``attack(hostile, seconds) -> Figures``: it sets the attack up on a
running market (``support.start_market`` with :data:`MARKET_OPTIONS`), runs it for ``seconds`` in a
few attacker threads, and returns what the attacker got and what everyone else saw meanwhile: the
bystander's answers (``support.Bystander``), a member's writes (:class:`Writer`), the market
process's peak memory and each helper process's (:class:`HelperWatch`). The tests in
``test_offload_attacks.py`` assert on the figures; a benchmark runs the same functions for longer.
"""

from __future__ import annotations

import collections
import http.client
import re
import subprocess
import threading
import time
import uuid
import xmlrpc.client
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from market.store import clients as csql
from market.tasklet import codec
from tests import marketdata as md
from tests.hostile.support import Bystander, HostileMarket, MemoryWatch, register, rss_mb
from tests.servers import MARKET, env, free_port

#: the helpers' stated limit (the market's default helper-memory) and the market's own bound, MiB
HELPER_MEMORY_MB = 512
PASSWORD = "correct horse battery"


def market_options(web_port: int) -> list[str]:
    """A market with the web site on ``web_port`` and a window that closes at the first request."""
    return ["--web", f"tcp:{web_port}:interface=127.0.0.1", "--window", "0.2", "--threshold", "1"]


# -- what the attacks send -------------------------------------------------------------------------


def result_bomb(levels: int = 40) -> bytes:
    """A result of ~165 bytes that stands for 2**(levels+1) - 1 values: a list holding one list twice."""
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return codec.encode(a)


def module_of_small_functions(count: int = 12_000, size: int = 1024 * 1024) -> str:
    """The review's module: ``count`` small functions, padded with a comment to ``size`` bytes."""
    body = "".join(f"def f{i}(x):\n    y = x + {i}\n    return y * 2\n" for i in range(count))
    body += "def main():\n    return f1(2)\n"
    return body + "#" * max(0, size - len(body.encode()) - 1) + "\n"


def module_at_the_limits(tag: str = "") -> str:
    """The costliest module the cheap limits let through that we know of: ~2,000 functions with
    loops (each rewritten and compiled) in ~18,000 lines; ~3.5 s of a helper's CPU and ~140 MiB.
    ``tag`` makes it a new module (no cache anywhere has seen it)."""
    body = (
        "    t = 0\n    for i in range(x):\n        for j in range(i):\n            if i % 3 == 0:\n"
        "                t += i * j\n            else:\n                t -= j\n    return t\n"
    )
    functions = "".join(f"def f{i}(x):\n{body}" for i in range(1998))
    return f"# {tag or uuid.uuid4().hex}\n" + functions + "def main():\n    return f1(3)\n"


def hash_flooded_set(size: int = 512 * 1024) -> bytes:
    """A set of integers that all share Python's hash (multiples of 2**61 - 1), ``size`` bytes
    encoded: building it takes time quadratic in its length (~10 s for 0.5 MB)."""
    count = size // 12
    return codec.encode({(2**61 - 1) * k for k in range(1, count)})


# -- instruments -----------------------------------------------------------------------------------


class HelperWatch:
    """Samples every helper process of the market (its children running market.offload.helper):
    the peak resident memory of any one of them (MiB) and how many there were (replacements too)."""

    def __init__(self, market_pid: int, every: float = 0.05):
        self.market_pid, self.every = market_pid, every
        self.peak = 0.0
        self.seen: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="helper-watch", daemon=True)

    def helpers(self) -> list[int]:
        from market.worker.slices import descendants

        found = []
        for pid in descendants(self.market_pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"market.offload.helper" in f.read():
                        found.append(pid)
            except OSError:
                pass
        return found

    def __enter__(self) -> HelperWatch:
        register(self)
        self._thread.start()
        return self

    def figures(self) -> dict[str, Any]:
        return {"kind": "helper memory", "peak_mb": round(self.peak, 1), "helpers_seen": len(self.seen)}

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.helpers():
                self.seen.add(pid)
                self.peak = max(self.peak, rss_mb(pid))
            self._stop.wait(self.every)


class Writer(Bystander):
    """A member who changes a job's price every ``interval`` seconds: a write transaction, timed.
    (A transaction that holds the database's write lock makes this one wait.)"""

    job_id: int = 0

    def _run(self) -> None:
        proxy = self.hostile.member()
        prices = ["0.02", "0.03"]
        next_at = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                proxy.price(self.job_id, prices[len(self.latencies) % 2])
                self.latencies.append(time.monotonic() - started)
            except Exception as e:
                self.errors.append(f"{type(e).__name__}: {e}")
                self.latencies.append(max(self.give_up, time.monotonic() - started))
                proxy = self.hostile.member()
            next_at += self.interval
            self._stop.wait(max(0.0, next_at - time.monotonic()))


@dataclass
class Figures:
    """What one attack did and what the others saw meanwhile."""

    attack: str
    seconds: float
    requests: int = 0
    #: what the attacker got back: "200", "413", "Fault 8", "exit 2", ... -> how many times
    outcomes: collections.Counter = field(default_factory=collections.Counter)
    bystander_calls: int = 0
    bystander_worst: float = 0.0
    bystander_p99: float = 0.0
    bystander_errors: list[str] = field(default_factory=list)
    writer_worst: float = 0.0
    writer_p99: float = 0.0
    writer_errors: list[str] = field(default_factory=list)
    market_peak_mb: float = 0.0
    helper_peak_mb: float = 0.0
    helpers_seen: int = 0
    #: what the attacker saw that the test checks (the first answer of each kind, cut short)
    samples: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.attack}: {self.requests} requests in {self.seconds:.1f} s {dict(self.outcomes)};"
            f" bystander {self.bystander_calls} calls worst {self.bystander_worst * 1000:.0f} ms"
            f" p99 {self.bystander_p99 * 1000:.0f} ms; writer worst {self.writer_worst * 1000:.0f} ms;"
            f" market peak {self.market_peak_mb:.0f} MiB; helpers peak {self.helper_peak_mb:.0f} MiB"
            f" ({self.helpers_seen} seen)"
        )


class _Record:
    """What the attacker threads count, under a lock."""

    def __init__(self, figures: Figures):
        self.figures = figures
        self.lock = threading.Lock()

    def __call__(self, outcome: str, sample: str = "") -> None:
        with self.lock:
            self.figures.requests += 1
            self.figures.outcomes[outcome] += 1
            if sample and outcome not in self.figures.samples:
                self.figures.samples[outcome] = sample[:20000]


def under_attack(
    hostile: HostileMarket, name: str, seconds: float, attackers: list[Callable[[threading.Event, _Record], None]]
) -> Figures:
    """Run each attacker (``attacker(stop, record)``, looping until ``stop``) in its own thread for
    ``seconds``, with the bystander, a writer and the memory watches around them."""
    figures = Figures(name, seconds)
    record = _Record(figures)
    job = md.job(hostile.db, hostile.account_id, 1, f"writer's job {uuid.uuid4().hex[:6]}")
    writer = Writer(hostile)
    writer.job_id = job
    stop = threading.Event()
    with MemoryWatch(hostile.pid) as memory, HelperWatch(hostile.pid) as helpers, Bystander(hostile) as bystander:
        with writer:
            threads = [threading.Thread(target=a, args=(stop, record), daemon=True) for a in attackers]
            for t in threads:
                t.start()
            stop.wait(seconds)
            stop.set()
            for t in threads:
                t.join(60)
    figures.bystander_calls = len(bystander.latencies)
    figures.bystander_worst, figures.bystander_p99 = bystander.worst(), bystander.p99()
    figures.bystander_errors = bystander.errors
    figures.writer_worst, figures.writer_p99, figures.writer_errors = writer.worst(), writer.p99(), writer.errors
    figures.market_peak_mb, figures.helper_peak_mb, figures.helpers_seen = memory.peak, helpers.peak, len(helpers.seen)
    return figures


# -- a member on the web site ------------------------------------------------------------------------


class WebMember:
    """A member logged in to the web site (a session cookie and the CSRF token), over http.client."""

    def __init__(self, port: int, name: str, password: str = PASSWORD, timeout: float = 30.0):
        self.port, self.timeout = port, timeout
        self.cookies: dict[str, str] = {}
        page = self.get("/login")
        self.post("/login", {"name": name, "password": password, "csrf": self.csrf(page[2])})
        if "market_session" not in " ".join(self.cookies):
            raise RuntimeError(f"{name} could not log in")

    def csrf(self, body: bytes) -> str:
        m = re.search(rb'name="csrf" value="([^"]+)"', body)
        return m.group(1).decode() if m else self.cookies.get("market_csrf", "")

    def request(self, method: str, path: str, body: bytes | None = None, headers=None) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        try:
            h = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
            h.update(headers or {})
            conn.request(method, path, body, h)
            response = conn.getresponse()
            data = response.read()
            for value in response.msg.get_all("Set-Cookie") or []:
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
            return response.status, dict(response.getheaders()), data
        finally:
            conn.close()

    def get(self, path: str) -> tuple[int, dict, bytes]:
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str]) -> tuple[int, dict, bytes]:
        body = urlencode(fields).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def submit(self, module: str, function: str = "main", args: str = "", name: str = "attack") -> tuple[int, bytes]:
        """The submit form, as a browser posts it (multipart, the module as a file)."""
        status, _, page = self.get("/submit")
        fields = {"csrf": self.csrf(page), "function": function, "args": args, "name": name, "price": "0.01"}
        boundary = uuid.uuid4().hex
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="module"; filename="job.py"\r\n'
            "Content-Type: text/x-python\r\n\r\n".encode()
            + module.encode()
            + b"\r\n"
        )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        kind = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, page = self.request("POST", "/submit", body, kind)
        return status, page


def web_member(hostile: HostileMarket, web_port: int) -> tuple[int, str, WebMember]:
    """(account id, API token, logged-in web session) of a new member with a password."""
    from market import accounts

    name = f"web{uuid.uuid4().hex[:8]}"
    account = accounts.create_account(hostile.db, name, f"{name}@example.org", PASSWORD, confirm=False)
    token = accounts.issue_api_token(hostile.db, account.id)
    return account.id, token, WebMember(web_port, name)


def finished_with(hostile: HostileMarket, owner: int, result: bytes) -> int:
    """A job of ``owner`` that a worker client finished with ``result``: the client (measured, so
    it gets work, not a test job) asks for work and checks ``result`` in for its lease."""
    job_id = md.job(hostile.db, owner, 1, f"bomb {uuid.uuid4().hex[:6]}")
    hostile.db.transact(csql.record_speed, hostile.client_id, 10**9, 1.0, time.time())
    worker = hostile.worker()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lease = worker.request(hostile.client_id, 5)
        if lease["status"] == "work":
            assert lease["job"] == job_id, lease
            worker.result(lease["stateid"], xmlrpc.client.Binary(result))
            return job_id
        time.sleep(0.1)
    raise RuntimeError("the worker got no work for the bomb's job")


# -- the attacks -------------------------------------------------------------------------------------


def attack_result_bomb(hostile: HostileMarket, seconds: float, web_port: int) -> Figures:
    """A job's result is a ~165-byte bomb (2**41 values once expanded); the owner hits its job page,
    its JSON download, the feed, XML-RPC ``outcome`` and ``market result`` over and over."""
    from market.store import accounts as sql_accounts
    from market.web.feed import feed_path

    owner, token, web = web_member(hostile, web_port)
    bomb = result_bomb()
    job_id = finished_with(hostile, owner, bomb)
    feed = feed_path(hostile.db.transact(sql_accounts.account_by_id, owner))
    name = hostile.db.transact(sql_accounts.account_by_id, owner)["name"]

    def pages(stop: threading.Event, record: _Record) -> None:
        session = web  # one session, as one member in one browser
        paths = {
            "page": f"/jobs/{job_id}",
            "download": f"/jobs/{job_id}/result",
            "feed": feed,
            "encoded": f"/jobs/{job_id}/result?as=encoded",
        }
        i = 0
        while not stop.is_set():
            kind, path = list(paths.items())[i % len(paths)]
            i += 1
            status, _, body = session.get(path)
            record(f"{kind} {status}", body.decode("utf-8", "replace"))

    def outcomes(stop: threading.Event, record: _Record) -> None:
        from market.rpc.client import blocking

        proxy = blocking(hostile.url, f"account/{name}", token)
        while not stop.is_set():
            try:
                answer = proxy.outcome(job_id)
                record("outcome answered", repr({k: v for k, v in answer.items() if k != "result"}))
                if answer["result"].data != bomb:
                    record("outcome lost the result")
            except xmlrpc.client.Fault as f:
                record(f"outcome Fault {f.faultCode}", f.faultString)

    def command_line(stop: threading.Event, record: _Record) -> None:
        e = dict(env(), MARKET_SERVER=hostile.url, MARKET_ACCOUNT=name, MARKET_TOKEN=token)
        while not stop.is_set():
            try:
                r = subprocess.run([*MARKET, "result", str(job_id)], capture_output=True, text=True, env=e, timeout=60)
                record(f"market result exit {r.returncode}", r.stderr + r.stdout[:500])
            except subprocess.TimeoutExpired:
                record("market result hung")

    return under_attack(hostile, "result bomb", seconds, [pages, outcomes, command_line])


def _why(message: str) -> str:
    """A short name for a size refusal's reason, to count them apart."""
    for words, why in (("lines", "lines"), ("more than", "time"), ("memory", "memory"), ("busy", "busy")):
        if words in message:
            return f" ({why})"
    return ""


def attack_module_over_rpc(hostile: HostileMarket, seconds: float, threads: int = 3) -> Figures:
    """XML-RPC ``job`` with the review's 1 MiB module of 12,000 functions, and with the costliest
    module the cheap limits let through, over and over from ``threads`` connections."""
    big = module_of_small_functions()

    def flood(stop: threading.Event, record: _Record) -> None:
        proxy = hostile.member()
        i = 0
        while not stop.is_set():
            module = big if i % 2 == 0 else module_at_the_limits()
            i += 1
            try:
                proxy.job(hostile.account_id, module, "0.01", "attack", "main")
                record("accepted")
            except xmlrpc.client.Fault as f:
                record(f"Fault {f.faultCode}{_why(f.faultString)}", f.faultString)
            except (OSError, http.client.HTTPException) as e:
                record(type(e).__name__, str(e))
                proxy = hostile.member()

    return under_attack(hostile, "1 MiB modules over XML-RPC", seconds, [flood] * threads)


def attack_module_over_web(hostile: HostileMarket, seconds: float, web_port: int, threads: int = 2) -> Figures:
    """The web form with the same two modules, over and over."""
    _, _, first = web_member(hostile, web_port)
    big = module_of_small_functions()

    def flood(stop: threading.Event, record: _Record) -> None:
        session = first
        i = 0
        while not stop.is_set():
            module = big if i % 2 == 0 else module_at_the_limits()
            i += 1
            status, page = session.submit(module)
            text = page.decode("utf-8", "replace")
            m = re.search(r'<pre class="error" id="module-error">([^<]*)', text)
            record(f"submit {status}", m.group(1) if m else text[:300])

    return under_attack(hostile, "1 MiB modules through the web form", seconds, [flood] * threads)


def liars(hostile: HostileMarket, count: int) -> collections.deque:
    """``count`` new clients (id, token) without a speed, made in one transaction before the attack,
    so that the attack's own writes to the database are the market's."""
    from market.accounts import credentials

    tokens = [credentials.new_token() for _ in range(count)]

    def work(tx):
        now = time.time()
        return [
            (csql.register_client(tx, hostile.owner_id, f"liar-{uuid.uuid4().hex[:10]}", digest, now), token)
            for token, digest in tokens
        ]

    return collections.deque(hostile.db.transact(work))


def attack_hash_flooded_probe(hostile: HostileMarket, seconds: float) -> Figures:
    """New clients get test jobs and answer each with a 0.5 MB set of integers that share one hash
    (decoding it inside the check-in transaction held SQLite's write lock for ~10 s)."""
    flood = hash_flooded_set()
    clients = liars(hostile, int(200 * seconds) + 20)  # ~65 a second are used on this machine

    def liar(stop: threading.Event, record: _Record) -> None:
        from market.rpc.client import blocking

        while not stop.is_set():
            try:
                client_id, token = clients.popleft()
            except IndexError:
                record("out of clients")
                return
            proxy = blocking(hostile.url, f"client/{client_id}", token)
            lease = proxy.request(client_id, 5)
            if lease.get("status") != "work":  # a new client's first work is its probe
                record(f"no probe: {lease.get('status')}")
                continue
            try:
                answer = proxy.result(lease["stateid"], xmlrpc.client.Binary(flood))
                record("judged suspect" if answer.get("suspect") else "judged right", repr(answer))
            except xmlrpc.client.Fault as f:
                record(f"Fault {f.faultCode}", f.faultString)

    return under_attack(hostile, "hash-flooded test answer", seconds, [liar, liar])


def new_web_port() -> int:
    return free_port()
