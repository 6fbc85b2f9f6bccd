"""Transactions over either backend: synchronously (CLI, tests) or off the reactor (servers).

A unit of work is a plain function ``work(tx, *args)`` that issues SQL through :class:`Tx`.
:meth:`Database.transact` runs it in one transaction on the calling thread;
:meth:`Database.run` runs it through ``twisted.enterprise.adbapi`` and returns a Deferred.
Both retry once after a dropped connection and a few times after a deadlock, because MariaDB
fails the next query once after it drops a connection even with ``cp_reconnect``.

A database that stops answering (frozen, or a network partition) is bounded, not waited on: every
MariaDB connection has connect, read and write timeouts (``dburl.TIMEOUTS``), a timed-out call is
not retried and fails with DatabaseUnavailable (Fault 9); from then until a probe on a connection
of its own gets an answer, calls fail at once instead of queueing behind the pool's threads, and a
call that waited in the queue longer than the read timeout fails without trying.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from market.core.errors import Conflict, DatabaseUnavailable
from market.store import dburl
from market.store.dialect import Dialect, Many, dialect_for, rows_of  # noqa: F401 (Many: re-exported for scripts)

if TYPE_CHECKING:
    from twisted.enterprise import adbapi

RETRIES = 3
#: seconds between two probes of a database that stopped answering
PROBE_PAUSE = 0.5


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
        # set while the database is not answering (a call timed out): one call at a time tries it
        self._stalled_since: float | None = None
        self._guard = threading.Lock()

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
        if self.dialect.is_timeout(e):
            return DatabaseUnavailable(
                f"the database {self.url.redacted()} did not answer within its timeout"
                f" (connect {self.url.connect_timeout:g} s, read {self.url.read_timeout:g} s) — try again shortly"
            )
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
        from twisted.internet import defer, threads

        if self._pool is None:
            from twisted.enterprise import adbapi

            pargs, pkw = self.dialect.pool_args()
            self._pool = adbapi.ConnectionPool(*pargs, **pkw)

        from twisted.internet import reactor

        queued = time.monotonic()

        @defer.inlineCallbacks
        def attempt():
            for n in range(RETRIES):
                pool = self._pool
                if pool is None:  # close() ran while this transaction waited to try again
                    raise DatabaseUnavailable(f"the database {self.url.redacted()} was closed")
                try:
                    result = yield threads.deferToThreadPool(
                        reactor,  # type: ignore[arg-type]
                        pool.threadpool,
                        self._in_pool,
                        pool,
                        queued,
                        work,
                        *args,
                        **kw,
                    )
                    return result
                except Exception as e:
                    if self.dialect.is_retryable(e) and n < RETRIES - 1:
                        continue
                    raise self._translate(e) from e

        return attempt()

    def _in_pool(self, pool, queued: float, work, *args, **kw):
        """One try of a transaction on a pool thread, with this thread's connection (opened here,
        within the connect timeout); a connection that timed out or died is closed and forgotten."""
        self._admit(queued)
        try:
            conn = pool.connect()
            try:
                return self._in_transaction(conn, work, *args, **kw)
            except Exception as e:
                if self.dialect.is_dead(e):
                    try:
                        pool.disconnect(conn)
                    except Exception:
                        pass
                raise
        except Exception as e:
            if self.dialect.is_timeout(e):
                self._stalled()
            raise

    def _admit(self, queued: float) -> None:
        """Refuse at once a call that comes while the database is not answering (a call timed out
        and the prober has not reached it since), or that waited in the queue longer than the read
        timeout: neither would get an answer sooner by waiting on a pool thread."""
        stalled = self._stalled_since
        if stalled is not None:
            raise DatabaseUnavailable(
                f"the database {self.url.redacted()} has not answered for"
                f" {time.monotonic() - stalled:.0f} s — try again shortly"
            )
        waited = time.monotonic() - queued
        if waited > self.url.read_timeout:
            raise DatabaseUnavailable(
                f"the database {self.url.redacted()} is too slow: this call waited {waited:.0f} s for a"
                " connection — try again shortly"
            )

    def _stalled(self) -> None:
        """A call timed out: refuse calls until a probe on a connection of its own gets an answer."""
        with self._guard:
            if self._stalled_since is not None:
                return
            self._stalled_since = time.monotonic()
        threading.Thread(target=self._probe, name="market-db-probe", daemon=True).start()

    def _probe(self) -> None:
        """Until the database answers (each try bounded by the connect and read timeouts), or
        until the pool closes; then calls are let through again."""
        while self._pool is not None:
            try:
                conn = self.dialect.connect()
                try:
                    cursor = conn.cursor()
                    cursor.execute("SELECT 1")
                    cursor.fetchall()
                finally:
                    conn.close()
            except Exception:
                time.sleep(PROBE_PAUSE)
                continue
            break
        with self._guard:
            self._stalled_since = None

    @property
    def stalled(self) -> bool:
        """Whether calls are refused at once because the database stopped answering."""
        return self._stalled_since is not None

    def start(self) -> None:
        """Open the adbapi pool now (a server calls this at start-up)."""
        if self._pool is not None:
            self._pool.start()
