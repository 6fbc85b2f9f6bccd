"""A root-owned, world-readable directory holding what the sandbox binds in.

The job user must be able to read what bwrap binds (bwrap runs as that user), but
must not be able to change it. Everything lives under one directory: the in-sandbox
runner, the compiled seccomp filter, built environments and unpacked task filesystems.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading

__all__ = ["Staging", "StagingError", "default_staging"]


class StagingError(RuntimeError):
    """The staging directory is unsafe or cannot be created."""


class Staging:
    """Paths the sandbox reads from, created on first use (cheap after that)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._lock = threading.Lock()
        self._inner: str | None = None
        self._filter: str | None = None
        self._nofork: str | None = None

    def ensure_dir(self, *parts: str) -> str:
        """Create (0755) and check a directory under the root; return its path."""
        path = os.path.join(self.root, *parts)
        os.makedirs(path, mode=0o755, exist_ok=True)
        st = os.lstat(path)
        # Someone else's directory (e.g. pre-created in /var/tmp) could hold a fake runner.
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise StagingError(
                f"{path} must be a directory owned by uid {os.geteuid()} and not "
                "writable by others; remove it or choose another staging dir"
            )
        os.chmod(path, 0o755)
        return path

    def inner_path(self) -> str:
        """The in-sandbox runner, copied here so the job user can read it."""
        with self._lock:
            if self._inner is None:
                source = os.path.join(os.path.dirname(__file__), "inner.py")
                with open(source, "rb") as f:
                    data = f.read()
                name = "inner-%s.py" % hashlib.sha256(data).hexdigest()[:16]
                self._inner = self._put(name, data)
            return self._inner

    def filter_path(self) -> str:
        """The seccomp BPF blob, compiled once per process (raises SeccompUnavailable)."""
        with self._lock:
            if self._filter is None:
                from .seccomp_filter import build_filter

                data = build_filter()
                name = "filter-%s.bpf" % hashlib.sha256(data).hexdigest()[:16]
                self._filter = self._put(name, data)
            return self._filter

    def nofork_filter_path(self) -> str:
        """The seccomp blob a single-process job step loads on top (no fork, no new processes)."""
        with self._lock:
            if self._nofork is None:
                from .seccomp_filter import build_nofork_filter

                data = build_nofork_filter()
                name = "nofork-%s.bpf" % hashlib.sha256(data).hexdigest()[:16]
                self._nofork = self._put(name, data)
            return self._nofork

    def _put(self, name: str, data: bytes) -> str:
        path = os.path.join(self.ensure_dir(), name)
        try:
            with open(path, "rb") as f:
                if f.read() == data:
                    return path
        except OSError:
            pass
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        return path


_default: Staging | None = None


def default_staging() -> Staging:
    """The process-wide staging dir: $MARKET_SANDBOX_DIR or /var/tmp/market-sandbox-<uid>."""
    global _default
    if _default is None:
        root = os.environ.get("MARKET_SANDBOX_DIR") or f"/var/tmp/market-sandbox-{os.geteuid()}"
        _default = Staging(root)
    return _default
