"""The XML report as files: each requester's rebuilt at most every ``max_age`` seconds, one build at a time.

Building the report reads every client, job and lease of the market; doing it for every request
let twenty visitors keep ten threads building at once and slow everyone else's calls past a
second. Here each requester's report (the anonymous one, and each member's, whose own jobs and
clients carry their name) is a file. A request gets that file while it is younger than
``max_age``; an older one is rebuilt once, in a thread, behind every other build (one build runs
at a time); meanwhile requests get the previous file, or, when there is none yet, wait for the
build. At most ``max_files`` members' files are kept: the least recently fetched goes first.

On disk there are at most ``max_files`` + 2 reports (the members', the anonymous one, one being
built), in a private temporary folder removed by :meth:`ReportFiles.close`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from twisted.internet import defer
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

log = Logger()


def write_report(db, requester: str | None, path: str) -> None:
    """Build ``requester``'s report (None: anonymous) into the file ``path`` (runs in a thread)."""
    from market import report

    report.write_report(db, path, requester)


@dataclass
class _Report:
    """One requester's report: its file, when it was built, the build under way and who waits for it."""

    path: str | None = None
    built_at: float = 0.0
    building: defer.Deferred | None = None
    waiters: list[defer.Deferred] = field(default_factory=list)


def _remove(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class ReportFiles:
    """Report files by requester (None is the anonymous report); see the module's docstring."""

    def __init__(
        self,
        db,
        clock,
        max_age: float = 60.0,
        max_files: int = 100,
        directory: str | None = None,
        build: Callable[[Any, str | None, str], None] = write_report,
    ):
        self.db = db
        self.clock = clock
        self.max_age = max_age
        self.max_files = max_files
        self.build = build
        #: how many reports were built (for the logs and the tests)
        self.builds = 0
        self._directory = directory
        self._own_directory = directory is None
        self._reports: OrderedDict[str | None, _Report] = OrderedDict()  # least recently fetched first
        self._one_at_a_time = defer.DeferredLock()
        self._serial = itertools.count(1)

    def directory(self) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="market-reports-")
        return self._directory

    async def open(self, requester: str | None) -> BinaryIO:
        """An open file holding ``requester``'s report, at most ``max_age`` seconds old — or, while
        a newer one is being built, the previous one. The caller closes it."""
        report = self._report(requester)
        if report.path is None or self.clock.seconds() - report.built_at >= self.max_age:
            if report.building is None:
                report.building = self._rebuild(requester, report)
            if report.path is None:
                waiter: defer.Deferred = defer.Deferred()
                report.waiters.append(waiter)
                await waiter  # fires right after the build, before anything can replace the file
        assert report.path is not None
        # opened on the reactor thread at once: a later rebuild may unlink the path, never this open file
        return open(report.path, "rb")

    def _report(self, requester: str | None) -> _Report:
        report = self._reports.get(requester)
        if report is not None:
            self._reports.move_to_end(requester)
            return report
        report = self._reports[requester] = _Report()
        members = [r for r in self._reports if r is not None]
        for name in members[: max(0, len(members) - self.max_files)]:
            self._evict(name)
        return report

    def _evict(self, requester: str | None) -> None:
        report = self._reports.pop(requester)
        if report.building is None:
            _remove(report.path)
        # else: the build sees it is no longer kept, serves its waiters and removes both files

    def _rebuild(self, requester: str | None, report: _Report) -> defer.Deferred:
        path = os.path.join(self.directory(), f"report-{next(self._serial)}.xml")
        d = self._one_at_a_time.run(deferToThread, self.build, self.db, requester, path)

        def built(_):
            self.builds += 1
            old, report.path, report.built_at, report.building = report.path, path, self.clock.seconds(), None
            waiters, report.waiters = report.waiters, []
            for waiter in waiters:
                if not waiter.called:  # a visitor who left while waiting was cancelled
                    waiter.callback(None)  # each opens the new file now
            _remove(old)  # whoever is still sending the old file keeps its open copy
            if self._reports.get(requester) is not report:
                _remove(path)  # evicted while it was built

        def failed(failure):
            report.building = None
            _remove(path)
            waiters = [w for w in report.waiters if not w.called]  # those still there
            report.waiters = []
            if not waiters:
                log.failure("could not rebuild the report for {requester}", failure, requester=requester or "anyone")
            for waiter in waiters:
                waiter.errback(failure)

        return d.addCallbacks(built, failed)

    def __len__(self) -> int:
        """How many requesters have a report (or one being built)."""
        return len(self._reports)

    def close(self) -> None:
        """Remove the files (and the folder, if this object made it)."""
        for report in self._reports.values():
            _remove(report.path)
        self._reports.clear()
        if self._own_directory and self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None
