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

__all__ = ["FilesystemError", "unpack", "sanitize", "MAX_UNPACKED_BYTES"]

# A task filesystem is scripts and data; a cap stops a zip bomb filling the worker's disk.
MAX_UNPACKED_BYTES = 512 * 1024 * 1024


class FilesystemError(ValueError):
    """The filesystem image is missing, of an unknown kind, or unsafe to unpack."""


def unpack(source: str, parent: str) -> str:
    """Unpack ``source`` into a new directory under ``parent`` and return that directory.

    Device nodes, fifos and sockets are dropped and set-id bits cleared whatever the
    format: unsquashfs running as root would otherwise recreate them, and a device
    node bound into the sandbox would be a way out.
    """
    if not os.path.exists(source):
        raise FilesystemError(f"filesystem {source!r} does not exist")
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
        sanitize(dest)
        return dest
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def sanitize(root: str) -> None:
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
    if total > MAX_UNPACKED_BYTES:
        raise FilesystemError(f"filesystem unpacks to {total} bytes, more than the {MAX_UNPACKED_BYTES} allowed")


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
            if sum(i.file_size for i in archive.infolist()) > MAX_UNPACKED_BYTES:
                raise FilesystemError(f"{source!r} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
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
            if sum(m.size for m in archive.getmembers() if m.isfile()) > MAX_UNPACKED_BYTES:
                raise FilesystemError(f"{source!r} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
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
