"""Helpers for the web tests (no tests here): the site in-process, a small cookie-keeping browser
over treq, an in-test SMTP server, and a way to make members and jobs quickly."""

from __future__ import annotations

import email
import io
import re
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pytest_twisted
from zope.interface import implementer

from tests.support import fresh_url

MODULE = (
    "def main(n):\n"
    "    total = 0\n"
    "    for i in range(n):\n"
    "        total += i\n"
    "    return total\n"
    "\n"
    "def square(x):\n"
    "    return x * x\n"
)


@dataclass
class Page:
    code: int
    headers: dict[str, list[str]]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def cookies(self) -> list[str]:
        return self.headers.get("set-cookie", [])

    def csrf(self) -> str | None:
        m = re.search(r'name="csrf" value="([^"]+)"', self.text)
        return m.group(1) if m else None


@dataclass
class Browser:
    """A browser without JavaScript: keeps cookies, follows nothing by itself, posts forms."""

    base: str
    jar: dict[str, str] = field(default_factory=dict)
    last: Page | None = None

    async def request(self, method: str, path: str, data=None, files=None, headers=None) -> Page:
        import treq

        h = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.jar.items())} if self.jar else {}
        h.update(headers or {})
        response = await treq.request(
            method, self.base + path, data=data, files=files, headers=h, allow_redirects=False, persistent=False
        )
        body = await treq.content(response)
        heads = {k.decode().lower(): [v.decode() for v in vs] for k, vs in response.headers.getAllRawHeaders()}
        page = Page(response.code, heads, body)
        for cookie in page.cookies():
            name, _, rest = cookie.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in cookie or not value:
                self.jar.pop(name, None)
            else:
                self.jar[name] = value
        self.last = page
        return page

    async def get(self, path: str, **kw) -> Page:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, fields: dict[str, str], files=None, csrf: str | None = "auto") -> Page:
        """Post a form as the browser would: with the CSRF token of the page it came from."""
        fields = dict(fields)
        if csrf == "auto":
            form_page = await self.get(
                path if path not in ("/logout", "/jobs/prices") and not path.endswith("/cancel") else "/"
            )
            csrf = form_page.csrf()
        if csrf is not None:
            fields["csrf"] = csrf
        if files:
            return await self.request("POST", path, data=fields, files=files)
        return await self.request(
            "POST", path, data=urlencode(fields).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
        )


class Outbox:
    """The site's outbox folder (no --smtp): one .eml per message."""

    def __init__(self, path):
        self.path = path

    def messages(self) -> list[email.message.Message]:
        if not self.path.exists():
            return []
        return [email.message_from_bytes(p.read_bytes()) for p in sorted(self.path.iterdir())]

    def link(self, to: str) -> str | None:
        for msg in reversed(self.messages()):
            if msg["To"] == to:
                m = re.search(r"https?://\S+/confirm/\S+", msg.get_payload(decode=True).decode())
                if m:
                    return m.group(0)
        return None


@dataclass
class WebMarket:
    browser: Browser
    db: object
    web: object
    outbox: Outbox
    base: str

    def new_browser(self) -> Browser:
        return Browser(self.base)

    async def member(self, name: str, password: str = "correct horse", browser: Browser | None = None) -> Browser:
        """A confirmed, logged-in member (made directly in the store, fast)."""
        from market import accounts

        accounts.create_account(self.db, name, f"{name}@example.org", password, confirm=False)
        b = browser or self.new_browser()
        page = await b.post("/login", {"name": name, "password": password})
        assert page.code == 303, page.text
        return b

    def account_id(self, name: str) -> int:
        from market.store import accounts as sql

        return self.db.transact(sql.account_by_name, name)["id"]


def sqlite_db(tmp_path):
    from market.store import Database, upgrade

    db = Database(fresh_url("sqlite", tmp_path, None))
    upgrade(db)
    return db


class Serving:
    """The site's listening port and its helper pool: stopping it stops both."""

    def __init__(self, port, pool):
        self.port, self.pool = port, pool

    def getHost(self):
        return self.port.getHost()

    async def stopListening(self):
        await self.port.stopListening()
        await self.pool.stopService()


async def start_site(db, tmp_path, throttle=None, max_body=None, relay=None, offload=None, **web_options):
    """The site on 127.0.0.1:<free port> in this process, with its own helper pool (one helper
    unless ``offload`` settings say otherwise); returns (WebMarket, a :class:`Serving` to stop).
    ``web_options`` go to ``Web`` (``settings``, ``signups``, ``reports``, ``clock``...)."""
    from twisted.internet import reactor

    from market.offload.pool import HelperPool
    from market.settings import OffloadSettings
    from market.web.context import MAX_BODY, Web
    from market.web.mail import Mailer
    from market.web.site import make_web_site

    pool = HelperPool(offload or OffloadSettings(helpers=1), reactor)
    pool.startService()
    outbox = tmp_path / f"outbox-{uuid.uuid4().hex[:6]}"
    clock = web_options.pop("clock", reactor)
    web = Web(db, clock, Mailer(relay, str(outbox)), throttle=throttle, offload=pool, **web_options)
    site = make_web_site(web, max_body or MAX_BODY)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    base = f"http://127.0.0.1:{port.getHost().port}"
    return WebMarket(Browser(base), db, web, Outbox(outbox), base), Serving(port, pool)


@pytest_twisted.async_yield_fixture
async def market(tmp_path):
    """The web site over a fresh SQLite market, served in-process."""
    db = sqlite_db(tmp_path)
    wm, port = await start_site(db, tmp_path)
    yield wm
    await port.stopListening()
    wm.web.reports.close()  # the report files' temporary folder
    db.close()


def upload(source: str, filename: str = "job.py"):
    return {"module": (filename, "text/x-python", io.BytesIO(source.encode()))}


def make_job(
    db, account_id: int, name: str = "job", price: int = 100, source: str = MODULE, entry: str = "main", args=(10,)
) -> int:
    """A ready job with a real state #0 (as the site would create it)."""
    from market.jobs import submission

    return db.transact(submission.submit, account_id, submission.prepare(source, entry, args), name, price, time.time())


def finish_job(db, job_id: int, value) -> None:
    """Mark a job finished with ``value`` as its result (a worker's ``result`` without a worker)."""
    from market.tasklet import codec

    def work(tx):
        tx.execute(
            "UPDATE jobs SET status = 'finished', finished_at = ?, outcome = 'finished', result = ?,"
            " progress = 1.0 WHERE id = ?",
            (time.time(), codec.encode(value), job_id),
        )

    db.transact(work)


# -- an SMTP server for tests ------------------------------------------------------------------


class Mailbox:
    """Messages received by the in-test SMTP server, with a Deferred-free wait for threads."""

    def __init__(self):
        import queue

        self.messages: list[bytes] = []
        self.queue = queue.Queue()

    def add(self, data: bytes) -> None:
        self.messages.append(data)
        self.queue.put(data)


def smtp_server(mailbox: Mailbox):
    """(factory) an SMTP server delivering every message to ``mailbox``."""
    from twisted.internet import defer
    from twisted.mail import smtp

    @implementer(smtp.IMessage)
    class Message:
        def __init__(self):
            self.lines = []

        def lineReceived(self, line):
            self.lines.append(line)

        def eomReceived(self):
            mailbox.add(b"\n".join(self.lines))
            return defer.succeed(None)

        def connectionLost(self):
            self.lines = []

    @implementer(smtp.IMessageDelivery)
    class Delivery:
        def receivedHeader(self, helo, origin, recipients):
            return b"Received: by the test server"

        def validateFrom(self, helo, origin):
            return origin

        def validateTo(self, user):
            return Message

    class Factory(smtp.SMTPFactory):
        domain = "localhost"

        def buildProtocol(self, addr):
            p = super().buildProtocol(addr)
            p.delivery = Delivery()
            return p

    return Factory()


def confirmation_link(data: bytes) -> str | None:
    msg = email.message_from_bytes(data)
    m = re.search(r"https?://\S+/confirm/\S+", msg.get_payload(decode=True).decode())
    return m.group(0) if m else None
