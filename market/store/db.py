"""Transactions over either backend: synchronously (CLI, tests) or off the reactor (servers).

A unit of work is a plain function ``work(tx, *args)`` that issues SQL through :class:`Tx`.
:meth:`Database.transact` runs it in one transaction on the calling thread;
:meth:`Database.run` runs it through ``twisted.enterprise.adbapi`` and returns a Deferred.
Both retry once after a dropped connection and a few times after a deadlock, because MariaDB
fails the next query once after it drops a connection even with ``cp_reconnect``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from market.core.errors import Conflict, DatabaseUnavailable
from market.store import dburl
from market.store.dialect import Dialect, Many, dialect_for, rows_of  # noqa: F401 (Many: re-exported for scripts)

if TYPE_CHECKING:
    from twisted.enterprise import adbapi

RETRIES = 3


class Tx:
    """One open transaction: SQL with ``?`` placeholders, rows as dicts."""

    def __init__(self, cursor, dialect: Dialect):
        self.cursor = cursor
        self.dialect = dialect

    @property
    def for_update(self) -> str:
        return self.dialect.for_update

    def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self.dialect.sql(sql), tuple(params))
        return self.cursor.rowcount

    def script(self, statements: Sequence[Any]) -> list[list[dict[str, Any]] | None]:
        """Several statements, ``(sql, params)`` or :class:`Many`, in one round trip on MariaDB;
        returns each one's rows (None for a statement that returns none). For the hot paths of
        the dispatcher, where round trips, not statements, are what costs."""
        return self.dialect.script(self.cursor, statements)

    def insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        self.cursor.execute(self.dialect.sql(sql), tuple(params))
        return int(self.cursor.lastrowid)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.cursor.execute(self.dialect.sql(sql), tuple(params))
        return rows_of(self.cursor) or []

    def one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        self.cursor.execute(self.dialect.sql(sql), tuple(params))
        row = self.cursor.fetchone()
        if row is None:
            return None
        names = [d[0] for d in self.cursor.description]
        # drain anything left so the connection is clean for the next statement
        self.cursor.fetchall()
        return dict(zip(names, row))

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.cursor.execute(self.dialect.sql(sql), tuple(params))
        row = self.cursor.fetchone()
        self.cursor.fetchall()
        return None if row is None else row[0]


def marks(n: int) -> str:
    """``(?, ?, ?)`` for an ``IN`` list of ``n`` values (n >= 1)."""
    if n < 1:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join("?" * n) + ")"


def case(key: str, values: dict[Any, Any], otherwise: str = "NULL") -> tuple[str, list[Any]]:
    """``CASE key WHEN ? THEN ? ... ELSE otherwise END`` and its parameters: one statement sets a
    different value on each of many rows (set-based updates, see ``jobs.checkin_many``)."""
    params: list[Any] = []
    for k, v in values.items():
        params += (k, v)
    return f"CASE {key}" + " WHEN ? THEN ?" * len(values) + f" ELSE {otherwise} END", params


class Database:
    """A database named by URL. Thread-safe for :meth:`transact`; :meth:`run` needs a reactor."""

    def __init__(self, url: str | None = None):
        self.url = dburl.parse(url or dburl.default_url())
        self.dialect = dialect_for(self.url)
        self._local = threading.local()
        self._pool: adbapi.ConnectionPool | None = None  # opened by run() or start()
        self._sync_lock = threading.Lock() if self.url.kind == "sqlite" else None

    # -- synchronous -----------------------------------------------------------------------
    def _connection(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.dialect.connect()
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            try:
                conn.close()
            except Exception:
                pass

    def transact(self, work: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        """Run ``work(tx, *args)`` in one transaction on this thread and return its result."""
        for attempt in range(RETRIES):
            conn = self._connection()
            try:
                return self._in_transaction(conn, work, *args, **kw)
            except Exception as e:
                if self.dialect.is_retryable(e) and attempt < RETRIES - 1:
                    self._drop_connection()
                    continue
                raise self._translate(e) from e

    def _in_transaction(self, conn, work, *args, **kw):
        cursor = conn.cursor()
        try:
            self.dialect.begin(cursor)
            result = work(Tx(cursor, self.dialect), *args, **kw)
            conn.commit()
            return result
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                pass  # a dead connection: the caller's retry (or adbapi's cp_reconnect) replaces it
            raise
        finally:
            try:
                cursor.close()
            except Exception:
                pass

    def _translate(self, e: Exception) -> Exception:
        if self.dialect.is_integrity_error(e):
            return Conflict(f"that would duplicate or break a stored record ({e})")
        if isinstance(e, DatabaseUnavailable) or not hasattr(e, "args"):
            return e
        mod = type(e).__module__
        if mod.startswith(("pymysql", "sqlite3")) and type(e).__name__ == "OperationalError":
            return DatabaseUnavailable(f"database error on {self.url.redacted()}: {e}")
        return e

    def close(self) -> None:
        self._drop_connection()
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    # -- asynchronous ----------------------------------------------------------------------
    def run(self, work: Callable[..., Any], *args: Any, **kw: Any):
        """Run ``work(tx, *args)`` in one transaction in the adbapi thread pool -> Deferred."""
        from twisted.internet import defer

        if self._pool is None:
            from twisted.enterprise import adbapi

            pargs, pkw = self.dialect.pool_args()
            self._pool = adbapi.ConnectionPool(*pargs, **pkw)

        @defer.inlineCallbacks
        def attempt():
            for n in range(RETRIES):
                pool = self._pool
                if pool is None:  # close() ran while this transaction waited to try again
                    raise DatabaseUnavailable(f"the database {self.url.redacted()} was closed")
                try:
                    result = yield pool.runWithConnection(self._in_transaction, work, *args, **kw)
                    return result
                except Exception as e:
                    if self.dialect.is_retryable(e) and n < RETRIES - 1:
                        continue
                    raise self._translate(e) from e

        return attempt()

    def start(self) -> None:
        """Open the adbapi pool now (a server calls this at start-up)."""
        if self._pool is not None:
            self._pool.start()
