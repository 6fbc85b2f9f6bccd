"""The market's settings: one typed object, built from command-line options and an optional TOML file.

``twistd market --config FILE`` and ``market --config FILE`` read the file; an option given on the
command line wins over the file, and the file over the default written here. Every key is also an
option of ``twistd market`` with the same name (``probe-interval`` is ``--probe-interval``), so
one name means one thing; docs/operations.md lists them all. A file looks like::

    db = "mysql://market:secret@127.0.0.1:3306/market"   # top level: every command uses it

    [server]
    rpc = "tcp:7080"
    web = "tcp:8080"

    [dispatch]
    window = 2.0
    threshold = 16

    [accounts]
    starting-grant = "100.00"

    [web]
    report-seconds = 60
    [connections]
    header-timeout = 10
    state-body = "16 MiB"

Environment variables hold only credentials, the database and server URLs and deployment paths
(:data:`ENVIRONMENT`); nothing in this module reads them, and no setting weakens password hashing.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

from market.core import money, verification
from market.core.errors import MarketError
from market.core.rules import NOFREEZE_STRIKES


class SettingsError(MarketError):
    """A setting with a wrong value, an unknown key, or a config file that cannot be read."""


# -- what a value may be: each converter takes an option's text or a TOML value ----------------


def _positive(kind: type) -> Any:
    def convert(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"{value!r} is not a number")
        if kind is int and isinstance(value, float):
            raise ValueError(f"{value!r} is not a whole number")
        try:
            number = kind(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a {'whole ' if kind is int else ''}number") from None
        if not math.isfinite(number) or number <= 0:
            raise ValueError(f"{value!r} must be more than 0")
        return number

    return convert


positive_float = _positive(float)
positive_int = _positive(int)


def count(value: Any) -> int:
    """A whole number from 0 up."""
    if isinstance(value, bool) or isinstance(value, float) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if number < 0:
        raise ValueError(f"{value!r} must be 0 or more")
    return number


def share(value: Any) -> float:
    """A fraction from 0 to 1 (``0.05``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a number")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a number") from None
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise ValueError(f"{value!r} must be from 0 to 1")
    return number


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value.strip()


def credits(value: Any) -> int:
    """Credits as exact cents: ``"100.00"`` or a whole number (never a float, which is inexact)."""
    if isinstance(value, float):
        raise ValueError(f'{value!r}: write credits as a string like "100.00", not a float')
    try:
        return money.parse_amount(value, "credits")
    except MarketError as e:
        raise ValueError(str(e)) from None


_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def size(value: Any) -> int:
    """A size in bytes: a whole number of bytes, or text like ``"16 MiB"``, ``"256 KiB"``, ``"4096"``."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f'{value!r} is not a size (write a whole number of bytes or text like "16 MiB")')
    if isinstance(value, int):
        number = value
    else:
        m = re.fullmatch(r"\s*(\d{1,15})\s*([KMG]iB|B)?\s*", value, re.IGNORECASE)
        if m is None:
            raise ValueError(f'{value!r} is not a size (write bytes or text like "16 MiB", "256 KiB")')
        number = int(m[1]) * _UNITS[(m[2] or "").lower()]
    if number <= 0:
        raise ValueError(f"{value!r} must be more than 0")
    return number


def show_size(number: int) -> str:
    """``16777216`` -> ``16 MiB``: a size the way the docs and ``--help`` write it."""
    for unit in ("GiB", "MiB", "KiB"):
        if number % _UNITS[unit.lower()] == 0:
            return f"{number // _UNITS[unit.lower()]} {unit}"
    return f"{number} B"


def setting(default: Any, convert: Any, help: str, show: Any = None) -> Any:
    """A field of a settings class: its default, converter, help text (and how to show the default)."""
    return field(default=default, metadata={"convert": convert, "help": help, "show": show or str})


def key_of(f: dataclasses.Field) -> str:
    """The name in config files and on the command line: ``probe_interval`` -> ``probe-interval``."""
    return f.name.replace("_", "-")


def described(f: dataclasses.Field) -> str:
    """The field's help with its default, for ``--help`` and the docs."""
    if f.default is None:
        return f.metadata["help"]
    return f"{f.metadata['help']} (default {f.metadata['show'](f.default)})"


# -- the settings ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSettings:
    """What ``twistd market`` serves, and where (section ``[server]``)."""

    rpc: str = setting("tcp:7080", text, "XML-RPC endpoint (Twisted endpoint string); served at /RPC2")
    web: str | None = setting(None, text, "web site endpoint, e.g. tcp:8080 (off unless given)")
    smtp: str | None = setting(
        None, text, "SMTP relay HOST:PORT for confirmation e-mails (default: write them to the outbox folder)"
    )
    outbox: str = setting("var/outbox", text, "folder for e-mails when no smtp relay is given")
    public_url: str | None = setting(None, text, "the web site's public base URL for links in e-mails")


@dataclass(frozen=True)
class DispatchSettings:
    """The dispatcher's rules: pooling window, slices, probes, lease deadlines (section ``[dispatch]``)."""

    window: float = setting(2.0, positive_float, "pooling window in seconds", "{:g}".format)
    threshold: int = setting(16, positive_int, "close the window early at this many waiting requests")
    probe_interval: float = setting(1800.0, positive_float, "seconds between speed tests of a client", "{:g}".format)
    min_slice: float = setting(1.0, positive_float, "shortest slice, seconds", "{:g}".format)
    max_slice: float = setting(300.0, positive_float, "longest slice a worker may negotiate, seconds", "{:g}".format)
    default_slice: float = setting(
        60.0, positive_float, "slice for a worker that proposes none, seconds", "{:g}".format
    )
    grace: float = setting(10.0, positive_float, "seconds added to a slice for the check-in upload", "{:g}".format)
    test_job_size: int = setting(60, positive_int, "a never-measured client's first probe runs n**3 steps")
    reap_interval: float = setting(5.0, positive_float, "seconds between sweeps for overdue leases", "{:g}".format)
    test_jobs_per_interval: int = setting(
        3, positive_int, "test jobs a client may get within one probe-interval (one open at a time)"
    )
    nofreeze_strikes: int = setting(
        NOFREEZE_STRIKES, positive_int, "slices that reach no freeze point (billed) before the job ends 'nofreeze'"
    )
    probe_seconds: float = setting(
        3.0, positive_float, "how long a probe runs at the client's last speed, seconds", "{:g}".format
    )
    verify_fraction: float = setting(
        verification.DEFAULT_FRACTION, share, "share of slices replayed by another owner's worker", "{:g}".format
    )
    watch_slices: int = setting(
        verification.DEFAULT_WATCH_SLICES,
        count,
        "verified slices a worker needs before it leaves watch (until then every slice is replayed; 0: no watch)",
    )
    verify_wait: float = setting(
        verification.DEFAULT_WAIT_SECONDS,
        positive_float,
        "seconds a slice or result waits for an independent verifier before it stays unverified",
        "{:g}".format,
    )
    dispute_timeout: float = setting(
        verification.DEFAULT_DISPUTE_SECONDS,
        positive_float,
        "seconds a disputed slice or result waits for a decider before it is given up undecided"
        " (nobody loses, it stays unverified, the disputed parties' held pay is released)",
        "{:g}".format,
    )
    verify_margin: float = setting(
        verification.DEFAULT_MARGIN, positive_float, "a replay's step cap: slice x speed x this", "{:g}".format
    )
    max_price: int = setting(
        1_000_000, credits, "the highest price a job may have, credits per second", money.format_cents
    )

    max_batch: int = setting(10_000, positive_int, "argument sets (jobs) one batch may hold")
    max_argument_set: int = setting(
        64 * 1024, size, "bytes of one batch job's initial state (its frozen argument set)", show_size
    )
    job_log: int = setting(
        64 * 1024, size, "bytes of printed output (stdout and stderr) kept per job, the newest", show_size
    )
    slice_log: int = setting(16 * 1024, size, "bytes of printed output kept per slice, the newest", show_size)

    @property
    def verify_settings(self) -> verification.Settings:
        return verification.Settings(self.verify_fraction, self.watch_slices, self.verify_wait, self.verify_margin)

    def __post_init__(self) -> None:
        if self.min_slice > self.max_slice:
            raise SettingsError(f"min-slice ({self.min_slice:g}) is larger than max-slice ({self.max_slice:g})")


@dataclass(frozen=True)
class AccountSettings:
    """Rules for accounts (section ``[accounts]``)."""

    starting_grant: int = setting(
        10_000, credits, "credits granted to every new account when it is confirmed", money.format_cents
    )


@dataclass(frozen=True)
class WebSettings:
    """The web site's limits: the cached report, log-in and sign-up rates (section ``[web]``)."""

    report_seconds: float = setting(
        60.0, positive_float, "rebuild the XML report at most this often, seconds", "{:g}".format
    )
    report_files: int = setting(100, positive_int, "members' own reports kept as files (least recently fetched go)")
    login_per_name: int = setting(5, positive_int, "log-in attempts per account name in a login-period")
    login_per_address: int = setting(20, positive_int, "log-in attempts per address in a login-period")
    login_period: float = setting(
        900.0, positive_float, "seconds over which log-in attempts are counted", "{:g}".format
    )
    signups_per_address: int = setting(5, positive_int, "sign-ups per address in a signup-period")
    signups_per_email: int = setting(3, positive_int, "sign-ups per e-mail address in a signup-period")
    signup_period: float = setting(3600.0, positive_float, "seconds over which sign-ups are counted", "{:g}".format)


def niceness(value: Any) -> int:
    """A scheduling niceness from 0 (as the server) to 19 (only idle CPU)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not a whole number")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a whole number") from None
    if not 0 <= number <= 19:
        raise ValueError(f"{value!r} must be from 0 to 19")
    return number


@dataclass(frozen=True)
class OffloadSettings:
    """The helper processes that do CPU-heavy work on members' input, off the server's reactor and
    out of its memory (section ``[offload]``)."""

    helpers: int = setting(2, positive_int, "helper processes for CPU-heavy work on members' input")
    helper_memory: int = setting(512, positive_int, "address-space limit of each helper process, MiB")
    helper_seconds: float = setting(
        10.0,
        positive_float,
        "CPU seconds one call may take in a helper (3 times that on the clock) before it is killed and replaced",
        "{:g}".format,
    )
    helper_queue: int = setting(32, positive_int, "calls that may wait for a helper; more are refused as busy")
    helper_nice: int = setting(10, niceness, "scheduling niceness of the helpers (0-19): the server comes first")
    member_calls: int = setting(4, positive_int, "helper calls one member may have running or waiting")
    render_nodes: int = setting(
        1_000_000, positive_int, "values a result may expand to (shared parts counted where they appear) to be shown"
    )
    render_chars: int = setting(8 * 1024 * 1024, positive_int, "characters of JSON a downloaded result may have")

    def __post_init__(self) -> None:
        if self.helper_memory < 64:
            raise SettingsError(f"helper-memory ({self.helper_memory}) must be at least 64 MiB: Python needs that")


@dataclass(frozen=True)
class ConnectionSettings:
    """What one connection may cost the market, on the XML-RPC port and the web port (section
    ``[connections]``; docs/rpc.md says what a client sees when it hits each bound)."""

    header_timeout: float = setting(
        10.0, positive_float, "seconds from a request's first byte until its headers must be complete", "{:g}".format
    )
    idle_timeout: float = setting(
        120.0,
        positive_float,
        "seconds a kept-alive connection may wait for its next request (stray bytes do not extend it)",
        "{:g}".format,
    )
    body_grace: float = setting(
        5.0, positive_float, "seconds of each window in which a request body must advance", "{:g}".format
    )
    min_body_rate: int = setting(
        16 * 1024,
        size,
        "how fast a request body must advance, bytes per second, in every window of body-grace seconds",
        show_size,
    )
    linger: float = setting(
        2.0,
        positive_float,
        "seconds a refused request's body is read and thrown away (so its client can read why) before closing",
        "{:g}".format,
    )
    max_connections: int = setting(2000, positive_int, "open connections per port")
    max_per_address: int = setting(
        128, positive_int, "open connections per port from one IP address (IPv6: one /64; a lab behind one NAT)"
    )
    state_body: int = setting(
        16 * 1024 * 1024, size, "largest XML-RPC request body of a worker (client token): its state", show_size
    )
    max_state_size: int = setting(
        256 * 1024 * 1024,
        size,
        "largest job state a worker may check in (sent in 1 MiB chunks above 1 MiB; refused above this)",
        show_size,
    )
    body_budget: int = setting(
        128 * 1024 * 1024,
        size,
        "XML-RPC request bodies held in memory at once, all connections together (received or being answered)",
        show_size,
    )
    body_wait: float = setting(
        10.0,
        positive_float,
        "seconds a request body may wait for room in body-budget before it is refused (Fault 9, retry)",
        "{:g}".format,
    )
    inline_parse: int = setting(
        256 * 1024,
        size,
        "XML-RPC bodies up to this size are parsed on the reactor thread, larger ones off it",
        show_size,
    )
    max_depth: int = setting(16, positive_int, "arrays and structs nested inside one another in one XML-RPC call")
    max_values: int = setting(10_000, positive_int, "values in one XML-RPC call")

    @property
    def largest_body(self) -> int:
        """The largest single request body ``body-budget`` admits: the last sixteenth of the budget
        is kept for small calls (``market.edge.budget``)."""
        return self.body_budget - self.body_budget // 16

    def __post_init__(self) -> None:
        if self.state_body > self.largest_body:
            raise SettingsError(
                f"state-body ({show_size(self.state_body)}) must fit in body-budget ({show_size(self.body_budget)})"
                " less its sixteenth kept for small calls"
            )
        if self.max_state_size < 1024 * 1024:
            raise SettingsError(f"max-state-size ({show_size(self.max_state_size)}) must be at least 1 MiB (a chunk)")
        if self.max_per_address > self.max_connections:
            raise SettingsError(
                f"max-per-address ({self.max_per_address}) is larger than max-connections ({self.max_connections})"
            )


@dataclass(frozen=True)
class Settings:
    """Everything a market process is configured with."""

    db: str | None = setting(
        None,
        text,
        "database URL: sqlite:PATH or mysql://user:pw@host:port/db (default $MARKET_DB or sqlite:var/market.sqlite)",
    )
    server: ServerSettings = field(default_factory=ServerSettings)
    dispatch: DispatchSettings = field(default_factory=DispatchSettings)
    accounts: AccountSettings = field(default_factory=AccountSettings)
    web: WebSettings = field(default_factory=WebSettings)
    offload: OffloadSettings = field(default_factory=OffloadSettings)
    connections: ConnectionSettings = field(default_factory=ConnectionSettings)

    def replace(self, section: str | None = None, **values: Any) -> Settings:
        """A copy with ``values`` (already converted) replacing the top-level keys or a section's."""
        if section is None:
            return dataclasses.replace(self, **values)
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **values)})


#: section name -> its settings class
SECTIONS: dict[str, type] = {
    "server": ServerSettings,
    "dispatch": DispatchSettings,
    "accounts": AccountSettings,
    "web": WebSettings,
    "offload": OffloadSettings,
    "connections": ConnectionSettings,
}

#: the environment variables the market reads — credentials, the database and server URLs and
#: deployment paths, nothing else (docs/operations.md, "Environment")
ENVIRONMENT = {
    "MARKET_DB": "database URL when no --db and no config-file db is given",
    "MARKET_SERVER": "the market's XML-RPC URL for member commands and twistd worker",
    "MARKET_ACCOUNT": "your account name for member commands",
    "MARKET_TOKEN": "your account's API token for member commands",
    "MARKET_CLIENT_TOKEN": "a worker's client token (twistd worker)",
    "MARKET_SANDBOX_DIR": "where workers stage slices and tasks (default /var/tmp/market-sandbox-UID)",
    "MARKET_SANDBOX_CGROUP": "a delegated cgroup v2 directory for the jobs' memory and process caps",
    "MARKET_ENVIRONMENTS_DIR": "extra task environments (JSON) besides the shipped ones",
}

#: variables earlier releases read, and what replaced them
RETIRED_ENVIRONMENT = {
    "MARKET_STARTING_GRANT": "set starting-grant in the [accounts] section of a --config file",
    "MARKET_CHEAP_HASHES": "nothing: password hashes always use argon2id's full parameters",
}


def fields_of(cls: type) -> list[dataclasses.Field]:
    """The settings of a class (a section's keys, or the top-level keys of :class:`Settings`)."""
    return [f for f in dataclasses.fields(cls) if "convert" in f.metadata]


def convert(f: dataclasses.Field, value: Any) -> Any:
    """``value`` (an option's text or a TOML value) as field ``f`` holds it; ValueError in plain words."""
    return f.metadata["convert"](value)


def from_mapping(data: dict[str, Any], where: str = "the config file") -> Settings:
    """Settings from a parsed config file; unknown keys and wrong values are refused in plain words."""
    top = {key_of(f): f for f in fields_of(Settings)}
    known = ", ".join([*top, *(f"[{s}]" for s in SECTIONS)])
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key in SECTIONS:
            if not isinstance(value, dict):
                raise SettingsError(f"{where}: {key} must be a section ([{key}]), not a value")
            values[key] = _section(key, value, where)
        elif key in top:
            values[top[key].name] = _converted(top[key], value, f"{where}: {key}")
        else:
            raise SettingsError(f"{where}: unknown key {key!r} (known: {known})")
    return Settings(**values)


def _section(name: str, table: dict[str, Any], where: str) -> Any:
    cls = SECTIONS[name]
    by_key = {key_of(f): f for f in fields_of(cls)}
    values = {}
    for key, value in table.items():
        f = by_key.get(key)
        if f is None:
            raise SettingsError(f"{where}: unknown key {key!r} in [{name}] (known: {', '.join(by_key)})")
        values[f.name] = _converted(f, value, f"{where}: [{name}] {key}")
    try:
        return cls(**values)
    except SettingsError as e:
        raise SettingsError(f"{where}: [{name}] {e}") from None


def _converted(f: dataclasses.Field, value: Any, what: str) -> Any:
    try:
        return convert(f, value)
    except ValueError as e:
        raise SettingsError(f"{what}: {e}") from None


def load(path: str) -> Settings:
    """Settings from the TOML file at ``path`` (defaults for whatever it does not say)."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise SettingsError(f"cannot read the config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise SettingsError(f"the config file {path} is not valid TOML: {e}") from None
    return from_mapping(data, path)
