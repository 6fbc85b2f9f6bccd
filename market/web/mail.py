"""Sending the site's e-mails: through an SMTP relay, or into an outbox folder on a first run.

Without ``--smtp`` every message becomes one ``.eml`` file in the outbox folder and its first
link is logged, so an operator can confirm the first accounts before any mail relay exists.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from twisted.internet import defer
from twisted.logger import Logger

log = Logger()

_LINK = re.compile(r"https?://\S+")


def parse_relay(value: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (or just ``HOST``, port 25) -> (host, port)."""
    host, _, port = value.rpartition(":") if ":" in value else (value, "", "25")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--smtp must look like HOST:PORT, e.g. localhost:25 — got {value!r}")
    return host, int(port)


class Mailer:
    """Sends plain-text messages from ``sender``; ``send`` returns a Deferred that never fails.

    A failed delivery is logged, not raised: the page a visitor sees must not depend on whether
    (or where) mail went, or it would reveal which accounts exist.
    """

    def __init__(self, relay: str | None, outbox: str, sender: str = "market@localhost", reactor=None):
        self.relay = parse_relay(relay) if relay else None
        self.outbox = outbox
        self.sender = sender
        self.reactor = reactor

    def message(self, to: str, subject: str, body: str) -> bytes:
        msg = EmailMessage()
        msg["From"] = f"Market Dispatcher <{self.sender}>"
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or "localhost")
        msg.set_content(body)
        return msg.as_bytes()

    def send(self, to: str, subject: str, body: str) -> defer.Deferred:
        """Send (or file) one message; fires with True when it was handed over, False otherwise."""
        data = self.message(to, subject, body)
        if self.relay is None:
            return defer.succeed(self._file(to, subject, body, data))
        from twisted.mail.smtp import sendmail

        host, port = self.relay
        # requireTransportSecurity=False: STARTTLS is used when the relay offers it, as local relays often do not
        extra = {"reactor": self.reactor} if self.reactor is not None else {}
        d = sendmail(host, self.sender, [to], data, port=port, requireTransportSecurity=False, **extra)
        d.addCallback(lambda _: True)

        def failed(failure):
            log.warn(
                "could not send mail to {to} through {host}:{port}: {why}",
                to=to,
                host=host,
                port=port,
                why=failure.getErrorMessage(),
            )
            return False

        return d.addErrback(failed)

    def _file(self, to: str, subject: str, body: str, data: bytes) -> bool:
        try:
            os.makedirs(self.outbox, mode=0o700, exist_ok=True)
            name = f"{time.time():.6f}-{secrets.token_hex(4)}.eml"
            # 0600: confirmation links are secrets until used
            fd = os.open(os.path.join(self.outbox, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as e:
            log.error("could not write mail to the outbox {outbox}: {why}", outbox=self.outbox, why=e.strerror)
            return False
        link = _LINK.search(body)
        log.info(
            "no --smtp relay: mail to {to} ({subject}) is in {outbox}/{name}{link}",
            to=to,
            subject=subject,
            outbox=self.outbox,
            name=name,
            link=f"; its link: {link.group(0)}" if link else "",
        )
        return True
