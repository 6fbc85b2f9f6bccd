"""Compile the job seccomp filter once, in the worker, to a classic-BPF blob.

The blob is loaded inside the sandbox by ``inner.py`` with a single prctl, so the
in-sandbox interpreter (Debian's python3, no pyseccomp) needs no library.
"""

from __future__ import annotations

import errno
import os
import tempfile

__all__ = ["DENIED_SYSCALLS", "build_filter", "build_nofork_filter", "SeccompUnavailable"]

# Each of these lets a job reach past its sandbox (other processes, the kernel, new
# namespaces, mounts, keys) or exposes a large attack surface jobs never need.
DENIED_SYSCALLS = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "pidfd_getfd",
    "kcmp",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "unshare",
    "setns",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "fanotify_init",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "vhangup",
    "open_by_handle_at",
    "name_to_handle_at",
    "lookup_dcookie",
    "iopl",
    "ioperm",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "personality",
)

# clone() flags that create namespaces; bwrap --disable-userns already blocks user
# namespaces, this is the second lock on the same door.
CLONE_NS_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x00000080
CLONE_THREAD = 0x00010000
TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_UNIX = 1


class SeccompUnavailable(RuntimeError):
    """pyseccomp/libseccomp is missing, so no filter can be compiled."""


def build_filter(path: str | None = None) -> bytes:
    """Compile the job filter and return the BPF bytes (also written to ``path`` if given).

    Denied calls fail with EPERM rather than killing, so a job sees an ordinary error
    it can report. clone3 fails with ENOSYS because its flags live in memory a filter
    cannot read; libc then falls back to clone(), whose flags we can check. Sockets are
    limited to AF_UNIX: the sandbox has no network, and Landlock ABI < 4 cannot stop TCP.
    """
    seccomp = _pyseccomp()
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        deny = seccomp.ERRNO(errno.EPERM)
        for name in DENIED_SYSCALLS:
            try:
                flt.add_rule(deny, name)
            except (ValueError, OSError):
                pass  # unknown on this architecture: nothing to deny
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
        # One rule per flag: libseccomp ORs rules, and MASKED_EQ tests one masked value.
        for flag in _bits(CLONE_NS_FLAGS):
            flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
        flt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCSTI))
        flt.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, TIOCLINUX))
        flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.NE, AF_UNIX))
        flt.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socketpair", seccomp.Arg(0, seccomp.NE, AF_UNIX))
    except (OSError, RuntimeError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp could not compile the filter: {exc}") from None
    return _export(flt, path)


def build_nofork_filter(path: str | None = None) -> bytes:
    """Compile the filter stacked on top of the job filter for a single-process job (a market
    job: the tasklet runtime never starts a process): fork, vfork and every clone that is not a
    new thread fail with EPERM. clone3 already fails with ENOSYS in the job filter, so libc's
    fallback to clone() lands here, where the flags are visible. Threads share their process's
    address space, so its RLIMIT_AS still caps them all: one process is the job's whole memory.
    """
    seccomp = _pyseccomp()
    try:
        flt = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
        deny = seccomp.ERRNO(errno.EPERM)
        for name in ("fork", "vfork"):
            try:
                flt.add_rule(deny, name)
            except (ValueError, OSError):
                pass  # not on this architecture (arm64 has only clone)
        flt.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, CLONE_THREAD, 0))
        flt.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    except (OSError, RuntimeError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp could not compile the no-fork filter: {exc}") from None
    return _export(flt, path)


def _pyseccomp():
    try:
        import pyseccomp
    except ImportError as exc:
        raise SeccompUnavailable(
            f"pyseccomp is not installed ({exc}); pip install pyseccomp (needs libseccomp2)"
        ) from None
    return pyseccomp


def _export(flt, path: str | None) -> bytes:
    try:
        with tempfile.TemporaryFile() as out:
            flt.export_bpf(out)
            out.seek(0)
            blob = out.read()
    except (OSError, RuntimeError, ValueError) as exc:
        raise SeccompUnavailable(f"libseccomp could not compile the filter: {exc}") from None
    if path is not None:
        _write_atomically(path, blob)
    return blob


def _bits(mask: int):
    bit = 1
    while bit <= mask:
        if mask & bit:
            yield bit
        bit <<= 1


def _write_atomically(path: str, data: bytes) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
