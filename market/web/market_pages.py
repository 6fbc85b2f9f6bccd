"""Clients (spec 5d), balance and ledger, the XML report (spec 5f) and its schema, the stylesheet."""

from __future__ import annotations

import os
import shlex

from twisted.internet.threads import deferToThread
from twisted.protocols.basic import FileSender

from market import accounts
from market.core.errors import MarketError, NotFound
from market.store import accounts as sql_accounts
from market.store import clients as sql_clients
from market.store import statements as sql_statements
from market.store import web as sql_web
from market.web.context import Pages, field
from market.web.render import STATIC


def worker_command(server: str, client_id: int, token: str) -> str:
    """The exact command that starts a worker for this client; the token goes in the environment,
    not the arguments, which every user of the machine sees in ``ps``."""
    return " ".join(
        [
            f"MARKET_CLIENT_TOKEN={shlex.quote(token)}",
            "twistd",
            "-n",
            "worker",
            "--server",
            shlex.quote(server),
            "--client",
            str(client_id),
        ]
    )


class _ReportSender(FileSender):
    # 64 KiB a write rather than 16: a report is megabytes, and twenty visitors fetching it at once
    # cost the reactor a quarter of the turns
    CHUNK_SIZE = 2**16


class MarketPages(Pages):
    """Clients, balance and ledger, the report and its schema, the stylesheet."""

    async def _clients_page(self, request, visitor, code=200, name="", error=None, new=None, notice=None):
        rows = await self.web.db.run(sql_clients.list_clients, visitor.account_id)
        speeds = await self.web.db.run(sql_web.client_speeds, visitor.account_id)
        return self.web.render(
            request,
            "clients.html",
            visitor,
            code,
            clients=rows,
            speeds=speeds,
            name=name,
            error=error,
            new=new,
            notice=notice,
        )

    async def clients(self, request, visitor):
        return await self._clients_page(request, visitor)

    async def register(self, request, visitor):
        name = field(request, "name", limit=64).strip().lower()
        try:
            # runs in a thread: register_client is synchronous (it hashes the token and writes)
            new = await deferToThread(
                accounts.register_client, self.web.db, visitor.account_id, name, self.web.clock.seconds()
            )
        except MarketError as e:
            return await self._clients_page(request, visitor, 400, name=name, error=str(e))
        shown = {
            "id": new.id,
            "name": new.name,
            "token": new.token,
            "command": worker_command(self.web.rpc_url(request), new.id, new.token),
        }
        return await self._clients_page(request, visitor, new=shown)

    async def revoke(self, request, visitor, client_id):
        """A member revokes one of their clients: its token is refused at once; its open leases expire."""
        try:
            row = await self.web.db.run(
                sql_clients.revoke_client, client_id, self.web.clock.seconds(), visitor.account_id
            )
        except MarketError as e:
            return await self._clients_page(request, visitor, 404 if isinstance(e, NotFound) else 409, error=str(e))
        accounts.credentials_changed()
        return await self._clients_page(request, visitor, notice=f"The client “{row['name']}” is revoked.")

    async def client(self, request, visitor, client_id):
        row = await self.web.db.run(sql_web.owned_client, visitor.account_id, client_id)
        return self.web.render(request, "client.html", visitor, client=row)

    async def ledger(self, request, visitor):
        balance = await self.web.db.run(sql_accounts.balance, visitor.account_id)
        rows = await self.web.db.run(sql_accounts.history, visitor.account_id, 200)
        return self.web.render(request, "ledger.html", visitor, balance=balance, entries=rows)

    async def statement(self, request, visitor):
        """The visitor's own money per job, batch, client or day over a date range
        (``market.store.statements``, what ``market statement`` prints); a bad range is a 400
        with the form and the reason."""
        by = field(request, "by", "job", limit=16)
        since, until = field(request, "since", limit=10).strip(), field(request, "until", limit=10).strip()
        try:
            start, end = sql_statements.parse_range(since or None, until or None, self.web.clock.seconds())
            answer = await self.web.db.run(sql_statements.statement, visitor.account_id, by, start, end)
        except MarketError as e:
            return self.web.render(
                request, "statement.html", visitor, 400, by=by, since=since, until=until, error=str(e), answer=None
            )
        return self.web.render(
            request, "statement.html", visitor, by=by, since=since, until=until, error=None, answer=answer
        )

    async def report_page(self, request, visitor):
        return self.web.render(request, "report.html", visitor)

    async def report_xml(self, request, visitor):
        # members get their own jobs and clients linked to them; anyone else the anonymous report.
        # Each is a file rebuilt at most every report-seconds, one build at a time (web.reports).
        report = await self.web.reports.open(visitor.name)
        try:
            request.setHeader(b"Content-Type", b"application/xml; charset=utf-8")
            request.setHeader(b"Content-Disposition", b'attachment; filename="market-report.xml"')
            request.setHeader(b"Cache-Control", b"no-store")
            request.setHeader(b"X-Content-Type-Options", b"nosniff")
            request.setHeader(b"Content-Length", str(os.fstat(report.fileno()).st_size).encode())
            try:
                await _ReportSender().beginFileTransfer(report, request)
            except Exception:
                return b""  # the visitor went away in the middle: nobody to answer
        finally:
            report.close()
        return b""

    async def schema(self, request):
        from market import report

        with open(report.schema_path(), "rb") as f:
            data = f.read()
        request.setHeader(b"Content-Type", b"application/xml; charset=utf-8")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        return data

    async def script(self, request):
        """The site's one script: the job page's live parts (``static/live.js``)."""
        with open(os.path.join(STATIC, "live.js"), "rb") as f:
            data = f.read()
        request.setHeader(b"Content-Type", b"text/javascript; charset=utf-8")
        request.setHeader(b"Cache-Control", b"max-age=3600")
        return data

    async def stylesheet(self, request):
        with open(os.path.join(STATIC, "style.css"), "rb") as f:
            data = f.read()
        request.setHeader(b"Content-Type", b"text/css; charset=utf-8")
        request.setHeader(b"Cache-Control", b"max-age=3600")
        return data
