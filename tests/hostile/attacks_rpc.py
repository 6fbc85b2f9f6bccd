"""Attacks on the market's XML-RPC port and web port, as functions: each runs for ``seconds``
against a running market (``support.HostileMarket``) and returns its figures as a dict.

``test_rpc_attacks.py`` runs each for a few seconds beside a ``Bystander`` and a ``MemoryWatch``
and asserts the issue's figures; the benchmark runs the same functions for 30 s each. Attackers
connect from other loopback addresses than the bystander (127.0.0.2 and up: all of 127/8 is this
machine), as strangers would, so the per-address caps fall on them and not on the bystander.

The issue's findings, which these reproduce against the market before the fix:
a 60 MiB anonymous body stalled every client for 5–14 s and cost +380 MB; deeply nested arrays
cost up to 1.37 GB and answered Fault 99; 12 connections declaring 64 MiB and never finishing held
888 MiB; single bytes every few seconds kept connections forever; a few thousand slow connections
could exhaust file descriptors.
"""

from __future__ import annotations

import re
import select
import socket
import threading
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Callable
from typing import Any

from tests.hostile.support import HostileMarket, basic

MiB = 1024 * 1024
CHUNK = 256 * 1024


# -- the attacker's tools -----------------------------------------------------------------------------


def attacker(n: int = 0) -> str:
    """The n-th attacker's source address (127.0.0.2, 127.0.0.3, ...)."""
    return f"127.0.0.{2 + n}"


def connect(port: int, source: str | None = None, timeout: float = 10.0) -> socket.socket:
    where = (source, 0) if source else None
    return socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=where)


def head(length: int, authorization: str | None = None, path: str = "/RPC2", method: str = "POST") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: market", "Content-Type: text/xml", f"Content-Length: {length}"]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def read_answer(sock: socket.socket, timeout: float = 10.0) -> tuple[int, bytes] | None:
    """(status, body) of the next response, or None if the connection closed or reset first."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                return None
            data += more
        top, _, rest = data.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: *(\d+)", top, re.I)
        length = int(m[1]) if m else 0
        while len(rest) < length:
            more = sock.recv(65536)
            if not more:
                break
            rest += more
        return int(top.split(b" ", 2)[1]), rest[:length]
    except OSError:
        return None


def verdict(answer: tuple[int, bytes] | None) -> str:
    """What an answer was, in a word: ``fault 2``, ``http 413``, ``ok``, or ``cut off``."""
    if answer is None:
        return "cut off"
    status, body = answer
    if status != 200:
        return f"http {status}"
    m = re.search(rb"<name>faultCode</name>\s*<value><int>(\d+)</int>", body)
    return f"fault {int(m[1])}" if m else "ok"


def parse_answer(data: bytes) -> tuple[int, bytes] | None:
    """(status, body) of the first response in ``data``, if there is one."""
    if not data.startswith(b"HTTP/1.") or b"\r\n\r\n" not in data:
        return None
    top, _, rest = data.partition(b"\r\n\r\n")
    status = int(top.split(b" ", 2)[1])
    if status == 100:
        return parse_answer(rest)
    return status, rest


class Peer:
    """An attacker's connection: what the market sent on it, and whether it has closed it."""

    def __init__(self, sock: socket.socket):
        self.sock, self.since, self.data, self.closed, self.sent = sock, time.monotonic(), b"", False, 0

    def pump(self) -> bool:
        """Read what has arrived (without waiting); True once the market has closed the connection."""
        try:
            while not self.closed and select.select([self.sock], [], [], 0)[0]:
                more = self.sock.recv(65536)
                if not more:
                    self.closed = True
                self.data += more[: max(0, 65536 - len(self.data))]
        except OSError:
            self.closed = True
        return self.closed

    def verdict(self) -> str:
        answer = parse_answer(self.data)
        return "nothing" if answer is None and not self.data else verdict(answer)


def run_for(seconds: float, threads: int, attempt: Callable[[int], None]) -> None:
    """Call ``attempt(thread number)`` over and over from ``threads`` threads for ``seconds``."""
    end = time.monotonic() + seconds

    def loop(n: int) -> None:
        while time.monotonic() < end:
            attempt(n)

    workers = [threading.Thread(target=loop, args=(n,), daemon=True) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)


def flat_values(size: int) -> bytes:
    """An XML-RPC call of ``size`` bytes that is one array of small ints (what costs a decoder most)."""
    start = b"<?xml version='1.0'?><methodCall><methodName>whoami</methodName><params><param><value><array><data>"
    end = b"</data></array></value></param></params></methodCall>"
    unit = b"<value><i4>1</i4></value>"
    return start + unit * ((size - len(start) - len(end)) // len(unit)) + end


def nested_arrays(size: int) -> bytes:
    """An XML-RPC call of about ``size`` bytes of arrays nested in arrays, never closed."""
    start = b"<?xml version='1.0'?><methodCall><methodName>whoami</methodName><params><param><value>"
    unit = b"<array><data><value>"
    return start + unit * ((size - len(start)) // len(unit))


def _send(sock: socket.socket, data: bytes) -> bool:
    """Send all of ``data``; False if the market closed the connection first."""
    view = memoryview(data)
    try:
        for i in range(0, len(view), CHUNK):
            sock.sendall(view[i : i + CHUNK])
        return True
    except OSError:
        return False


# -- the attacks ---------------------------------------------------------------------------------


def huge_anonymous_body(
    hostile: HostileMarket, seconds: float, size: int = 60 * MiB, parallel: int = 2, wrong_credentials: bool = False
) -> dict[str, Any]:
    """Calls with a ``size`` body (one huge array of ints) and no credentials, or wrong ones, as
    fast as ``parallel`` connections can send them. Before the fix the market read and parsed each
    on its reactor thread: 5–14 s stalls, +380 MB. With a small ``size``, wrong credentials and
    many connections it is a flood of credential lookups instead. Figures: attempts, what each
    got, MiB sent, the slowest answer."""
    body = flat_values(size)
    authorization = basic(f"client/{hostile.client_id}", "not-the-token") if wrong_credentials else None
    got: Counter[str] = Counter()
    sent = [0]
    slowest = [0.0]
    lock = threading.Lock()

    def attempt(n: int) -> None:
        started = time.monotonic()
        with connect(hostile.port, attacker(n)) as sock:
            complete = _send(sock, head(len(body), authorization) + body)
            answer = read_answer(sock)
        with lock:
            got[verdict(answer)] += 1
            sent[0] += len(body) if complete else 0
            slowest[0] = max(slowest[0], time.monotonic() - started)

    run_for(seconds, parallel, attempt)
    return {"attempts": sum(got.values()), "answers": dict(got), "mib_sent": sent[0] // MiB, "slowest_s": slowest[0]}


def deeply_nested(
    hostile: HostileMarket, seconds: float, size: int = 60 * MiB, authenticated: bool = False, parallel: int = 2
) -> dict[str, Any]:
    """Calls whose body is arrays nested ``size`` bytes deep: anonymous (``size`` 60 MiB), or from
    a worker's client token (``size`` within its state limit), repeated on kept-alive connections.
    Before the fix: up to 1.37 GB and Fault 99. Figures: attempts and what each got."""
    body = nested_arrays(size)
    authorization = hostile.client_auth() if authenticated else None
    got: Counter[str] = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def attempt(n: int) -> None:
        with connect(hostile.port, attacker(n), timeout=30) as sock:
            while time.monotonic() < end:  # on one connection while the market keeps it
                if not _send(sock, head(len(body), authorization) + body):
                    answer = None
                else:
                    answer = read_answer(sock, 30)
                with lock:
                    got[verdict(answer)] += 1
                if answer is None or verdict(answer) != "fault 8":
                    return

    run_for(seconds, parallel, attempt)
    return {"attempts": sum(got.values()), "answers": dict(got)}


def unfinished_bodies(
    hostile: HostileMarket,
    seconds: float,
    connections: int = 12,
    declared: int = 64 * MiB,
    send: int | None = None,
    authorization: str | None = None,
    port: int | None = None,
    path: str = "/RPC2",
) -> dict[str, Any]:
    """``connections`` connections that each declare a ``declared`` body, send all of it but the
    last MiB (or ``send`` bytes) as fast as the market takes it for a moment, and then nothing,
    reopened as the market closes them. Before the fix 12 of them held 888 MiB of the market's
    memory. Figures: connections opened, what each got, how long the longest stayed open."""
    send = declared - MiB if send is None else send
    port = port or hostile.port
    end = time.monotonic() + seconds
    got: Counter[str] = Counter()
    longest = 0.0
    live: list[Peer] = []
    opened = 0
    filler = b"x" * CHUNK

    def open_one() -> None:
        nonlocal opened
        peer = Peer(connect(port, attacker(opened % 4)))
        opened += 1
        try:
            peer.sock.sendall(head(declared, authorization, path))
            peer.sock.settimeout(0.2)  # as much as the market will read now, then no more
            for _ in range(send // CHUNK):
                peer.sock.sendall(filler)
        except OSError:
            pass
        live.append(peer)

    for _ in range(connections):
        open_one()
    while time.monotonic() < end:
        time.sleep(0.1)
        for peer in list(live):
            if peer.pump():
                longest = max(longest, time.monotonic() - peer.since)
                got[peer.verdict()] += 1
                live.remove(peer)
                peer.sock.close()
                open_one()
    for peer in live:
        peer.pump()
        longest = max(longest, time.monotonic() - peer.since)
        got[peer.verdict() + " (still open)"] += 1
        peer.sock.close()
    return {"opened": opened, "answers": dict(got), "longest_open_s": longest}


def slow_bytes(
    hostile: HostileMarket,
    seconds: float,
    connections: int = 20,
    every: float = 1.0,
    port: int | None = None,
    first: bytes = b"",
) -> dict[str, Any]:
    """``connections`` connections that each send one byte every ``every`` seconds (of a request
    line that never ends; after ``first``, e.g. a whole request, it is "keep-alive" bytes between
    requests), reopened as the market closes them. Before the fix each byte reset a 10-minute idle
    timer: such connections lived forever. Figures: connections opened, closed by the market (and
    what they were told), how long the longest lived."""
    port = port or hostile.port
    end = time.monotonic() + seconds
    slow = b"POST /RPC2 HTTP/1.1\r\nX-Slow: " + b"a" * 100_000
    got: Counter[str] = Counter()
    longest = 0.0
    live: list[Peer] = []
    opened = 0

    def open_one() -> None:
        nonlocal opened
        peer = Peer(connect(port, attacker(opened % 4)))
        opened += 1
        if first:
            peer.sock.sendall(first)
            read_answer(peer.sock, 5)
        live.append(peer)

    for _ in range(connections):
        open_one()
    while time.monotonic() < end:
        for peer in list(live):
            if not peer.pump():
                try:
                    peer.sock.send(slow[peer.sent % len(slow) : peer.sent % len(slow) + 1])
                    peer.sent += 1
                except OSError:
                    peer.closed = True
            if peer.closed:
                got[peer.verdict()] += 1
                longest = max(longest, time.monotonic() - peer.since)
                live.remove(peer)
                peer.sock.close()
                open_one()
        time.sleep(every)
    for peer in live:
        longest = max(longest, time.monotonic() - peer.since)
        peer.sock.close()
    return {"opened": opened, "closed_by_market": sum(got.values()), "told": dict(got), "longest_open_s": longest}


def many_connections(
    hostile: HostileMarket, seconds: float, addresses: int = 1, per_address: int = 200, port: int | None = None
) -> dict[str, Any]:
    """From each of ``addresses`` addresses, ``per_address`` connections opened at once that then
    say nothing, held for ``seconds`` (the market closes them ``header-timeout`` after they opened).
    Before the fix nothing capped them: a few thousand slow connections exhausted the market's file
    descriptors. Figures: how many the market kept open (most from one address), how many it
    refused and with what, how many were still open at the end."""
    port = port or hostile.port
    peers: list[tuple[int, Peer]] = []
    refused: Counter[str] = Counter()
    for a in range(addresses):
        for _ in range(per_address):
            try:
                peers.append((a, Peer(connect(port, attacker(a), timeout=5))))
            except OSError:
                refused["could not connect"] += 1
    deadline = time.monotonic() + seconds
    time.sleep(min(1.0, seconds))
    held: Counter[int] = Counter()
    for a, peer in peers:
        peer.pump()
        if peer.data.startswith(b"HTTP/1.1 503"):
            refused["503 from your address" if b"your address" in peer.data else "503 in total"] += 1
        elif peer.closed or peer.data:
            refused[peer.verdict()] += 1
        else:
            held[a] += 1
    time.sleep(max(0.0, deadline - time.monotonic()))
    still = sum(1 for _, peer in peers if not peer.pump())
    for _, peer in peers:
        peer.sock.close()
    return {
        "attempted": addresses * per_address,
        "held": sum(held.values()),
        "held_most_from_one_address": max(held.values(), default=0),
        "refused": dict(refused),
        "held_at_end": still,
    }


def whoami_body() -> bytes:
    return xmlrpc.client.dumps((), "whoami").encode()
