"""The task bundle: a pythia-style task as the market stores and ships it.

A bundle is the ``.task`` description, the task filesystem as an archive (zip, tar, tar.gz or
squashfs) and the optional input, framed as::

    b"MKTK" | u32 len + meta JSON {spec, format, input_length} | archive | input

It is the task's "state #0" in the store; the server checks the framing, the description and the
archive's magic bytes, and never unpacks or runs it. Workers unpack it inside their sandbox dir.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
from typing import Any

from market.core.errors import MarketError

MAGIC = b"MKTK"
_LEN = struct.Struct(">I")
MAX_BUNDLE = 48 * 1024 * 1024
FORMATS = {"zip": ".zip", "tar": ".tar", "tar.gz": ".tar.gz", "sfs": ".sfs"}


class BundleError(MarketError):
    pass


def detect_format(archive: bytes) -> str:
    """The archive's format from its magic bytes (never from a name someone chose)."""
    if archive[:4] == b"PK\x03\x04" or archive[:4] == b"PK\x05\x06":
        return "zip"
    if archive[:2] == b"\x1f\x8b":
        return "tar.gz"
    if archive[:4] in (b"hsqs", b"sqsh"):
        return "sfs"
    if archive[257:262] == b"ustar":
        return "tar"
    raise BundleError("the task filesystem must be a directory, a .zip, a .tar(.gz) or a squashfs .sfs file")


def archive_taskfs(path: str) -> bytes:
    """A directory is packed as tar.gz (regular files and directories only); a file is read as is."""
    if os.path.isdir(path):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(dirs + files):
                    full = os.path.join(root, name)
                    if os.path.islink(full) or not (os.path.isfile(full) or os.path.isdir(full)):
                        continue
                    if os.path.isfile(full) or os.path.isdir(full):
                        tar.add(full, arcname=os.path.relpath(full, path), recursive=False)
        return buffer.getvalue()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BundleError(f"cannot read the task filesystem {path!r}: {e.strerror}") from None


def pack(spec: dict[str, Any], archive: bytes, input_data: bytes | None = None) -> bytes:
    fmt = detect_format(archive)
    meta = json.dumps({"spec": spec, "format": fmt, "input_length": len(input_data or b"")}, sort_keys=True).encode()
    data = MAGIC + _LEN.pack(len(meta)) + meta + archive + (input_data or b"")
    if len(data) > MAX_BUNDLE:
        raise BundleError(f"the task bundle is over {MAX_BUNDLE // (1024 * 1024)} MiB")
    return data


def unpack(data: bytes) -> tuple[dict[str, Any], str, bytes, bytes]:
    """(spec, format, archive, input); BundleError on anything malformed."""
    if not isinstance(data, (bytes, bytearray)) or data[:4] != MAGIC or len(data) < 8:
        raise BundleError("not a task bundle")
    (n,) = _LEN.unpack_from(data, 4)
    if n > 64 * 1024 or 8 + n > len(data):
        raise BundleError("task bundle header is damaged")
    try:
        meta = json.loads(bytes(data[8 : 8 + n]).decode("utf-8"))
        spec, fmt, input_length = meta["spec"], meta["format"], int(meta["input_length"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise BundleError("task bundle header is damaged") from None
    if fmt not in FORMATS or not isinstance(spec, dict) or not 0 <= input_length <= len(data) - 8 - n:
        raise BundleError("task bundle header is damaged")
    body = bytes(data[8 + n :])
    archive, input_data = body[: len(body) - input_length], body[len(body) - input_length :]
    if detect_format(archive) != fmt:
        raise BundleError("the task filesystem's format does not match its header")
    return spec, fmt, archive, input_data


def validate_spec(spec: dict[str, Any]):
    """The ``.task`` rules (market.sandbox.task) incl. known environments; TaskError -> BundleError."""
    from market.sandbox.task import TaskError, default_environments, parse_task

    try:
        return parse_task(spec, default_environments())
    except TaskError as e:
        raise BundleError(str(e)) from None
