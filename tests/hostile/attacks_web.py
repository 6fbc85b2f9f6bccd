"""Attacks on the web site and the test-job path, as code: each function runs one attack against a
real ``twistd market --web`` for ``seconds`` and returns its figures.

``tests/hostile/test_web_attacks.py`` runs each for a few seconds with a bystander and a memory
watch and asserts the figures; a benchmark runs the same functions for longer. Every attack is a
stranger's: plain HTTP and XML-RPC from threads in this process, nothing the market offers for
tests. Where an attack needs to know what happened inside (how many accounts a sign-up flood
made, how many test-job rows are left) it reads the database, never the market's memory.
"""

from __future__ import annotations

import email
import glob
import http.client
import os
import re
import secrets
import subprocess
import threading
import time
import uuid
import xmlrpc.client
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from market.core.rules import JobKind, JobStatus, LeaseStatus
from tests.hostile.support import HostileMarket, start_market
from tests.servers import MARKET, env, free_port, wait_for_port

#: every character the market must never show raw: C0 controls, DEL, C1 (0x9b is an 8-bit CSI),
#: bidirectional overrides and isolates, the Unicode line separators
RAW_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


# -- a market with its web site ------------------------------------------------------------------


@dataclass
class WebTarget:
    """A running market with its web site on ``web_port`` (both on 127.0.0.1)."""

    hostile: HostileMarket
    web_port: int
    workdir: str

    @property
    def db(self):
        return self.hostile.db

    def browser(self, timeout: float = 10.0, source: str | None = None) -> Browser:
        """A browser; ``source``: the loopback address it comes from (127.0.0.2, ...), so one
        machine can be many visitors for the per-address limits."""
        return Browser(self.web_port, timeout, source)

    def stop(self) -> None:
        self.hostile.market.stop()


def start_web_market(tmp_path, *options: str, db_url: str | None = None) -> WebTarget:
    """A fresh market (SQLite unless ``db_url``) serving its web site too, with the suite's member and client."""
    port = free_port()
    hostile = start_market(tmp_path, "--web", f"tcp:{port}:interface=127.0.0.1", *options, db_url=db_url)
    assert hostile.market.proc is not None
    wait_for_port(port, hostile.market.proc, log=hostile.market.log)
    return WebTarget(hostile, port, str(tmp_path))


class Browser:
    """A blocking browser for attack threads: one kept-alive connection, cookies, the last CSRF token."""

    def __init__(self, port: int, timeout: float = 10.0, source: str | None = None):
        self.port, self.timeout, self.source = port, timeout, source
        self.cookies: dict[str, str] = {}
        self.csrf = ""
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, body) — the body read to its end."""
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1",
                    self.port,
                    timeout=self.timeout,
                    source_address=(self.source, 0) if self.source else None,
                )
            try:
                self._conn.request(method, path, body, h)
                response = self._conn.getresponse()
                data = response.read()
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # the server closed a kept-alive connection: once more on a new one
                if attempt == 2:
                    raise
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        found = re.search(rb'name="csrf" value="([^"]+)"', data)
        if found:
            self.csrf = found.group(1).decode()
        return response.status, data

    def get(self, path: str):
        return self.request("GET", path)

    def post(self, path: str, fields: dict[str, str]):
        body = urlencode({**fields, "csrf": self.csrf}).encode()
        return self.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})

    def post_multipart(self, path: str, fields: dict[str, str], files: dict[str, tuple[str, bytes]]):
        boundary = uuid.uuid4().hex
        parts = []
        for name, value in {**fields, "csrf": self.csrf}.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
                + value.encode("utf-8")
                + b"\r\n"
            )
        for name, (filename, data) in files.items():
            parts.append(
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: text/x-python\r\n\r\n".encode()
                + data
                + b"\r\n"
            )
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.request("POST", path, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def log_in(self, name: str, password: str) -> int:
        self.get("/login")
        status, _ = self.post("/login", {"name": name, "password": password})
        return status


def visitor_address(i: int) -> str:
    """The ``i``-th made-up visitor's loopback address (127.0.1.0/24 upwards; never 127.0.0.1)."""
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def _in_threads(n: int, work, *args) -> list[BaseException]:
    """Run ``work(i, *args)`` in ``n`` threads and wait; the exceptions they raised."""
    errors: list[BaseException] = []

    def run(i):
        try:
            work(i, *args)
        except BaseException as e:  # reported to the test, which fails on it
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# -- 1. twenty clients flooding /report.xml ------------------------------------------------------


def seed_report(db, account_id: int, client_id: int, jobs: int) -> None:
    """``jobs`` finished jobs of ``account_id`` with one lease each on ``client_id``: a report worth
    building (some hundreds of KiB), written straight into the store."""
    now = time.time()

    def work(tx):
        first = int(tx.scalar("SELECT COALESCE(MAX(id), 0) FROM jobs") or 0) + 1
        tx.cursor.executemany(
            tx.dialect.sql(
                "INSERT INTO jobs (id, account_id, kind, name, price, source, source_sha256, entry, status,"
                " submitted_at, finished_at, executed_ms, slices, outcome) VALUES (?, ?, 'job', ?, 5, 'x', ?, 'main',"
                " ?, ?, ?, 1000, 1, 'finished')"
            ),
            [
                (first + i, account_id, f"seeded job {i}", "0" * 64, JobStatus.FINISHED.value, now - i, now)
                for i in range(jobs)
            ],
        )
        tx.cursor.executemany(
            tx.dialect.sql(
                "INSERT INTO leases (job_id, state_id, client_id, checked_out_at, granted_seconds, deadline,"
                " checked_in_at, status) VALUES (?, 0, ?, ?, 10, ?, ?, ?)"
            ),
            [
                (first + i, client_id, now - i, now - i + 20, now - i + 10, LeaseStatus.FINISHED.value)
                for i in range(jobs)
            ],
        )

    db.transact(work)


@dataclass
class ReportFlood:
    clients: int
    seconds: float
    requests: int = 0
    megabytes: float = 0.0
    slowest: float = 0.0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    #: distinct ``generated-at`` stamps of the anonymous report served: how often it was built
    generations: set[str] = field(default_factory=set)

    def summary(self) -> str:
        return (
            f"{self.clients} clients, {self.requests} requests in {self.seconds:.1f} s"
            f" ({self.requests / max(self.seconds, 1e-9):.0f}/s, {self.megabytes:.1f} MB),"
            f" slowest {self.slowest * 1000:.0f} ms, {len(self.generations)} report generations,"
            f" statuses {self.statuses}, {len(self.errors)} errors{': ' + self.errors[0] if self.errors else ''}"
        )


def report_flood(target: WebTarget, seconds: float, clients: int = 20) -> ReportFlood:
    """``clients`` anonymous visitors each fetching /report.xml in a loop on a kept-alive connection."""
    figures = ReportFlood(clients, seconds)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def visitor(i):
        browser = target.browser(timeout=30)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                status, body = browser.get("/report.xml")
            except Exception as e:
                with lock:
                    figures.errors.append(f"{type(e).__name__}: {e}")
                browser.close()
                continue
            took = time.monotonic() - started
            stamp = re.search(rb'generated-at="([^"]+)"', body[:400])
            with lock:
                figures.requests += 1
                figures.megabytes += len(body) / 1e6
                figures.slowest = max(figures.slowest, took)
                figures.statuses[status] = figures.statuses.get(status, 0) + 1
                if stamp:
                    figures.generations.add(stamp.group(1).decode())
        browser.close()

    started = time.monotonic()
    errors = _in_threads(clients, visitor)
    figures.seconds = time.monotonic() - started
    figures.errors += [repr(e) for e in errors]
    return figures


# -- 2. parallel log-in guesses ------------------------------------------------------------------


@dataclass
class LoginGuesses:
    parallel: int
    names: int
    addresses: int
    attempts: int = 0
    #: answered "wrong name or password": the guess was checked against a hash
    hashed: int = 0
    #: answered 429 before any hashing
    limited: int = 0
    waves: int = 0
    others: dict[int, int] = field(default_factory=dict)
    hashed_by_name: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.attempts} guesses in {self.waves} waves of {self.parallel} on {self.names} name(s)"
            f" from {self.addresses} address(es):"
            f" {self.hashed} hashed (by name {self.hashed_by_name}), {self.limited} refused with 429,"
            f" others {self.others}"
        )


def login_guesses(
    target: WebTarget, seconds: float, parallel: int = 20, names: int = 1, addresses: int = 1, first_address: int = 0
) -> LoginGuesses:
    """Waves of ``parallel`` simultaneous wrong-password log-ins, spread over ``names`` account names
    (the first is the market's member) and ``addresses`` addresses (from ``first_address``'s
    :func:`visitor_address` on), until ``seconds`` are over."""
    figures = LoginGuesses(parallel, names, addresses)
    lock = threading.Lock()
    browsers = [target.browser(source=visitor_address(first_address + i % addresses)) for i in range(parallel)]
    for b in browsers:
        b.get("/login")  # the CSRF cookie and token every guess must carry
    targets = ["member", *(f"guess{i}" for i in range(1, names))]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:

        def guess(i, gate):
            name = targets[i % len(targets)]
            gate.wait(10)
            status, _ = browsers[i].post("/login", {"name": name, "password": f"guess {secrets.token_hex(4)}"})
            with lock:
                figures.attempts += 1
                if status == 401:
                    figures.hashed += 1
                    figures.hashed_by_name[name] = figures.hashed_by_name.get(name, 0) + 1
                elif status == 429:
                    figures.limited += 1
                else:
                    figures.others[status] = figures.others.get(status, 0) + 1

        errors = _in_threads(parallel, guess, threading.Barrier(parallel))
        if errors:
            raise errors[0]
        figures.waves += 1
        time.sleep(0.1)
    for b in browsers:
        b.close()
    return figures


# -- 3. a sign-up flood --------------------------------------------------------------------------


@dataclass
class SignupFlood:
    parallel: int
    addresses: int
    attempts: int = 0
    answered: int = 0  # the "a link is on its way" page
    limited: int = 0  # 429
    others: dict[int, int] = field(default_factory=dict)
    accounts_created: int = 0
    #: confirmation mails sent to the one victim address half the sign-ups give
    victim_mails: int = 0
    #: credits (cents) held by accounts nobody has confirmed
    unconfirmed_credits: int = 0
    #: a confirmed flood account's balance after its link was opened twice (the grant, once)
    confirmed_balance: int | None = None

    def summary(self) -> str:
        return (
            f"{self.attempts} sign-ups from {self.addresses} addresses: {self.answered} answered, {self.limited}"
            f" refused with 429, others {self.others}; {self.accounts_created} accounts created,"
            f" {self.victim_mails} mails to the victim, {self.unconfirmed_credits / 100:.2f}"
            f" credits on unconfirmed accounts; a confirmed one holds"
            f" {'-' if self.confirmed_balance is None else f'{self.confirmed_balance / 100:.2f}'}"
        )


def signup_flood(target: WebTarget, seconds: float, parallel: int = 4, addresses: int = 4) -> SignupFlood:
    """``parallel`` visitors (from ``addresses`` addresses) signing up new names as fast as they
    can, half of them with one victim's e-mail address (spelt in ways that reach the same mailbox),
    the rest with a new address each time; then the first account is confirmed twice with its
    e-mailed link."""
    figures = SignupFlood(parallel, addresses)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    counter = iter(range(10**9))

    def visitor(i):
        browser = target.browser(source=visitor_address(100 + i % addresses))
        browser.get("/signup")
        while time.monotonic() < deadline:
            with lock:
                n = next(counter)
            address = f"Victim+{n}@Example.org" if n % 2 else f"flood{n}@example.org"
            fields = {"name": f"flood{n}", "email": address, "password": "a long password", "again": "a long password"}
            status, _ = browser.post("/signup", fields)
            with lock:
                figures.attempts += 1
                if status == 200:
                    figures.answered += 1
                elif status == 429:
                    figures.limited += 1
                else:
                    figures.others[status] = figures.others.get(status, 0) + 1
        browser.close()

    errors = _in_threads(parallel, visitor)
    if errors:
        raise errors[0]
    rows = target.db.transact(
        lambda tx: tx.all("SELECT id, name, confirmed, balance FROM accounts WHERE name LIKE 'flood%' ORDER BY id")
    )
    figures.accounts_created = len(rows)
    figures.victim_mails = len(_mails(target.workdir, "victim"))
    figures.unconfirmed_credits = sum(int(r["balance"]) for r in rows if not r["confirmed"])
    link = _first_confirmation_link(target.workdir)
    if link is not None:
        name, token = link
        browser = target.browser()
        browser.get(f"/confirm/{token}")
        browser.get(f"/confirm/{token}")  # a second click must not pay twice
        browser.close()
        figures.confirmed_balance = int(
            target.db.transact(lambda tx: tx.scalar("SELECT balance FROM accounts WHERE name = ?", (name,)))
        )
    return figures


def _mails(workdir: str, to: str = "") -> list[email.message.Message]:
    """The mails in the market's outbox (oldest first) whose recipient contains ``to`` (any case)."""
    found = []
    for path in sorted(glob.glob(os.path.join(workdir, "var", "outbox", "*.eml"))):
        with open(path, "rb") as f:
            message = email.message_from_bytes(f.read())
        if to.lower() in str(message["To"]).lower():
            found.append(message)
    return found


def _first_confirmation_link(workdir: str) -> tuple[str, str] | None:
    """(account name, token) of the oldest confirmation mail in the market's outbox."""
    for message in _mails(workdir):
        body = message.get_payload(decode=True).decode("utf-8", "replace")
        found = re.search(r"Hello (\S+),.*?/confirm/(\S+)", body, re.S)
        if found:
            return found.group(1), found.group(2)
    return None


# -- 4. a test-job flood by an unmeasured client -------------------------------------------------


@dataclass
class ProbeFlood:
    parallel: int
    requests: int = 0
    test_jobs: int = 0  # leases of test jobs handed out
    refusals: dict[int, int] = field(default_factory=dict)  # Fault code -> how many
    nowork: int = 0
    messages: set[str] = field(default_factory=set)
    #: stateids of test jobs handed out and not failed (with ``fail=False``)
    kept: list[int] = field(default_factory=list)
    #: the most test jobs the client held open at once (sampled from the store)
    peak_open: int = 0
    #: the most rows of test jobs (jobs + states + leases) the store held during the attack
    peak_rows: int = 0
    #: rows of the client's test jobs left once the attack ended and the reaper ran
    rows_after: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.requests} requests on {self.parallel} connections: {self.test_jobs} test jobs,"
            f" {sum(self.refusals.values())} refused {self.refusals}, {self.nowork} nowork;"
            f" at most {self.peak_open} open at once, at most {self.peak_rows} rows; after: {self.rows_after}"
            f"{'; ' + sorted(self.messages)[0] if self.messages else ''}"
        )


def _test_rows(db, client_id: int) -> dict[str, int]:
    def work(tx):
        ids = [
            r["id"]
            for r in tx.all(
                "SELECT id FROM jobs WHERE kind = ? AND probe_client_id = ?", (JobKind.TEST.value, client_id)
            )
        ]
        out = {"jobs": len(ids), "states": 0, "leases": 0, "open": 0}
        if ids:
            marks = ", ".join("?" * len(ids))
            out["states"] = int(tx.scalar(f"SELECT COUNT(*) FROM states WHERE job_id IN ({marks})", ids))
            out["leases"] = int(tx.scalar(f"SELECT COUNT(*) FROM leases WHERE job_id IN ({marks})", ids))
            out["open"] = int(
                tx.scalar(f"SELECT COUNT(*) FROM leases WHERE status = 'out' AND job_id IN ({marks})", ids)
            )
        return out

    return db.transact(work)


def probe_flood(
    target: WebTarget, seconds: float, parallel: int = 4, fail: bool = True, settle: float = 15.0
) -> ProbeFlood:
    """The market's client, never measured, asks for work on ``parallel`` connections as fast as
    it can; with ``fail`` every test job it gets it fails at once, to ask for another (else it
    keeps them, see ``kept``). Afterwards, waits up to ``settle`` seconds for the reaper to clean
    the finished test jobs."""
    hostile = target.hostile
    figures = ProbeFlood(parallel)
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            rows = _test_rows(target.db, hostile.client_id)
            with lock:
                figures.peak_open = max(figures.peak_open, rows["open"])
                figures.peak_rows = max(figures.peak_rows, rows["jobs"] + rows["states"] + rows["leases"])
            stop.wait(0.05)

    def call(conn, method, *args):
        body = xmlrpc.client.dumps(args, method).encode()
        conn.request("POST", "/RPC2", body, {"Content-Type": "text/xml", "Authorization": hostile.client_auth()})
        response = conn.getresponse()
        return xmlrpc.client.loads(response.read())[0][0]

    def worker(i):
        conn = http.client.HTTPConnection("127.0.0.1", hostile.port, timeout=30)
        while time.monotonic() < deadline:
            try:
                answer = call(conn, "request", hostile.client_id, 5.0, {})
            except xmlrpc.client.Fault as f:
                with lock:
                    figures.requests += 1
                    figures.refusals[f.faultCode] = figures.refusals.get(f.faultCode, 0) + 1
                    figures.messages.add(f.faultString)
                continue
            with lock:
                figures.requests += 1
                if answer.get("status") == "work":
                    figures.test_jobs += 1
                else:
                    figures.nowork += 1
                    figures.messages.add(str(answer.get("message")))
            if answer.get("status") == "work" and not fail:
                with lock:
                    figures.kept.append(answer["stateid"])
            elif answer.get("status") == "work":
                try:
                    call(conn, "fail", answer["stateid"], "crash", "flooding")
                except xmlrpc.client.Fault:
                    pass
        conn.close()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        errors = _in_threads(parallel, worker)
    finally:
        stop.set()
        watcher.join(5)
    if errors:
        raise errors[0]
    give_up = time.monotonic() + settle
    while True:
        figures.rows_after = _test_rows(target.db, hostile.client_id)
        leftover = figures.rows_after["jobs"] - figures.rows_after["open"]
        if leftover <= 0 or time.monotonic() > give_up:
            break
        time.sleep(0.25)
    return figures


# -- 5. control characters in job names ----------------------------------------------------------

HOSTILE_NAMES = [
    "red \x1b[31mALERT\x1b[0m",  # colours, and moving the cursor with the next one
    "title \x1b]0;owned\x07",  # sets a terminal's window title
    "csi \x9b2J wiped",  # the 8-bit CSI: clears the screen on terminals that take C1
    "over\rwritten",  # a carriage return: the rest overwrites the line
    "bidi \u202egnp.exe",  # reads as "exe.png"
    "nul \x00 del \x7f bell \x07",
    "two\nlines\tand a tab",
]

MODULE = b"def main(n):\n    return n\n"


@dataclass
class ControlCharacters:
    form_refused: int = 0  # submissions the web form turned down (400)
    form_accepted: int = 0
    seeded: int = 0  # jobs with such names written straight into the store (names from before)
    feed_reads: int = 0
    feed_broken: list[str] = field(default_factory=list)
    page_reads: int = 0
    page_broken: list[str] = field(default_factory=list)
    status_runs: int = 0
    status_broken: list[str] = field(default_factory=list)
    #: where a control character reached a reader raw
    raw: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"form: {self.form_accepted} accepted, {self.form_refused} refused; {self.seeded} seeded;"
            f" feed {self.feed_reads} reads, {len(self.feed_broken)} broken; pages {self.page_reads} reads,"
            f" {len(self.page_broken)} broken; market status {self.status_runs} runs,"
            f" {len(self.status_broken)} broken; raw control characters shown: {self.raw[:3]}"
            f"{'; ' + self.feed_broken[0] if self.feed_broken else ''}"
            f"{'; ' + self.status_broken[0][-300:] if self.status_broken else ''}"
        )


def control_characters(target: WebTarget, seconds: float) -> ControlCharacters:
    """A member names jobs with terminal escapes, bidi overrides and characters XML 1.0 cannot carry,
    through the web form (and, as jobs from before the form refused them, straight into the
    store); then reads its Atom feed, its job pages and ``market status`` until ``seconds`` are over."""
    from lxml import etree

    from market import accounts
    from market.store import accounts as sql_accounts
    from tests import marketdata as md

    figures = ControlCharacters()
    db = target.db
    new = accounts.create_account(db, "namer", "namer@example.org", "a long password", confirm=False)
    api_token = accounts.issue_api_token(db, new.id)
    browser = target.browser()
    assert browser.log_in("namer", "a long password") == 303
    for name in HOSTILE_NAMES:
        browser.get("/submit")
        status, _ = browser.post_multipart(
            "/submit", {"function": "main", "args": "[1]", "name": name, "price": "0.01"}, {"module": ("m.py", MODULE)}
        )
        if status in (200, 303):
            figures.form_accepted += 1
        else:
            figures.form_refused += 1
    # jobs named before names were checked: XML-RPC cannot carry most C0 controls, so these are the
    # ones a member could have sent that way (C1, DEL, bidi, tab, newline)
    for name in ("rpc \x9b31m csi", "rpc del \x7f", "rpc bidi \u202eabc", "rpc\ttab\nline"):
        job_id = md.job(db, new.id, 1, name="plain")
        db.transact(lambda tx, n=name, j=job_id: tx.execute("UPDATE jobs SET name = ? WHERE id = ?", (n, j)))
        figures.seeded += 1
    status, page = browser.get("/jobs")
    feed_path = re.search(rb'href="(/feed/[^"]+)"', page)
    assert feed_path, "no feed link on /jobs"
    job_ids = [r["id"] for r in db.transact(lambda tx: tx.all("SELECT id FROM jobs WHERE account_id = ?", (new.id,)))]
    command = [*MARKET, "status", "--server", target.hostile.url, "--account", "namer"]
    environment = {**env(), "MARKET_TOKEN": api_token}
    deadline = time.monotonic() + seconds
    while True:
        status, body = browser.get(feed_path.group(1).decode())
        figures.feed_reads += 1
        try:
            if status != 200:
                raise ValueError(f"HTTP {status}")
            etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
        except Exception as e:
            figures.feed_broken.append(f"{type(e).__name__}: {e}")
        if RAW_CONTROL.search(body.decode("utf-8", "replace")):
            figures.raw.append("feed")
        for path in ["/jobs", *(f"/jobs/{i}" for i in job_ids)]:
            status, body = browser.get(path)
            figures.page_reads += 1
            if status != 200:
                figures.page_broken.append(f"{path}: HTTP {status}")
            text = body.decode("utf-8", "replace")
            # the page's own markup has newlines; what matters is what came from the names
            if RAW_CONTROL.search(text.replace("\n", "")):
                figures.raw.append(path)
        run = subprocess.run(command, capture_output=True, env=environment, timeout=60)
        figures.status_runs += 1
        out = run.stdout.decode("utf-8", "replace")
        if run.returncode != 0:
            figures.status_broken.append(run.stderr.decode("utf-8", "replace"))
        if RAW_CONTROL.search(out.replace("\n", "")) or RAW_CONTROL.search(
            run.stderr.decode("utf-8", "replace").replace("\n", "")
        ):
            figures.raw.append("market status")
        if time.monotonic() > deadline:
            break
    browser.close()
    assert db.transact(sql_accounts.account_by_name, "namer")["id"] == new.id
    return figures


def figures_of(result: Any) -> dict[str, Any]:
    """An attack's figures as a plain dict (for the benchmark's table)."""
    return {k: v for k, v in vars(result).items() if not k.startswith("_")}


# -- every attack, for a benchmark -----------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    """One attack as a benchmark runs it: the ``twistd market`` options it needs, and ``run(target,
    seconds)``, which prepares the market (seeding what it needs) and returns the figures."""

    name: str
    options: tuple[str, ...]
    run: Any


def _report_flood(target: WebTarget, seconds: float) -> ReportFlood:
    seed_report(target.db, target.hostile.account_id, target.hostile.client_id, 20_000)
    return report_flood(target, seconds)


ATTACKS = [
    Attack("20 clients flooding /report.xml", ("--report-seconds", "2"), _report_flood),
    Attack("parallel log-in guesses on one name", (), lambda t, s: login_guesses(t, s, parallel=20, addresses=20)),
    Attack("parallel log-in guesses from one address", (), lambda t, s: login_guesses(t, s, parallel=40, names=40)),
    Attack("a sign-up flood", (), signup_flood),
    Attack("an unmeasured client's test-job flood", ("--reap-interval", "0.5", "--grace", "1"), probe_flood),
    Attack("control characters in job names", (), control_characters),
]
