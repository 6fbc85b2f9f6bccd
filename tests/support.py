"""Real parts for tests: a fresh MariaDB database or SQLite file per test, and the CI rule.

In CI (``CI=true``) a missing real part (MariaDB, bwrap, Chromium, PyPy) is a failure, never a
skip: :func:`need` fails there and skips elsewhere.
"""

from __future__ import annotations

import os
import shutil
import uuid

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"
MYSQL_SERVER = os.environ.get("MARKET_TEST_MYSQL", "mysql://root@127.0.0.1:3306")


def need(condition: bool, what: str) -> None:
    """Require a real part: fail in CI, skip elsewhere."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI (CI=true) and is missing", pytrace=False)
    pytest.skip(f"{what} is not available here")


def need_program(name: str) -> str:
    path = shutil.which(name)
    need(path is not None, f"the program {name!r}")
    return path


def _mysql_params():
    from market.store.dburl import parse

    u = parse(MYSQL_SERVER.rstrip("/") + "/x")
    return dict(host=u.host, port=u.port, user=u.user, password=u.password)


def mysql_reachable() -> bool:
    import pymysql

    try:
        pymysql.connect(connect_timeout=3, **_mysql_params()).close()
        return True
    except Exception:
        return False


class MySQLDatabases:
    """Creates throw-away databases on the test MariaDB server and drops them afterwards."""

    def __init__(self):
        self.names = []

    def create(self) -> str:
        import pymysql

        name = "mkt_" + uuid.uuid4().hex[:16]
        conn = pymysql.connect(connect_timeout=3, **_mysql_params())
        try:
            with conn.cursor() as c:
                c.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        finally:
            conn.close()
        self.names.append(name)
        return MYSQL_SERVER.rstrip("/") + "/" + name

    def drop_all(self) -> None:
        import pymysql

        if not self.names:
            return
        conn = pymysql.connect(connect_timeout=3, **_mysql_params())
        try:
            with conn.cursor() as c:
                for name in self.names:
                    c.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            conn.close()
        self.names = []


def fresh_url(backend: str, tmp_path, mysql: MySQLDatabases) -> str:
    if backend == "sqlite":
        return f"sqlite:{tmp_path}/market-{uuid.uuid4().hex[:8]}.sqlite"
    need(mysql_reachable(), f"MariaDB at {MYSQL_SERVER}")
    return mysql.create()


def page_wait(condition, what, timeout: float = 20.0, pause: float = 0.1):
    """Poll ``condition`` (a browser check) until it gives something true, and return that.

    A page that a form's answer, a reload or a live update is replacing can hand the check an
    element that goes away before it is read (Chromium: a stale element, or "node does not belong
    to the document"): that is "not there yet", not a failure; the last such error is named if the
    wait times out. ``what`` says what was awaited (a string, or a function giving one, called only
    on the time-out)."""
    import time

    from selenium.common.exceptions import WebDriverException

    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = condition()
        except WebDriverException as exc:  # (StaleElementReferenceException is one)
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= deadline:
            waited = what() if callable(what) else what
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {waited}" + (f" (last: {last})" if last else "")
            )
        time.sleep(pause)
