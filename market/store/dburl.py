"""Database URLs: ``sqlite:PATH`` (the embedded default) or ``mysql://user:pw@host:port/db``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from market.core.errors import MarketError

DEFAULT_URL = "sqlite:var/market.sqlite"

#: seconds a MariaDB connection may take to connect, and a single read or write may wait, before
#: the call fails with DatabaseUnavailable (Fault 9) instead of waiting on a frozen or unreachable
#: database; override with ``?connect_timeout=5&read_timeout=10&write_timeout=10`` on the URL
TIMEOUTS = {"connect_timeout": 5.0, "read_timeout": 10.0, "write_timeout": 10.0}
#: the bounds a timeout may be set to (seconds)
TIMEOUT_RANGE = (0.1, 3600.0)


@dataclass(frozen=True)
class DatabaseURL:
    kind: str  # "sqlite" or "mysql"
    path: str | None = None
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""
    connect_timeout: float = TIMEOUTS["connect_timeout"]
    read_timeout: float = TIMEOUTS["read_timeout"]
    write_timeout: float = TIMEOUTS["write_timeout"]

    def redacted(self) -> str:
        """The URL without its password, for logs and messages."""
        if self.kind == "sqlite":
            return f"sqlite:{self.path}"
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


def default_url() -> str:
    """``$MARKET_DB`` if set, else the embedded SQLite file under ``./var``."""
    return os.environ.get("MARKET_DB") or DEFAULT_URL


def parse(url: str) -> DatabaseURL:
    """Parse a database URL, refusing anything else with the accepted forms spelled out."""
    if not isinstance(url, str) or not url.strip():
        raise MarketError("empty database URL — use sqlite:PATH or mysql://user:password@host:port/db")
    url = url.strip()
    if url.startswith("sqlite:"):
        path = url[len("sqlite:") :]
        if path.startswith("///"):
            path = path[2:]
        elif path.startswith("//"):
            path = path[2:]
        if not path:
            raise MarketError("sqlite URL has no file path — use e.g. sqlite:var/market.sqlite")
        return DatabaseURL(kind="sqlite", path=path)
    if url.startswith(("mysql://", "mariadb://", "mysql+pymysql://")):
        parts = urlsplit(url)
        database = parts.path.lstrip("/")
        if not database or "/" in database:
            raise MarketError(f"database URL {url!r} names no database — use mysql://user:password@host:port/db")
        try:
            port = parts.port or 3306
        except ValueError:
            raise MarketError(f"database URL {url!r} has a bad port number") from None
        timeouts = _timeouts(parts.query)
        return DatabaseURL(
            kind="mysql",
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
            connect_timeout=timeouts.get("connect_timeout", TIMEOUTS["connect_timeout"]),
            read_timeout=timeouts.get("read_timeout", TIMEOUTS["read_timeout"]),
            write_timeout=timeouts.get("write_timeout", TIMEOUTS["write_timeout"]),
        )
    raise MarketError(
        f"unknown database URL {url!r} — use sqlite:PATH (embedded) or mysql://user:password@host:port/db"
    )


def _timeouts(query: str) -> dict[str, float]:
    """The ``?connect_timeout=&read_timeout=&write_timeout=`` of a MariaDB URL (seconds)."""
    if len(query) > 1000:
        raise MarketError("database URL query too long — only connect_timeout, read_timeout, write_timeout")
    out: dict[str, float] = {}
    low, high = TIMEOUT_RANGE
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in TIMEOUTS:
            raise MarketError(
                f"database URL option {key[:40]!r} is unknown — use connect_timeout, read_timeout or write_timeout"
            )
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not low <= seconds <= high:
            raise MarketError(f"database URL {key}={value[:40]!r} — give seconds between {low} and {high:g}")
        out[key] = seconds
    return out
