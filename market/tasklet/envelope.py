"""The frozen-state envelope: the one place that knows its layout.

Layout (all integers big-endian)::

    b"MKTS"                magic
    u16                    format version (FORMAT_VERSION)
    u32                    header length H
    H bytes                header: UTF-8 JSON object, sorted keys
    payload_length bytes   payload (codec-encoded state)
    32 bytes               sha256 of everything before it

Header fields (version 2): ``source_sha256`` (hex), ``entry`` (function
name), ``seq`` (sequence number), ``runtime`` (runtime version that made it),
``codec`` (codec name), ``payload_length``, ``job_id``, ``parent`` (hex of the
trailing digest of the state this one was made from, "" for state #0) and
``interpreter`` (the interpreter that froze it: implementation and minor
version, e.g. "cpython-3.11"; "unknown" for states converted from version 1).
Optional (absent in older states and in state #0): ``mark``, a short string
naming the innermost frame's function and resume point and hashing its cheap
locals, which a replay compares at every back-edge to find this state cheaply
(``market.tasklet.replay``); FORMAT_VERSION is unchanged by it.
``job_id`` may be missing in state #0 (made before the job has an id) and in
states run locally; the server refuses a check-in whose job id is not its
lease's.

The checksum catches truncation and corruption; it is not a signature (the
server's database is the authority on which state is committed).  What binds
a state to its lease is the header compared with the lease by the server:
job, source, parent digest and sequence (docs/trust.md).  Reading an envelope
never decodes the payload, never imports and never executes.
"""

from __future__ import annotations

import collections
import json
import struct
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs ~15 ms on every slice
    from hashlib import sha256 as _sha256  # the same function; _sha256 and _sha2 have no stubs
    from typing import NamedTuple, Optional, Tuple
else:
    try:  # the builtin module loads in microseconds; hashlib loads OpenSSL (~8 ms a slice)
        from _sha256 import sha256 as _sha256
    except ImportError:  # pragma: no cover - other implementations / versions
        try:
            from _sha2 import sha256 as _sha256
        except ImportError:
            from hashlib import sha256 as _sha256

__all__ = [
    "EnvelopeError",
    "OlderFormat",
    "Header",
    "FORMAT_VERSION",
    "RUNTIME_VERSION",
    "source_hash",
    "make_envelope",
    "read_header",
    "open_envelope",
    "digest",
    "payload_sha256",
    "sha256_hex",
    "inspect",
    "Inspector",
    "upgrade_v1",
    "INTERPRETER",
]

MAGIC = b"MKTS"
FORMAT_VERSION = 2
# The interpreter freezing states here: a replay must run on the same one (set iteration order
# differs between implementations and versions).
INTERPRETER = "%s-%d.%d" % (sys.implementation.name, sys.version_info[0], sys.version_info[1])
# Bumped whenever the compiler's numbering of resume points or the state
# layout changes: a state is only resumed by the runtime that made it.
RUNTIME_VERSION = "tasklet-1"
_PREFIX = struct.Struct(">4sHI")
_MAX_HEADER = 64 * 1024
_DIGEST = 32


class EnvelopeError(ValueError):
    """The envelope is truncated, tampered with, of another version or job."""


class OlderFormat(EnvelopeError):
    """An envelope of an older format version, made by a worker that needs upgrading."""


if TYPE_CHECKING:
    # What the checker sees: the same fields as the namedtuple below, with their types.

    class Header(NamedTuple):
        source_sha256: str
        entry: str
        seq: int
        runtime: str
        codec: str
        payload_length: int
        job_id: Optional[int] = None
        parent: str = ""
        interpreter: str = INTERPRETER
        mark: Optional[str] = None

else:
    # A plain namedtuple (typing costs ~15 ms of every slice's start-up)
    Header = collections.namedtuple(
        "Header",
        "source_sha256 entry seq runtime codec payload_length job_id parent interpreter mark",
        defaults=(None, "", INTERPRETER, None),
    )
Header.__doc__ = """What an envelope says about the state it carries: source_sha256 (hex), entry, seq,
runtime, codec, payload_length, job_id (None only in state #0), parent (hex digest of the state it
was made from, "" for state #0), interpreter and mark (optional: see :func:`runner.mark_of`)."""


def source_hash(source: str) -> str:
    """Hex sha256 of a job's source text (UTF-8)."""
    return _sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


def make_envelope(header: Header, payload: bytes) -> bytes:
    """Wrap ``payload``; ``header.payload_length`` is filled in here."""
    fields = header._replace(payload_length=len(payload))._asdict()
    if fields["mark"] is None:  # optional: absent in states made before it, and in state #0
        del fields["mark"]
    raw = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")
    body = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(raw)) + raw + payload
    return body + _sha256(body).digest()


def read_header(data: bytes) -> Header:
    """Check structure, version and checksum; return the header.

    The payload is not decoded.  Raises :class:`EnvelopeError`.
    """
    header, _ = _split(data)
    return header


def open_envelope(data: bytes, source: str) -> Tuple[Header, bytes]:
    """Like :func:`read_header`, and also check that it belongs to ``source``."""
    header, payload = _split(data)
    if header.source_sha256 != source_hash(source):
        raise EnvelopeError(
            "this state belongs to another job source (source sha256 %s..., "
            "given source %s...)" % (header.source_sha256[:12], source_hash(source)[:12])
        )
    return header, payload


def sha256_hex(data: bytes) -> str:
    """Hex sha256 of ``data`` (the builtin module: no OpenSSL load in a slice)."""
    return _sha256(bytes(data)).hexdigest()


def digest(data: bytes) -> str:
    """Hex of the envelope's trailing sha256: what a child state names as its ``parent``."""
    return bytes(data[-_DIGEST:]).hex()


def payload_sha256(data: bytes) -> str:
    """Hex sha256 of the payload part alone (after :func:`read_header`'s checks): two states
    with the same payload are the same computation whatever their headers say."""
    return inspect(data)[1]


def inspect(data: bytes) -> Tuple[Header, str]:
    """:func:`read_header` and :func:`payload_sha256` in one call (two hash passes over the bytes:
    run it off the reactor thread for a large state)."""
    header, payload = _split(data)
    return header, _sha256(payload).hexdigest()


class Inspector:
    """:func:`inspect` fed piece by piece (a state stored or sent in chunks): never holds more than
    its header and the last 32 bytes. ``feed`` each piece in order, then ``finish()`` gives
    ``(header, payload sha256 hex, digest hex, size)`` with the checks of :func:`read_header`."""

    def __init__(self) -> None:
        self._head = b""  # the prefix and header, until complete
        self._header = None  # type: Optional[Header]
        self._whole = _sha256()  # everything but the trailing digest
        self._payload = _sha256()
        self._payload_seen = 0
        self._tail = b""  # the last bytes seen, held back: they may be the trailing digest
        self.size = 0

    def feed(self, piece: bytes) -> None:
        self.size += len(piece)
        data = self._tail + bytes(piece)
        if len(data) <= _DIGEST:
            self._tail = data
            return
        body, self._tail = data[:-_DIGEST], data[-_DIGEST:]
        self._whole.update(body)
        if self._header is None:
            self._head += body
            if len(self._head) < _PREFIX.size:
                return
            magic, found, hlen = _PREFIX.unpack_from(self._head)
            if magic != MAGIC:
                raise EnvelopeError("not a frozen job state (bad magic)")
            if found != FORMAT_VERSION:
                _split(self._head + b"\0" * (hlen + _DIGEST))  # the version refusal, as for a whole state
            if hlen > _MAX_HEADER:
                raise EnvelopeError("state truncated or corrupt: header length %d" % hlen)
            if len(self._head) < _PREFIX.size + hlen:
                return
            try:
                fields = json.loads(self._head[_PREFIX.size : _PREFIX.size + hlen].decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise EnvelopeError("state header is not valid JSON") from None
            self._header = _header_from(fields)
            body = self._head[_PREFIX.size + hlen :]
            self._head = b""
        self._payload.update(body)
        self._payload_seen += len(body)

    @property
    def header(self):  # type: () -> Optional[Header]
        """The header, once the pieces fed so far hold it (checked in full only by ``finish``)."""
        return self._header

    def finish(self) -> Tuple[Header, str, str, int]:
        header = self._header
        if header is None or len(self._tail) < _DIGEST:
            raise EnvelopeError("state truncated: %d bytes is shorter than its header says" % self.size)
        if self._whole.digest() != self._tail:
            raise EnvelopeError("state checksum mismatch: the state was truncated or altered")
        if self._payload_seen != header.payload_length:
            raise EnvelopeError(
                "state payload is %d bytes, header says %d" % (self._payload_seen, header.payload_length)
            )
        if header.runtime != RUNTIME_VERSION:
            raise EnvelopeError("state made by runtime %r; this worker runs %r" % (header.runtime, RUNTIME_VERSION))
        return header, self._payload.hexdigest(), self._tail.hex(), self.size


def upgrade_v1(data: bytes, job_id: int, parent: str) -> bytes:
    """A version-1 envelope rewritten as version 2 (the schema migration of stored states): the
    same payload, ``job_id`` and ``parent`` as given, interpreter "unknown", a new digest."""
    header, payload = _split(data, version=1)
    return make_envelope(header._replace(job_id=job_id, parent=parent, interpreter="unknown"), payload)


def _split(data: bytes, version: int = FORMAT_VERSION) -> Tuple[Header, bytes]:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EnvelopeError("a state must be bytes, not %s" % type(data).__name__)
    data = bytes(data)
    if len(data) < _PREFIX.size + _DIGEST:
        raise EnvelopeError("state truncated: %d bytes is shorter than any envelope" % len(data))
    magic, found, hlen = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("not a frozen job state (bad magic)")
    if found != version:
        if found < version:
            raise OlderFormat(
                "state format version %d was made by an older worker; upgrade the worker"
                " (this runtime reads version %d, whose header binds a state to its job and parent)" % (found, version)
            )
        raise EnvelopeError(
            "state format version %d is not supported (this runtime reads version %d)" % (found, version)
        )
    if hlen > _MAX_HEADER or _PREFIX.size + hlen + _DIGEST > len(data):
        raise EnvelopeError("state truncated or corrupt: header length %d" % hlen)
    body, digest = data[:-_DIGEST], data[-_DIGEST:]
    if _sha256(body).digest() != digest:
        raise EnvelopeError("state checksum mismatch: the state was truncated or altered")
    try:
        fields = json.loads(data[_PREFIX.size : _PREFIX.size + hlen].decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise EnvelopeError("state header is not valid JSON") from None
    header = _header_from(fields, version)
    payload = body[_PREFIX.size + hlen :]
    if len(payload) != header.payload_length:
        raise EnvelopeError("state payload is %d bytes, header says %d" % (len(payload), header.payload_length))
    if header.runtime != RUNTIME_VERSION:
        raise EnvelopeError("state made by runtime %r; this worker runs %r" % (header.runtime, RUNTIME_VERSION))
    return header, payload


_TYPES = {"source_sha256": str, "entry": str, "seq": int, "runtime": str, "codec": str, "payload_length": int}
_TYPES_V2 = dict(_TYPES, parent=str, interpreter=str)


def _header_from(fields: object, version: int = FORMAT_VERSION) -> Header:
    if not isinstance(fields, dict):
        raise EnvelopeError("state header must be a JSON object")
    types = _TYPES_V2 if version >= 2 else _TYPES
    for name, kind in types.items():
        value = fields.get(name)
        if type(value) is not kind:
            raise EnvelopeError("state header field %r missing or not a %s" % (name, kind.__name__))
    job_id = fields.get("job_id")
    if job_id is not None and type(job_id) is not int:
        raise EnvelopeError("state header field 'job_id' must be an integer")
    if fields["seq"] < 0 or fields["payload_length"] < 0:
        raise EnvelopeError("state header has a negative number")
    mark = fields.get("mark")
    if mark is not None and (type(mark) is not str or len(mark) > 200):
        raise EnvelopeError("state header field 'mark' must be a short string")
    extra = set(fields) - set(types) - {"job_id", "mark"}
    if extra:
        raise EnvelopeError("state header has unknown fields: %s" % ", ".join(sorted(extra)))
    if version < 2:
        parent, interpreter = "", "unknown"
    else:
        parent, interpreter = fields["parent"], fields["interpreter"]
        if parent and (len(parent) != 2 * _DIGEST or parent.strip("0123456789abcdef")):
            raise EnvelopeError("state header field 'parent' must be the parent state's hex digest, or empty")
        if len(interpreter) > 64:
            raise EnvelopeError("state header field 'interpreter' is too long")
    return Header(
        fields["source_sha256"],
        fields["entry"],
        fields["seq"],
        fields["runtime"],
        fields["codec"],
        fields["payload_length"],
        job_id,
        parent,
        interpreter,
        mark,
    )
