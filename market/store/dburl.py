"""Database URLs: ``sqlite:PATH`` (the embedded default) or ``mysql://user:pw@host:port/db``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from market.core.errors import MarketError

DEFAULT_URL = "sqlite:var/market.sqlite"


@dataclass(frozen=True)
class DatabaseURL:
    kind: str  # "sqlite" or "mysql"
    path: str | None = None
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""
    database: str = ""

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
        return DatabaseURL(
            kind="mysql",
            host=parts.hostname or "127.0.0.1",
            port=port,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            database=database,
        )
    raise MarketError(
        f"unknown database URL {url!r} — use sqlite:PATH (embedded) or mysql://user:password@host:port/db"
    )
