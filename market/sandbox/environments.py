"""Named, read-only environment filesystems for tasks (pythia's 'environment')."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from .staging import Staging
from .taskfs import FilesystemError, unpack

__all__ = ["Environment", "EnvironmentError_", "Environments", "SHIPPED_DIR"]

SHIPPED_DIR = os.path.join(os.path.dirname(__file__), "environments")
IMAGE_SUFFIXES = (".sfs", ".squashfs", ".tar.gz", ".tgz", ".tar", ".zip")
# Top-level names an environment tree may not replace: the sandbox's own layout.
RESERVED = {"usr", "lib", "lib64", "proc", "dev", "tmp", "work", "task", ".sandbox"}


class EnvironmentError_(ValueError):
    """Unknown environment, or one that cannot be built."""


@dataclass(frozen=True)
class Environment:
    """What a task's sandbox gets from its environment.

    binds    -- (host_path, sandbox_path) read-only binds
    host_usr -- whether jobs may use the host's /usr (Landlock hides it otherwise; the
                in-sandbox runner itself always needs it)
    path     -- PATH for the task's steps
    """

    name: str
    binds: tuple[tuple[str, str], ...] = ()
    host_usr: bool = True
    path: str = "/usr/local/bin:/usr/bin:/bin"
    description: str = ""


class Environments:
    """Environment lookup over the shipped directory plus operator directories.

    Later directories win, so an operator can replace a shipped environment.
    """

    def __init__(self, staging: Staging, dirs: Sequence[str] = ()) -> None:
        self.staging = staging
        self.dirs: list[str] = [SHIPPED_DIR, *dirs]
        self._built: dict[str, Environment] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        """All environment names available, sorted."""
        return sorted(self._sources())

    def _sources(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for base in self.dirs:
            if not os.path.isdir(base):
                continue
            for entry in sorted(os.listdir(base)):
                path = os.path.join(base, entry)
                if entry.endswith(".json"):
                    found[entry[:-5]] = path
                elif os.path.isdir(path):
                    found[entry] = path
                else:
                    for suffix in IMAGE_SUFFIXES:
                        if entry.endswith(suffix):
                            found[entry[: -len(suffix)]] = path
                            break
        return found

    def exists(self, name: str) -> bool:
        """Whether ``name`` is a known environment (cheap: nothing is built)."""
        return name in self._sources()

    def get(self, name: str) -> Environment:
        """The environment ``name``, built on first use (raises EnvironmentError_)."""
        with self._lock:
            if name not in self._built:
                sources = self._sources()
                if name not in sources:
                    raise EnvironmentError_(f"unknown environment {name!r}; available: {', '.join(sorted(sources))}")
                self._built[name] = self._build(name, sources[name])
            return self._built[name]

    def _build(self, name: str, source: str) -> Environment:
        if source.endswith(".json"):
            with open(source) as f:
                spec = json.load(f)
            kind = spec.get("kind")
            description = spec.get("description", "")
            if kind == "busybox":
                return Environment(
                    name, ((self._busybox_bin(), "/bin"),), host_usr=False, path="/bin", description=description
                )
            if kind == "host-usr":
                return Environment(name, (), host_usr=True, description=description)
            raise EnvironmentError_(f"environment {name!r}: unknown kind {kind!r} in {source}")
        if os.path.isdir(source):
            root = source
        else:
            try:
                root = unpack(source, self.staging.ensure_dir("env"))
            except FilesystemError as exc:
                raise EnvironmentError_(f"environment {name!r}: {exc}") from None
        return _tree_environment(name, root)

    def _busybox_bin(self) -> str:
        """A bin/ with busybox and one symlink per applet, built once per busybox binary."""
        binary = shutil.which("busybox", path="/usr/bin:/bin")
        if binary is None:
            raise EnvironmentError_("busybox not found — install Debian's busybox-static")
        with open(binary, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        parent = self.staging.ensure_dir("env")
        final = os.path.join(parent, f"busybox-{digest}")
        if os.path.isdir(final):
            return os.path.join(final, "bin")
        work = tempfile.mkdtemp(prefix="busybox-", dir=parent)
        bindir = os.path.join(work, "bin")
        os.mkdir(bindir)
        shutil.copy(binary, os.path.join(bindir, "busybox"))
        os.chmod(os.path.join(bindir, "busybox"), 0o755)
        applets = (
            subprocess.run([binary, "--list"], capture_output=True, check=True, timeout=30).stdout.decode().split()
        )
        for applet in applets:
            if applet != "busybox" and "/" not in applet:
                os.symlink("busybox", os.path.join(bindir, applet))
        os.chmod(bindir, 0o755)
        os.chmod(work, 0o755)
        try:
            os.rename(work, final)
        except OSError:  # another worker built it first
            shutil.rmtree(work, ignore_errors=True)
        return os.path.join(final, "bin")


def _tree_environment(name: str, root: str) -> Environment:
    """An operator tree: each top-level entry is bound at /<entry>."""
    binds = []
    for entry in sorted(os.listdir(root)):
        if entry in RESERVED:
            raise EnvironmentError_(
                f"environment {name!r}: top-level {entry!r} would hide part of the sandbox; move it (e.g. to /opt)"
            )
        binds.append((os.path.join(root, entry), "/" + entry))
    return Environment(name, tuple(binds), host_usr=False, path="/bin:/sbin:/opt/bin", description=f"tree at {root}")
