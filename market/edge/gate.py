"""How many connections may be open at once: in total on a port, and from one address.

A connection over either cap is answered ``503`` with a one-line reason and closed at once; it
never reaches the request parser. One IPv6 subscriber gets a whole /64, so an IPv6 address counts
by its /64; an IPv4 address (or an IPv4-mapped IPv6 one) by itself.
"""

from __future__ import annotations

import ipaddress
import resource
from typing import Any


class Crowded(Exception):
    """A connection refused by a cap; the message says which, in plain words."""


def address_key(address: Any) -> str:
    """What a peer address counts as: its IPv4 address, its IPv6 /64, or ``local`` (UNIX sockets)."""
    host = getattr(address, "host", None)
    if not isinstance(host, str):
        return "local"
    if ":" not in host:
        return host
    try:
        ip = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


class Gate:
    """Counts the open connections of one port; :meth:`enter` refuses past ``max_connections`` in
    total or ``max_per_address`` from one address."""

    def __init__(self, max_connections: int, max_per_address: int):
        self.max_connections, self.max_per_address = max_connections, max_per_address
        self.open = 0
        self._by_address: dict[str, int] = {}

    def enter(self, address: Any) -> str:
        """Count a new connection from ``address``; the key to :meth:`leave` with. Raises Crowded."""
        if self.open >= self.max_connections:
            raise Crowded(f"the market has {self.open} connections open, its limit; try again in a minute")
        key = address_key(address)
        count = self._by_address.get(key, 0)
        if count >= self.max_per_address:
            raise Crowded(f"{count} connections are already open from your address, the limit; close some first")
        self._by_address[key] = count + 1
        self.open += 1
        return key

    def leave(self, key: str) -> None:
        """A connection counted by :meth:`enter` closed."""
        count = self._by_address.get(key, 0) - 1
        if count > 0:
            self._by_address[key] = count
        else:
            self._by_address.pop(key, None)
        self.open = max(0, self.open - 1)

    def from_address(self, address: Any) -> int:
        """How many connections are open from ``address`` (tests and the log)."""
        return self._by_address.get(address_key(address), 0)


#: descriptors the process needs besides its connections: listening ports, database, log, files
DESCRIPTORS_BESIDES = 256


def descriptors_for(connections: int) -> int:
    """Raise the process's open-file limit (RLIMIT_NOFILE) towards ``connections`` plus what the
    market needs besides, as far as the hard limit allows; returns how many connections fit.

    Without this a cap of 1,000 connections per port is a promise the usual soft limit (1024)
    cannot keep: past it ``accept`` fails, and every new client, not just the greedy one, is refused.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections + DESCRIPTORS_BESIDES
    if soft != resource.RLIM_INFINITY and soft < want:
        target = want if hard == resource.RLIM_INFINITY else min(want, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(0, min(connections, soft - DESCRIPTORS_BESIDES))
