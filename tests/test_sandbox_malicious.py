"""Malicious jobs through the real sandbox (bwrap, setpriv, prlimit; no mocks).

Each job is a small Python script run with /usr/bin/python3 inside the sandbox. Each must be
contained, classified, and leave the runner able to run the next job.
"""

import os
import textwrap
import time

import pytest
import pytest_twisted

from market.sandbox import Limits, run
from market.sandbox.testing import BOMB_USER, JOB_USER, require_sandbox

PY = "/usr/bin/python3"


@pytest.fixture(autouse=True)
def sandbox_available():
    require_sandbox()


def job(code, limits=Limits(wall_seconds=10), user=JOB_USER, **kw):
    from twisted.internet import reactor

    return run(reactor, [PY, "-c", textwrap.dedent(code)], limits=limits, user=user, **kw)


async def still_works():
    outcome = await job("print('alive')")
    assert (outcome.status, outcome.stdout) == ("ok", b"alive\n")


def stray_processes(marker):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if marker.encode() in f.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


@pytest_twisted.ensureDeferred
async def test_a_plain_job_runs_as_the_unprivileged_user():
    outcome = await job("import os, sys; print(os.getuid(), os.getpid(), sys.stdin.read())", stdin=b"input")
    assert outcome.status == "ok" and outcome.exit_code == 0
    uid, pid, data = outcome.stdout.split()
    assert int(uid) != 0 and int(pid) > 1 and data == b"input"
    assert outcome.cpu_seconds is not None and outcome.wall_seconds > 0


@pytest_twisted.ensureDeferred
async def test_fork_bomb_is_capped_by_the_process_limit_and_cleaned_up():
    marker = "forkbomb-%d" % os.getpid()
    outcome = await job(
        f"""
        import os, sys, time
        sys.argv.append({marker!r})
        forks = 0
        while True:
            try:
                pid = os.fork()
            except OSError:
                break
            if pid == 0:
                time.sleep(1000)   # children wait; the runner must kill them
            forks += 1
        print(forks)
        """,
        limits=Limits(processes=16, wall_seconds=10),
        user=BOMB_USER,
    )
    assert outcome.status == "ok"
    assert int(outcome.stdout) < 16
    assert outcome.wall_seconds < 5
    await still_works()


@pytest_twisted.ensureDeferred
async def test_endless_fork_bomb_ends_at_the_wall_limit():
    outcome = await job(
        """
        import os
        while True:
            try:
                os.fork()
            except OSError:
                pass
        """,
        limits=Limits(processes=16, wall_seconds=2),
        user=BOMB_USER,
    )
    assert outcome.status == "timeout"
    await still_works()


@pytest_twisted.ensureDeferred
async def test_memory_balloon_is_classified_memory():
    outcome = await job(
        """
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
        """,
        limits=Limits(memory_mb=64),
    )
    assert outcome.status == "memory", outcome
    await still_works()


@pytest_twisted.ensureDeferred
async def test_loop_ignoring_signals_is_stopped_by_the_cpu_limit():
    outcome = await job(
        """
        import signal
        for s in (signal.SIGTERM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        while True:
            pass
        """,
        limits=Limits(cpu_seconds=1, wall_seconds=30),
    )
    # The CPU limit ended it (SIGKILL at the 2 s hard limit), not the wall timer; on a
    # busy 2-core machine 2 s of CPU can take several seconds of wall time.
    assert outcome.status == "timeout" and "CPU" in outcome.message, outcome
    await still_works()


@pytest_twisted.ensureDeferred
async def test_200_mb_of_output_overflows_with_the_first_bytes_kept():
    outcome = await job(
        """
        import sys
        chunk = b"0123456789" * 100000
        for _ in range(200):
            sys.stdout.buffer.write(chunk)
        """,
        limits=Limits(output_bytes=100_000, wall_seconds=20),
    )
    assert outcome.status == "overflow"
    assert outcome.stdout == (b"0123456789" * 10000)
    assert outcome.wall_seconds < 5
    await still_works()


@pytest_twisted.ensureDeferred
async def test_disk_flood_with_one_big_file_stops_at_the_disk_limit():
    outcome = await job(
        """
        import os
        written = 0
        try:
            with open("/tmp/flood", "wb") as f:
                while True:
                    f.write(b"x" * 65536)
                    written += 65536
        except OSError as exc:
            print("stopped", exc.errno, written)
        """,
        limits=Limits(disk_mb=8),
    )
    assert outcome.status == "ok", outcome
    words = outcome.stdout.split()
    assert words[0] == b"stopped" and int(words[2]) <= 8 << 20
    await still_works()


@pytest_twisted.ensureDeferred
async def test_disk_flood_with_many_small_files_stops_at_the_disk_limit():
    outcome = await job(
        """
        import os
        n = 0
        try:
            while True:
                with open("/work/f%d" % n, "wb") as f:
                    f.write(b"y" * 100)
                n += 1
        except OSError as exc:
            print("stopped", exc.errno, n)
        """,
        limits=Limits(disk_mb=4),
    )
    assert outcome.status == "ok", outcome
    words = outcome.stdout.split()
    # Each small file takes at least one 4 KiB page of the tmpfs.
    assert words[0] == b"stopped" and int(words[2]) <= 4 << 8
    await still_works()


@pytest_twisted.ensureDeferred
async def test_host_secrets_are_not_readable(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token-value")
    os.chmod(tmp_path, 0o755)
    token.chmod(0o644)  # readable by anyone on the host: only the sandbox keeps it out
    outcome = await job(f"""
        for path in ("/etc/shadow", "/etc/passwd", {str(token)!r}, "/root/.bashrc",
                     "/proc/1/environ"):
            try:
                print(path, open(path).read()[:40])
            except OSError as exc:
                print(path, "denied", exc.errno)
        """)
    assert outcome.status == "ok"
    assert b"s3cret" not in outcome.stdout and b"root:" not in outcome.stdout
    assert outcome.stdout.count(b"denied") == 5


@pytest_twisted.ensureDeferred
async def test_writing_to_ssh_dirs_does_not_reach_the_host():
    before = os.path.exists("/root/.ssh/authorized_keys") and open("/root/.ssh/authorized_keys", "rb").read()
    outcome = await job("""
        import os
        for path in ("/root/.ssh/authorized_keys", os.path.expanduser("~/.ssh/authorized_keys"),
                     "/home/x/.ssh/authorized_keys"):
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                open(path, "a").write("ssh-ed25519 AAAA attacker\\n")
                print(path, "written")
            except OSError as exc:
                print(path, "denied", exc.errno)
        """)
    assert outcome.status == "ok"
    # Only the sandbox's own throw-away HOME (/work on a tmpfs) is writable.
    assert b"/root/.ssh/authorized_keys denied" in outcome.stdout
    assert b"/home/x/.ssh/authorized_keys denied" in outcome.stdout
    after = os.path.exists("/root/.ssh/authorized_keys") and open("/root/.ssh/authorized_keys", "rb").read()
    assert before == after


@pytest_twisted.ensureDeferred
async def test_network_is_unreachable_and_the_listener_receives_nothing():
    from twisted.internet import protocol, reactor

    received = []

    class Spy(protocol.Protocol):
        def connectionMade(self):
            received.append("connect")

        def dataReceived(self, data):
            received.append(data)

    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Spy), interface="127.0.0.1")
    try:
        number = port.getHost().port
        outcome = await job(f"""
            import socket, ctypes
            try:
                s = socket.create_connection(("127.0.0.1", {number}), timeout=2)
                s.sendall(b"leak")
                print("connected")
            except OSError as exc:
                print("refused", exc.errno)
            libc = ctypes.CDLL(None, use_errno=True)
            print("raw socket", libc.socket(2, 1, 0), ctypes.get_errno())
            """)
    finally:
        await port.stopListening()
    assert outcome.status == "ok"
    assert b"refused" in outcome.stdout and b"connected" not in outcome.stdout
    assert received == []


@pytest_twisted.ensureDeferred
async def test_ctypes_cannot_reach_dangerous_syscalls_or_escalate():
    require_sandbox(layers=("seccomp",))
    outcome = await job("""
        import ctypes, errno, os
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        calls = {"ptrace": (101, 16, 1, 0, 0), "unshare": (272, 0x10000000),
                 "mount": (165, b"none", b"/tmp", b"tmpfs", 0, None), "bpf": (321, 0, 0, 0),
                 "keyctl": (250, 0, 0), "setuid0": (105, 0)}
        for name, args in calls.items():
            rc = libc.syscall(*args)
            print(name, rc, errno.errorcode.get(ctypes.get_errno()), flush=True)
        pid = os.fork()
        if pid == 0:
            libc.execv(b"/usr/bin/id", (ctypes.c_char_p * 3)(b"id", b"-u", None))
            os._exit(99)
        os.waitpid(pid, 0)
        """)
    assert outcome.status == "ok", outcome
    lines = outcome.stdout.decode().splitlines()
    assert len(lines) == 7, lines
    for line in lines[:-1]:
        name, rc, err = line.split()
        assert rc == "-1" and err in ("EPERM", "EACCES", "EINVAL"), line  # uid 0 is unmapped
    assert lines[-1] != "0"  # exec works, but still not root


@pytest_twisted.ensureDeferred
async def test_setsid_double_fork_daemon_does_not_survive_the_run():
    marker = "daemon-marker-%d-%d" % (os.getpid(), time.time_ns())
    outcome = await job(f"""
        import os, sys
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                os.execv("{PY}", ["{PY}", "-c", "import time; time.sleep(600)", {marker!r}])
            os._exit(0)
        print("parent done")
        """)
    assert outcome.status == "ok" and outcome.stdout == b"parent done\n"
    assert stray_processes(marker) == []


@pytest_twisted.ensureDeferred
async def test_deep_recursion_is_contained():
    outcome = await job(
        """
        import sys
        sys.setrecursionlimit(10 ** 7)
        def down(n):
            return down(n + 1) + 1
        down(0)
        """,
        limits=Limits(memory_mb=64, wall_seconds=10),
    )
    # Either Python notices (RecursionError/MemoryError) or the C stack overflows.
    assert outcome.status in ("crash", "ok", "memory")
    assert outcome.status != "ok" or outcome.exit_code != 0
    await still_works()


@pytest_twisted.ensureDeferred
async def test_cancelling_kills_the_sandbox_at_once():
    from twisted.internet import reactor, task

    marker = "cancel-marker-%d" % time.time_ns()
    d = job(f"import time, sys; sys.argv.append({marker!r}); print('up', flush=True); time.sleep(600)")
    await task.deferLater(reactor, 0.5, lambda: None)
    started = time.monotonic()
    d.cancel()
    outcome = await d
    assert outcome.status == "abort"
    while stray_processes(marker) and time.monotonic() - started < 2:
        await task.deferLater(reactor, 0.05, lambda: None)
    assert stray_processes(marker) == []


@pytest_twisted.ensureDeferred
async def test_wall_timeout_keeps_output_so_far():
    outcome = await job("import time; print('Start', flush=True); time.sleep(600)", limits=Limits(wall_seconds=1))
    assert (outcome.status, outcome.stdout) == ("timeout", b"Start\n")


@pytest_twisted.ensureDeferred
async def test_refused_when_root_names_no_job_user():
    if os.geteuid() != 0:
        pytest.skip("only a root worker must name a job user")
    from twisted.internet import reactor

    outcome = await run(reactor, [PY, "-c", "pass"], user=None)
    assert outcome.status == "refused" and "root" in outcome.message


@pytest_twisted.ensureDeferred
async def test_jobs_can_run_as_an_unnamed_uid():
    if os.geteuid() != 0:
        pytest.skip("only root can switch to another uid")
    from twisted.internet import reactor

    outcome = await run(reactor, [PY, "-c", "import os; print(os.getuid())"], user="100017")
    assert (outcome.status, outcome.stdout) == ("ok", b"100017\n"), outcome
