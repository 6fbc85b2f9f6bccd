"""Local TCP ports for the processes the market starts itself (``market demo``, the test suite).

Two traps of "bind port 0, close, hand the number to a child" on a busy machine, both seen in CI:

- the number is an *ephemeral* port, so until the child binds it any outgoing connection may be
  given it as its source port, and the child then cannot listen;
- probing a port in the ephemeral range that nothing listens on can connect the probe to itself
  (TCP simultaneous open: source port == destination port), so "something listens" is believed
  before the child has bound it, and its first real client is refused.

So ports are drawn below the ephemeral range, and a probe that reached itself does not count.
"""

from __future__ import annotations

import random
import socket

#: where to draw from when the kernel's ephemeral range cannot be read
_FALLBACK_EPHEMERAL_LOW = 32768
_LOWEST = 10000


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return _FALLBACK_EPHEMERAL_LOW


def free_port(host: str = "127.0.0.1") -> int:
    """A port on ``host`` that nothing holds now, outside the kernel's ephemeral range if it can."""
    high = _ephemeral_low()
    if high - _LOWEST >= 1000:
        for _ in range(200):
            port = random.randrange(_LOWEST, high)
            with socket.socket() as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True when a listener accepts on ``host:port`` (a probe that connected to itself is not one)."""
    try:
        s = socket.create_connection((host, port), timeout=timeout)
    except OSError:
        return False
    with s:
        return s.getsockname()[1] != s.getpeername()[1] or s.getsockname()[0] != s.getpeername()[0]
