"""The site's notifier: e-mail on finish or failure, for the members who asked (opt-in).

A bounded background loop, never in a transaction's way nor on the reactor's: every
``interval`` seconds one short transaction (in the database's thread pool) claims at most
``limit`` ended jobs (``market.store.notices.claim``, each job and batch once), then the mails
are handed to the site's mailer, whose sending is asynchronous and never fails the loop. A claim
comes before its mail, so a job is mailed at most once (a crash between the two loses a mail,
never doubles one).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, task
from twisted.logger import Logger

from market.core import notices
from market.store import notices as sql_notices

log = Logger()


class Notifier:
    """Claims ended jobs and mails their owners, every ``interval`` seconds on ``clock``."""

    def __init__(self, db, mailer, clock, base_url: str | None = None, interval: float = 5.0, limit: int = 100):
        self.db, self.mailer, self.clock = db, mailer, clock
        self.base_url, self.interval, self.limit = base_url, interval, limit
        self._loop: task.LoopingCall | None = None
        self.sent = 0  # mails handed to the mailer (for operators and tests)

    def start(self) -> None:
        if self._loop is None:
            self._loop = task.LoopingCall(self.pass_once)
            self._loop.clock = self.clock
            self._loop.start(self.interval, now=False).addErrback(lambda f: log.failure("the notifier stopped", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    @defer.inlineCallbacks
    def pass_once(self):
        """One pass: claim, then send what was claimed; a failing database is logged, and the loop goes on."""
        try:
            claimed: list[dict[str, Any]] = yield self.db.run(sql_notices.claim, self.limit)
        except Exception:
            log.failure("could not read the ended jobs to mail about")
            return 0
        for n in claimed:
            if n["kind"] == "job":
                subject, body = notices.job_notice(n["job"], self.base_url)
            else:
                subject, body = notices.batch_notice(n["batch"], n["counts"], self.base_url)
            self.mailer.send(n["to"], subject, body)  # asynchronous; its failures are logged by the mailer
            self.sent += 1
        return len(claimed)
