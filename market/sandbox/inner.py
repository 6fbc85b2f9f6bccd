"""In-sandbox runner: pid 1 inside bwrap. Stdlib only; runs under Debian's /usr/bin/python3.

Invoked as ``python3 -I -S inner.py CONFIG`` (CONFIG: hex of marshal.dumps of plain data;
marshal is built in, while importing json costs re + enum, ~5-15 ms per launch). It

1. opens the status channel (fd given in the config; close-on-exec so jobs never see it),
2. makes itself undumpable (a job with the same uid cannot open /proc/1/fd/*),
3. applies Landlock (file-system allow-list; TCP bind/connect denied from ABI 4),
   and lowers its priority (nice, inherited by every step),
4. sets no_new_privs and loads the seccomp BPF blob the worker compiled, with one prctl,
5. runs each step in order: fork, lower RLIMIT_AS to the job's memory limit, load the
   step's own seccomp filter on top when there is one (a single-process job: no fork), exec,
   and after each step kills and reaps everything left in the sandbox (a fork bomb or a
   daemon cannot outlive its step, and zombies cannot pile up against RLIMIT_NPROC),
6. reports one JSON line per step on the status channel, and exits with the status of
   the last step run.

The worker trusts nothing a job prints; only this process writes the status channel.
"""

# Only built-in/C modules: 'ctypes' and 'signal' pull in enum, re and friends, which cost
# ~8 ms of CPU on every launch; this file talks to _ctypes and _signal directly.
import _ctypes
import marshal
import os
import resource
import sys
from _struct import pack

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal  # _signal has no stub; signal re-exports it (with enums, which are ints)
else:
    import _signal as signal

SYS_LANDLOCK_CREATE_RULESET = 444  # same number on every architecture (unified table)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1

FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5
NET_BIND_TCP = 1 << 0  # ABI 4
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1

FILE_ONLY = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV
READ = FS_READ_FILE | FS_READ_DIR
READ_EXEC = READ | FS_EXECUTE
WRITE = (
    FS_WRITE_FILE
    | FS_REMOVE_DIR
    | FS_REMOVE_FILE
    | FS_MAKE_DIR
    | FS_MAKE_REG
    | FS_MAKE_SOCK
    | FS_MAKE_FIFO
    | FS_MAKE_SYM
    | FS_REFER
    | FS_TRUNCATE
)

PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2


class c_long(_ctypes._SimpleCData):
    _type_ = "l"


class c_char(_ctypes._SimpleCData):
    _type_ = "c"


class _Libc:
    # dlopen(NULL) is the main program and its libraries (dlopen(3)); the stub does not allow None
    _handle = _ctypes.dlopen(None)  # type: ignore[arg-type]


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_long


# _Libc stands in for a ctypes.CDLL (all CFuncPtr reads of it is _handle): importing ctypes costs
# ~8 ms a launch, see above
class _Libc_functions:
    syscall = _Func(("syscall", _Libc))  # type: ignore[arg-type]
    prctl = _Func(("prctl", _Libc))  # type: ignore[arg-type]


libc = _Libc_functions
get_errno = _ctypes.get_errno


def buffer(data):
    """A mutable C copy of ``data`` that stays put in memory (for pointers in structs)."""
    array = type("buf", (_ctypes.Array,), {"_type_": c_char, "_length_": len(data)})
    # an Array subclass, which the checker cannot see through type()
    return array.from_buffer_copy(data)  # type: ignore[attr-defined]


def fail(message):
    """A sandbox set-up failure: say so on stderr and exit with the 'sandbox failed' code."""
    os.write(2, ("sandbox: " + message + "\n").encode())
    os._exit(125)


def handled_fs(abi):
    """All file-system rights this Landlock ABI knows, so unknown ones are not left open."""
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def apply_landlock(rules):
    """Restrict this process and its future children to ``rules`` ({path: right-names}).

    Returns the ABI version used. Paths missing from the sandbox are skipped (an
    environment may not have every directory).
    """
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        raise OSError(get_errno(), "landlock unavailable")
    fs = handled_fs(abi)
    net = NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0
    scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL if abi >= 6 else 0
    if abi >= 6:
        attr = pack("QQQ", fs, net, scoped)
    elif abi >= 4:
        attr = pack("QQ", fs, net)
    else:
        attr = pack("Q", fs)
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        raise OSError(get_errno(), "landlock_create_ruleset")
    try:
        for path, kind in rules.items():
            access = {"ro": READ, "rx": READ_EXEC, "rw": READ | WRITE, "dev": READ | FS_WRITE_FILE | FS_IOCTL_DEV}[
                kind
            ] & fs
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                if not os.path.isdir(path):
                    access &= FILE_ONLY
                rule = pack("=Qi", access, fd)
                if libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH, rule, 0) < 0:
                    raise OSError(get_errno(), "landlock_add_rule " + path)
            finally:
                os.close(fd)
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) < 0:
            raise OSError(get_errno(), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def load_seccomp(blob):
    """Load a compiled classic-BPF filter (array of 8-byte sock_filter) with one prctl."""
    if not blob or len(blob) % 8:
        raise ValueError("seccomp filter is not a BPF program (%d bytes)" % len(blob))
    program = buffer(blob)
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    fprog = pack("HxxxxxxP", len(blob) // 8, _ctypes.addressof(program))
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, fprog, 0, 0) != 0:
        raise OSError(get_errno(), "prctl(PR_SET_SECCOMP)")


def kill_and_reap_rest(usage):
    """Kill every other process in this pid namespace and reap them all (we are pid 1)."""
    while True:
        try:
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            _, _, ru = os.wait4(-1, 0)
        except ChildProcessError:
            return
        usage[0] += ru.ru_utime + ru.ru_stime
        usage[1] = max(usage[1], ru.ru_maxrss)


def exec_path(argv, env):
    """execvpe without os.execvpe: that one imports 'warnings' lazily, which Landlock
    may forbid once /usr is hidden from the job (e.g. the busybox environment)."""
    name = argv[0]
    if "/" in name:
        os.execve(name, argv, env)
    error: OSError | None = None
    for directory in env.get("PATH", "/usr/bin:/bin").split(":"):
        try:
            os.execve((directory or ".") + "/" + name, argv, env)
        except (FileNotFoundError, NotADirectoryError) as exc:
            error = error or exc
        except OSError as exc:
            error = exc
    raise error or FileNotFoundError(2, "not found", name)


def run_step(index, argv, env, cwd, memory_bytes, usage, report, step_filter=None):
    """Run one step to completion; return (exit_code, signal).

    ``step_filter``: a BPF blob the step loads on top of the sandbox's filter just before
    exec (filters stack; the runner itself keeps its ability to fork the next step)."""
    try:
        pid = os.fork()
    except OSError as exc:
        # Only if the job user's processes elsewhere on the host fill RLIMIT_NPROC.
        message = "cannot start step %d: fork failed: %s" % (index + 1, exc.strerror)
        os.write(2, ("sandbox: " + message + "\n").encode())
        report({"step": index, "exec_error": message})
        return 127, None
    if pid == 0:
        try:
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
            if memory_bytes:
                resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
            os.chdir(cwd)
            if step_filter is not None:
                try:
                    load_seccomp(step_filter)
                except (OSError, ValueError) as exc:  # never run the job without it
                    os.write(2, ("sandbox: step seccomp filter: %s\n" % exc).encode())
                    os._exit(125)
            exec_path(argv, env)
        except OSError as exc:
            message = "cannot execute %s: %s" % (argv[0], exc.strerror)
            os.write(2, ("sandbox: " + message + "\n").encode())
            report({"step": index, "exec_error": message})
            os._exit(127)
        except BaseException:
            os._exit(127)
    while True:
        # Orphans re-parent to us, so reap anything until the step itself ends.
        got, status, ru = os.wait4(-1, 0)
        usage[0] += ru.ru_utime + ru.ru_stime
        usage[1] = max(usage[1], ru.ru_maxrss)
        if got == pid:
            break
    kill_and_reap_rest(usage)
    if os.WIFSIGNALED(status):
        return None, os.WTERMSIG(status)
    return os.WEXITSTATUS(status), None


def encode(value):
    """Minimal JSON for the status records (str, int, float, bool, None, flat dicts)."""
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "{" + ", ".join(encode(str(k)) + ": " + encode(v) for k, v in value.items()) + "}"
    out = []
    for ch in str(value):
        if ch in '"\\' or ord(ch) < 0x20 or ord(ch) > 0x7E:
            out.append("\\u%04x" % ord(ch) if ord(ch) < 0x10000 else "?")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def main():
    config = marshal.loads(bytes.fromhex(sys.argv[1]))
    status_fd = config.get("status_fd")
    if status_fd is not None:
        os.set_inheritable(status_fd, False)

    def report(record):
        if status_fd is not None:
            os.write(status_fd, (encode(record) + "\n").encode())

    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    # Landlock needs no_new_privs (we have no CAP_SYS_ADMIN); seccomp needs it too.
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        fail("prctl(PR_SET_NO_NEW_PRIVS) failed")
    layers = {}
    blob = step_blob = None
    if config.get("seccomp"):
        # Read before Landlock so /.sandbox need not stay readable for the job.
        try:
            with open(config["seccomp"], "rb") as f:
                blob = f.read()
            if config.get("seccomp_step"):
                with open(config["seccomp_step"], "rb") as f:
                    step_blob = f.read()
        except OSError as exc:
            fail("seccomp filter: %s" % exc)
    if config.get("landlock") is not None:
        try:
            layers["landlock"] = apply_landlock(config["landlock"])
        except OSError as exc:
            if config.get("landlock_required"):
                fail("landlock: %s" % exc)
            layers["landlock"] = "failed: %s" % exc
    if blob is not None:
        try:
            load_seccomp(blob)
            layers["seccomp"] = True
            if step_blob is not None:
                layers["nofork"] = True
        except (OSError, ValueError) as exc:
            fail("seccomp: %s" % exc)
    report({"layers": layers})

    # The runner itself should see EPIPE/EFBIG as errors, not die of the signals (Python
    # already ignores both); each step gets them back at their defaults, because ignored
    # signals survive exec and `yes | head` or a file-size limit would then misbehave.
    sig: int | None  # a signal number here, then how the last step ended
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_IGN)
    if config.get("nice"):
        os.nice(config["nice"])
    env = config.get("env", {})
    usage = [0.0, 0]
    code, sig = 0, None
    for index, argv in enumerate(config["steps"]):
        before = usage[0]
        code, sig = run_step(
            index, argv, env, config.get("cwd", "/"), config.get("memory_bytes"), usage, report, step_blob
        )
        report({"step": index, "exit": code, "signal": sig, "cpu": round(usage[0] - before, 6), "maxrss_kb": usage[1]})
        if (code != 0 or sig is not None) and config.get("stop_on_failure", True):
            break
    report({"done": True, "cpu": round(usage[0], 6), "maxrss_kb": usage[1]})
    os._exit(code if sig is None else 128 + sig)


if __name__ == "__main__":
    main()
