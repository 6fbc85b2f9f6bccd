"""Many front ends, one matcher: who holds the matcher role, which front ends are alive, and when
a front end may not start. Pure: every time is a parameter (the store reads it from the database
once per transaction, so front ends on machines whose clocks disagree still agree).

Any number of ``twistd market`` processes may serve one MariaDB database. Each registers a row in
``frontends`` with a heartbeat. One of them holds the matcher role (a ``matcher_role`` row: holder,
expiry) and renews it with every heartbeat; it runs the one pooling window over the requests of
every front end. When its holder stops renewing (killed, frozen, cut off), the role's expiry passes
and the next front end to beat takes it. Two holders at once (a holder frozen past its expiry that
wakes up) can only cost price order for a window, never a job leased twice: the window's
``FOR UPDATE`` and status re-check guard that, and each request row is claimed under a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HEARTBEAT_SECONDS",
    "ROLE_SECONDS",
    "LIVE_SECONDS",
    "REMOTE_WAIT_SECONDS",
    "MAX_REQUESTS_PER_POLL",
    "FrontEnd",
    "Beat",
    "may_take_role",
    "is_live",
    "stale_local",
    "sqlite_refusal",
]

#: how often a front end writes its heartbeat and renews (or tries to take) the matcher role
HEARTBEAT_SECONDS = 1.0
#: how long the role stays with a holder that stopped beating: a dead holder's role is taken over
#: within ROLE_SECONDS + HEARTBEAT_SECONDS
ROLE_SECONDS = 4.0
#: a front end whose last heartbeat is older than this is shown (and counted) as dead
LIVE_SECONDS = ROLE_SECONDS
#: a request put in the database waits at most this long for the matcher's answer (no holder, the
#: holder died with it in its window): then it is withdrawn and its worker told to ask again
REMOTE_WAIT_SECONDS = 15.0
#: the holder takes at most this many new requests from the database per poll (bounded work)
MAX_REQUESTS_PER_POLL = 2000


@dataclass(frozen=True)
class FrontEnd:
    """One ``twistd market`` process: its id (``host:pid:random``), host, pid and RPC endpoint."""

    id: str
    host: str
    pid: int
    rpc: str


@dataclass(frozen=True)
class Beat:
    """What one heartbeat found: the database's time, who holds the role, how many front ends
    (this one included) are alive."""

    now: float
    holder: str | None
    live: int
    me: str

    @property
    def holds_role(self) -> bool:
        return self.holder == self.me


def may_take_role(holder: str | None, expires_at: float, me: str, now: float) -> bool:
    """Whether ``me`` may hold (take or renew) the matcher role at ``now``: nobody holds it, it is
    already ``me``'s, or its holder let it expire."""
    return holder is None or holder == me or expires_at <= now


def is_live(heartbeat_at: float, stopped_at: float | None, now: float, live_seconds: float = LIVE_SECONDS) -> bool:
    """A front end is alive if it did not stop and beat within ``live_seconds``."""
    return stopped_at is None and now - heartbeat_at < live_seconds


def stale_local(host: str, pid: int, my_host: str, pid_alive: Callable[[int], bool]) -> bool:
    """Whether a front end row whose heartbeat still looks fresh belongs to a process on this host
    that is gone (killed just now): its pid no longer runs. ``pid_alive(pid) -> bool`` is injected."""
    return host == my_host and not pid_alive(pid)


def sqlite_refusal(other: Mapping[str, Any], now: float) -> str:
    """The words a second front end on one SQLite database says before it exits."""
    ago = max(0.0, now - float(other["heartbeat_at"]))
    return (
        f"another market front end ({other['id']}, pid {other['pid']} on {other['host']}, serving"
        f" {other['rpc'] or '?'}) uses this SQLite database: its last heartbeat was {ago:.1f} s ago."
        " SQLite serves one front end only. Stop the other one, or move to MariaDB to run several"
        " (--db mysql://...; docs/operations.md, 'Several front ends'). If that process is gone, wait"
        f" {LIVE_SECONDS:g} s and start again."
    )
