"""Unpack a task or environment filesystem (directory, .zip, .tar[.gz], .sfs) into a
world-readable tree the job user can read through a read-only bind."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tarfile
import tempfile
import zipfile

__all__ = ["FilesystemError", "unpack", "sanitize", "measure", "MAX_UNPACKED_BYTES", "MAX_ENTRIES"]

# A task filesystem is scripts and data; a cap stops a zip bomb filling the worker's disk.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024
# Each entry costs an inode and a directory walk; empty files would pass any byte cap.
MAX_ENTRIES = 20_000


class FilesystemError(ValueError):
    """The filesystem image is missing, of an unknown kind, or unsafe to unpack."""


def unpack(source: str, parent: str, max_bytes: int = MAX_UNPACKED_BYTES, max_entries: int = MAX_ENTRIES) -> str:
    """Unpack ``source`` into a new directory under ``parent`` and return that directory.

    The image's own index is read first (:func:`measure`): one that would unpack to more
    than ``max_bytes`` or ``max_entries`` is refused before a byte is written. Device nodes,
    fifos and sockets are dropped and set-id bits cleared whatever the format: unsquashfs
    running as root would otherwise recreate them, and a device node bound into the sandbox
    would be a way out.
    """
    if not os.path.exists(source):
        raise FilesystemError(f"filesystem {source!r} does not exist")
    measure(source, max_bytes, max_entries)
    dest = tempfile.mkdtemp(prefix="fs-", dir=parent)
    try:
        name = source.lower()
        if os.path.isdir(source):
            _copy_tree(source, dest)
        elif name.endswith(".zip"):
            _unzip(source, dest)
        elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
            _untar(source, dest)
        elif name.endswith((".sfs", ".squashfs")):
            _unsquash(source, dest)
        else:
            raise FilesystemError(f"filesystem {source!r} must be a directory, .zip, .tar(.gz) or .sfs (squashfs) file")
        sanitize(dest, max_bytes)
        return dest
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def sanitize(root: str, max_bytes: int = MAX_UNPACKED_BYTES) -> None:
    """Keep only regular files, directories and symlinks; make them readable by all,
    writable by none but the owner, and never set-id."""
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for entry in dirnames + filenames:
            path = os.path.join(dirpath, entry)
            st = os.lstat(path)  # never follow a symlink out of the tree
            if stat.S_ISLNK(st.st_mode) or stat.S_ISDIR(st.st_mode):
                continue
            if not stat.S_ISREG(st.st_mode):
                os.unlink(path)
                continue
            total += st.st_size
            os.chmod(path, 0o755 if st.st_mode & 0o111 else 0o644)
    if total > max_bytes:
        raise FilesystemError(f"filesystem unpacks to {_mb(total)}, more than the {_mb(max_bytes)} allowed")


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB" if n >= 1 << 20 else f"{n} bytes"


class _Budget:
    """Adds up an image's entries as its index lists them; refuses at the first one over."""

    def __init__(self, source: str, max_bytes: int, max_entries: int) -> None:
        self.source, self.max_bytes, self.max_entries = source, max_bytes, max_entries
        self.bytes = 0
        self.entries = 0

    def add(self, size: int) -> None:
        self.entries += 1
        self.bytes += max(0, size)
        if self.bytes > self.max_bytes:
            raise FilesystemError(
                f"filesystem {os.path.basename(self.source)!r} would unpack to more than {_mb(self.max_bytes)}"
                f" (the disk limit); refused before unpacking — make the task filesystem smaller"
            )
        if self.entries > self.max_entries:
            raise FilesystemError(
                f"filesystem {os.path.basename(self.source)!r} has more than {self.max_entries} entries;"
                " refused before unpacking — pack fewer, larger files"
            )


def measure(source: str, max_bytes: int = MAX_UNPACKED_BYTES, max_entries: int = MAX_ENTRIES) -> tuple[int, int]:
    """(bytes, entries) the image would unpack to, from its own index (zip central directory,
    tar headers, squashfs inode table via ``unsquashfs -stat``/``-lls``), without unpacking it.

    Raises FilesystemError as soon as the running total passes ``max_bytes`` or
    ``max_entries`` (a compressed tar is read only that far), or if the index is unreadable.
    """
    budget = _Budget(source, max_bytes, max_entries)
    name = source.lower()
    if os.path.isdir(source):
        for dirpath, dirnames, filenames in os.walk(source):
            for entry in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, entry))
                budget.add(st.st_size if stat.S_ISREG(st.st_mode) else 0)
    elif name.endswith(".zip"):
        try:
            with zipfile.ZipFile(source) as archive:
                for info in archive.infolist():
                    # ZipExtFile stops at file_size, so the directory's figure bounds what is written
                    budget.add(info.file_size)
        except zipfile.BadZipFile as exc:
            raise FilesystemError(f"{source!r} is not a valid zip file: {exc}") from None
    elif name.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        try:
            with tarfile.open(source) as archive:
                for member in archive:  # streaming: stops reading at the first entry over
                    budget.add(member.size if member.isfile() else 0)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise FilesystemError(f"cannot read {source!r}: {exc}") from None
    elif name.endswith((".sfs", ".squashfs")):
        _measure_squashfs(source, budget)
    return budget.bytes, budget.entries


def _measure_squashfs(source: str, budget: _Budget) -> None:
    tool = shutil.which("unsquashfs")
    if tool is None:
        raise FilesystemError(f"unsquashfs not found (Debian package squashfs-tools) — needed for {source!r}")
    stat_proc = subprocess.run(
        [tool, "-stat", source], stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False
    )
    inodes = None
    for line in stat_proc.stdout.decode(errors="replace").splitlines():
        if line.startswith("Number of inodes"):
            try:
                inodes = int(line.split()[-1])
            except ValueError:
                pass
    if stat_proc.returncode != 0 or inodes is None:
        lines = stat_proc.stderr.decode(errors="replace").strip().splitlines()
        raise FilesystemError(f"cannot read squashfs {source!r}: {lines[-1] if lines else 'not a squashfs image'}")
    if inodes > budget.max_entries + 1:  # + the root directory
        budget.entries = inodes
        budget.add(0)
    # one line per entry, the size before the name: "-rw-r--r-- root/root 3 2026-12-04 15:09 /control"
    with subprocess.Popen(
        [tool, "-lls", "-no-progress", "-d", "", source],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as lister:
        assert lister.stdout is not None  # a PIPE
        try:
            for raw in lister.stdout:
                parts = raw.split(None, 3)
                if len(parts) < 3 or not parts[2].isdigit():
                    continue  # a name's own newline, or unsquashfs's chatter
                budget.add(int(parts[2]) if parts[0][:1] == b"-" else 0)
        finally:
            lister.kill()
            lister.wait()


def _copy_tree(source: str, dest: str) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        rel = os.path.relpath(dirpath, source)
        target = os.path.normpath(os.path.join(dest, rel))
        os.makedirs(target, exist_ok=True)
        for entry in dirnames + filenames:
            src = os.path.join(dirpath, entry)
            st = os.lstat(src)
            if stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), os.path.join(target, entry))
                if entry in dirnames:
                    dirnames.remove(entry)  # do not walk into a linked directory
            elif stat.S_ISREG(st.st_mode):
                shutil.copy2(src, os.path.join(target, entry))
            # directories are made when walked; fifos/devices are skipped (copy would hang)


def _unzip(source: str, dest: str) -> None:
    try:
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                mode = info.external_attr >> 16
                # zipfile drops unix modes; keep the execute bit scripts need.
                path = archive.extract(info, dest)  # extract() strips '..' and '/'
                if mode & 0o111 and not info.is_dir():
                    os.chmod(path, 0o755)
    except zipfile.BadZipFile as exc:
        raise FilesystemError(f"{source!r} is not a valid zip file: {exc}") from None


def _untar(source: str, dest: str) -> None:
    if not hasattr(tarfile, "data_filter"):
        raise FilesystemError(
            "this Python's tarfile has no extraction filters (needs "
            "3.9.17+/3.10.12+/3.11.4+); use a .zip or .sfs task filesystem"
        )
    try:
        with tarfile.open(source) as archive:
            # 'data' refuses absolute paths, '..', devices and links leaving the tree.
            archive.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise FilesystemError(f"cannot unpack {source!r}: {exc}") from None


def _unsquash(source: str, dest: str) -> None:
    tool = shutil.which("unsquashfs")
    if tool is None:
        raise FilesystemError(f"unsquashfs not found (Debian package squashfs-tools) — needed for {source!r}")
    target = os.path.join(dest, "root")
    proc = subprocess.run(
        [tool, "-no-xattrs", "-quiet", "-no-progress", "-d", target, source],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
    )
    if proc.returncode not in (0, 2) or not os.path.isdir(target):
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise FilesystemError(f"cannot unpack squashfs {source!r}: {lines[-1] if lines else 'unsquashfs failed'}")
    for entry in os.listdir(target):
        os.rename(os.path.join(target, entry), os.path.join(dest, entry))
    os.rmdir(target)
