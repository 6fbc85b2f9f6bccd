"""A minimal XML-RPC client for load generation: one kept-alive HTTP/1.1 connection, requests
built from a prepared header, responses read by Content-Length, values encoded and decoded by
``xmlrpc.client`` (so the wire format is exactly the standard library's).

The benchmarks' simulated workers share the machine's two cores with the server under test;
``xmlrpc.client.ServerProxy`` spends about twice this client's CPU per call (it parses every
response's headers with the email package), CPU the server then does not get. Faults raise
``xmlrpc.client.Fault`` as with ServerProxy. Not for production: no TLS, no redirects, no retries.
"""

from __future__ import annotations

import base64
import socket
import xmlrpc.client
from urllib.parse import urlsplit


class LeanRPC:
    def __init__(self, url: str, user: str, token: str):
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise ValueError("LeanRPC speaks plain http only")
        auth = base64.b64encode(f"{user}:{token}".encode()).decode()
        self._head = (
            f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: text/xml\r\nAuthorization: Basic {auth}\r\n"
        ).encode()
        self._sock = socket.create_connection((parts.hostname, parts.port or 80))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buffer = b""

    def call(self, method: str, *args):
        body = xmlrpc.client.dumps(args, method, allow_none=True).encode()
        self._sock.sendall(self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        status, length = head.split(b"\r\n", 1)[0], None
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"no Content-Length in the answer: {status!r}")
        while len(rest) < length:
            rest += self._receive(keep=False)
        data, self._buffer = rest[:length], rest[length:]
        if b" 200 " not in status:
            raise RuntimeError(f"{status.decode(errors='replace')}: {data[:200]!r}")
        return xmlrpc.client.loads(data)[0][0]

    def _receive(self, keep: bool = True) -> bytes:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        if keep:
            self._buffer += chunk
        return chunk

    def close(self) -> None:
        self._sock.close()
