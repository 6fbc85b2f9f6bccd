"""The small differences between SQLite and MariaDB/MySQL, in one object.

Everything else in the store is one code path: SQL is written with ``?`` placeholders and the
``{blob}``/``{pk}``-style type names below, and the dialect rewrites it.
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from market.core.errors import DatabaseUnavailable, MarketError
from market.store.dburl import DatabaseURL


class Dialect(ABC):
    name = "?"
    types: dict[str, str] = {}
    #: appended to a SELECT that reads rows the transaction will change
    for_update = ""
    #: errors after which a transaction is retried once (dropped connection) or a few times (deadlock)
    retry_codes: frozenset[int] = frozenset()

    @abstractmethod
    def connect(self) -> Any:
        """A new DB-API connection, prepared for the store."""

    @abstractmethod
    def pool_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments of ``adbapi.ConnectionPool`` for this database."""

    @abstractmethod
    def is_retryable(self, error: BaseException) -> bool:
        """Whether a transaction that failed with ``error`` is worth another try."""

    @abstractmethod
    def is_integrity_error(self, error: BaseException) -> bool:
        """Whether ``error`` is a broken unique or foreign key."""

    def is_timeout(self, error: BaseException) -> bool:
        """Whether the database did not answer within a connect, read or write timeout: never
        retried (a frozen database would make every retry wait as long again)."""
        return False

    def is_dead(self, error: BaseException) -> bool:
        """Whether the connection that raised ``error`` is unusable and must be replaced."""
        return False

    def sql(self, text: str) -> str:
        return text

    def ddl(self, text: str) -> str:
        return text.format(**self.types)

    @abstractmethod
    def begin(self, cursor) -> None:
        """Start a transaction on ``cursor`` (or leave it to the first statement)."""

    def drop_index(self, name: str, table: str) -> str:
        return f"DROP INDEX {name}"

    def script(self, cursor, statements: Sequence[Any]) -> list[list[dict[str, Any]] | None]:
        """Run statements in order; each one's rows (None if it returns none). One by one here:
        an embedded database has no round trips to save."""
        results: list[list[dict[str, Any]] | None] = []
        for statement in statements:
            if isinstance(statement, Many):
                if statement.rows:
                    cursor.executemany(self.sql(statement.sql), [tuple(r) for r in statement.rows])
                results.append(None)
                continue
            sql, params = statement
            cursor.execute(self.sql(sql), tuple(params))
            results.append(rows_of(cursor))
        return results


class Many:
    """``INSERT ... VALUES (?, ...)`` for many rows, as one statement of a script."""

    def __init__(self, sql: str, rows: Sequence[Sequence[Any]]):
        self.sql, self.rows = sql, rows


def rows_of(cursor) -> list[dict[str, Any]] | None:
    """The last statement's rows as dicts; None if it returns none."""
    if cursor.description is None:
        return None
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


class SQLiteDialect(Dialect):
    name = "sqlite"
    types = {
        "pk": "INTEGER PRIMARY KEY AUTOINCREMENT",
        "blob": "BLOB",
        "text": "TEXT",
        "bigint": "INTEGER",
        "double": "REAL",
        "engine": "",
    }

    def __init__(self, url: DatabaseURL):
        if url.path is None:
            raise MarketError("an SQLite database URL needs a file path — use e.g. sqlite:var/market.sqlite")
        self.url = url
        self.path: str = url.path

    def connect(self) -> Any:
        path = self.path
        directory = os.path.dirname(os.path.abspath(path))
        if path != ":memory:":
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as e:
                raise DatabaseUnavailable(f"cannot create the directory for {path!r}: {e.strerror}") from None
        try:
            conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        except sqlite3.Error as e:
            raise DatabaseUnavailable(f"cannot open the SQLite database {path!r}: {e}") from None
        self.prepare(conn)
        return conn

    @staticmethod
    def prepare(conn) -> None:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")

    def pool_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return ("sqlite3", self.path), {
            "check_same_thread": False,
            "isolation_level": None,
            "timeout": 30,
            "cp_min": 1,
            "cp_max": 1,  # one writer connection: SQLite serializes writers anyway
            "cp_openfun": self.prepare,
        }

    def begin(self, cursor) -> None:
        # Take the write lock up front so read-modify-write sequences cannot interleave.
        cursor.execute("BEGIN IMMEDIATE")

    def is_retryable(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.OperationalError) and "locked" in str(error)

    def is_integrity_error(self, error: BaseException) -> bool:
        return isinstance(error, sqlite3.IntegrityError)


class MySQLDialect(Dialect):
    name = "mysql"
    types = {
        "pk": "BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY",
        "blob": "LONGBLOB",
        "text": "LONGTEXT",
        "bigint": "BIGINT",
        "double": "DOUBLE",
        "engine": "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    }
    for_update = " FOR UPDATE"
    # 2006 server gone away, 2013 lost connection, 1213 deadlock, 1205 lock wait timeout
    retry_codes = frozenset({2006, 2013, 1213, 1205})

    def __init__(self, url: DatabaseURL):
        self.url = url

    def _params(self) -> dict[str, Any]:
        return dict(
            host=self.url.host,
            port=self.url.port,
            user=self.url.user,
            password=self.url.password,
            database=self.url.database,
            charset="utf8mb4",
            autocommit=False,
            connect_timeout=self.url.connect_timeout,
            # a frozen database (or a partition) fails the call within these instead of holding it
            # and its pool thread for as long as the freeze lasts (``db.Database``)
            read_timeout=self.url.read_timeout,
            write_timeout=self.url.write_timeout,
            max_allowed_packet=64 * 1024 * 1024,
            # scripts (several statements in one round trip, see script()); every statement is
            # still built from placeholders, so this widens nothing an attacker could reach
            client_flag=_multi_statements(),
        )

    def connect(self) -> Any:
        import pymysql

        try:
            conn = pymysql.connect(**self._params())
        except pymysql.Error as e:
            raise DatabaseUnavailable(
                f"cannot reach the database {self.url.redacted()}: {e.args[-1] if e.args else e}"
                " — is MariaDB running, and do the user, password and database exist?"
            ) from None
        self.prepare(conn)
        return conn

    def prepare(self, conn) -> None:
        # a lock wait ends (error 1205, retried) well before the read timeout would drop the connection
        lock_wait = max(1, min(10, int(self.url.read_timeout / 2)))
        with conn.cursor() as c:
            c.execute(f"SET SESSION innodb_lock_wait_timeout = {lock_wait}")
            c.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
        conn.commit()

    def pool_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        kw = self._params()
        kw.update(cp_min=1, cp_max=8, cp_reconnect=True, cp_openfun=self.prepare)
        return ("pymysql",), kw

    def sql(self, text: str) -> str:
        return text.replace("%", "%%").replace("?", "%s")

    def drop_index(self, name: str, table: str) -> str:
        return f"DROP INDEX {name} ON {table}"

    def begin(self, cursor) -> None:
        # autocommit is off: InnoDB opens the transaction at the first statement, and an explicit
        # BEGIN would cost a round trip per transaction
        pass

    def script(self, cursor, statements: Sequence[Any]) -> list[list[dict[str, Any]] | None]:
        """All statements in ONE round trip (a multi-statement query); each one's rows.

        Values are escaped by the driver exactly as for a single statement (PyMySQL always
        interpolates on the client). MariaDB stops at the first failing statement and the error
        is raised here, so the caller's transaction rolls back as usual.
        """
        texts, kinds = [], []
        for statement in statements:
            if isinstance(statement, Many):
                if not statement.rows:
                    kinds.append(False)
                    continue
                head, _, group = statement.sql.partition("VALUES")
                texts.append(
                    head
                    + "VALUES "
                    + ", ".join(cursor.mogrify(self.sql(group.strip()), tuple(r)) for r in statement.rows)
                )
            else:
                sql, params = statement
                texts.append(cursor.mogrify(self.sql(sql), tuple(params)))
            kinds.append(True)
        results: list[list[dict[str, Any]] | None] = []
        if texts:
            cursor.execute(";\n".join(texts))
        first = True
        for sent in kinds:
            if not sent:
                results.append(None)
                continue
            if not first:
                cursor.nextset()
            first = False
            results.append(rows_of(cursor))
        return results

    def is_retryable(self, error: BaseException) -> bool:
        import pymysql

        return (
            isinstance(error, pymysql.err.OperationalError)
            and bool(error.args)
            and error.args[0] in self.retry_codes
            and not self.is_timeout(error)
        )

    def is_timeout(self, error: BaseException) -> bool:
        import pymysql

        if isinstance(error, TimeoutError):
            return True
        # PyMySQL reports a socket timeout as 2013 (read/write) or 2003 (connect) "... (timed out)"
        return (
            isinstance(error, pymysql.err.OperationalError)
            and bool(error.args)
            and error.args[0] in (2003, 2013)
            and "timed out" in str(error.args[-1])
        )

    def is_dead(self, error: BaseException) -> bool:
        import pymysql

        if isinstance(error, (pymysql.err.InterfaceError, TimeoutError, OSError)):
            return True
        return (
            isinstance(error, pymysql.err.OperationalError)
            and bool(error.args)
            and error.args[0] in (2003, 2006, 2013, 2055)
        )

    def is_integrity_error(self, error: BaseException) -> bool:
        import pymysql

        return isinstance(error, pymysql.err.IntegrityError)


def _multi_statements() -> int:
    from pymysql.constants import CLIENT

    return CLIENT.MULTI_STATEMENTS


def dialect_for(url: DatabaseURL) -> Dialect:
    return SQLiteDialect(url) if url.kind == "sqlite" else MySQLDialect(url)
