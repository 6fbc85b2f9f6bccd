"""The whole sandbox is bounded, not just each process: limits clamped to the worker's own, the
total-memory watchdog, the no-fork filter for single-process jobs, images measured before they
are unpacked, and the cgroup path (on a fake cgroup tree) that replaces the watchdog."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import textwrap
import threading
import time
import zipfile

import pytest
import pytest_twisted

from market.sandbox import Limits, run
from market.sandbox.limits import Caps, LimitsError, clamp
from market.sandbox.taskfs import FilesystemError, measure, unpack
from market.sandbox.testing import BOMB_USER, JOB_USER, require_sandbox
from market.sandbox.watchdog import MemoryWatchdog, descendants, tree_memory_kb

PY = "/usr/bin/python3"


# -- clamping ----------------------------------------------------------------------------------


def test_every_limit_is_lowered_to_the_workers_cap_and_each_lowering_is_named():
    asked = Limits(wall_seconds=3600, cpu_seconds=3600, memory_mb=4096, disk_mb=2048, output_bytes=1 << 30)
    limits, notes = clamp(asked, Caps(memory_mb=512, seconds=60, disk_mb=256, output_bytes=1 << 20))
    assert (limits.memory_mb, limits.wall_seconds, limits.cpu_seconds, limits.disk_mb, limits.output_bytes) == (
        512,
        60,
        60,
        256,
        1 << 20,
    )
    assert notes == (
        "memory 4096 MB -> 512 MB",
        "time 3600 s -> 60 s",
        "disk 2048 MB -> 256 MB",
        "output 1073741824 bytes -> 1048576 bytes",
    )


def test_limits_under_the_caps_are_left_alone():
    asked = Limits(wall_seconds=5, cpu_seconds=5, memory_mb=32, disk_mb=16, output_bytes=1024)
    assert clamp(asked, Caps()) == (asked, ())


def test_caps_the_sandbox_cannot_honour_are_refused():
    with pytest.raises(LimitsError, match="memory_mb"):
        Caps(memory_mb=2)


# -- images measured before unpacking ------------------------------------------------------------


def zeros_tar(path, size, name="big"):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    return str(path)


def test_a_tar_bomb_is_refused_from_its_headers_before_anything_is_written(tmp_path):
    bomb = zeros_tar(tmp_path / "bomb.tar.gz", 8 << 20)
    assert os.path.getsize(bomb) < 64 << 10
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FilesystemError, match="more than 1.0 MB .*refused before unpacking"):
        unpack(bomb, str(out), max_bytes=1 << 20)
    assert os.listdir(out) == []


def test_a_zip_bomb_is_refused_from_its_central_directory(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("control", "/task/run.sh\n")
        z.writestr("big", bytes(4 << 20))
    with pytest.raises(FilesystemError, match="refused before unpacking"):
        measure(str(bomb), max_bytes=1 << 20)
    assert measure(str(bomb), max_bytes=8 << 20) == ((4 << 20) + 13, 2)


def test_a_squashfs_bomb_is_refused_from_its_inode_table(tmp_path):
    if subprocess.run(["which", "mksquashfs"], capture_output=True).returncode:
        pytest.skip("mksquashfs missing")
    src = tmp_path / "src"
    src.mkdir()
    (src / "control").write_text("/task/run.sh\n")
    image = tmp_path / "bomb.sfs"
    pseudo = ["-p", "big f 644 0 0 head -c 8388608 /dev/zero"]
    argv = ["mksquashfs", str(src), str(image), "-noappend", "-quiet", *pseudo]
    subprocess.run(argv, check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(FilesystemError, match="refused before unpacking"):
        unpack(str(image), str(out), max_bytes=1 << 20)
    assert os.listdir(out) == []
    assert measure(str(image))[0] == (8 << 20) + 13


def test_too_many_entries_are_refused_whatever_their_size(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(50):
            z.writestr(f"f{i}", "")
    with pytest.raises(FilesystemError, match="more than 20 entries"):
        measure(str(archive), max_entries=20)


def test_a_directory_is_measured_too(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b").write_bytes(b"y" * 24)
    assert measure(str(tmp_path)) == (1024, 3)


# -- the watchdog ----------------------------------------------------------------------------------


def test_the_watchdog_fires_once_when_the_measure_passes_the_limit():
    seen = iter([10, 20, 30, 500, 600])
    fired = []
    done = threading.Event()

    def exceeded(kb):
        fired.append(kb)
        done.set()

    dog = MemoryWatchdog(1, 100, exceeded, interval=0.001, measure=lambda pid: next(seen)).start()
    assert done.wait(5)
    time.sleep(0.05)
    assert fired == [500] and dog.fired and dog.peak_kb == 500


def test_the_tree_is_measured_once_per_shared_page():
    """A parent holding 64 MB that forks three children: copy-on-write pages count once, not four
    times (proportional set size)."""
    code = textwrap.dedent(
        """
        import os, sys, time
        held = bytearray(b"x" * (64 << 20))
        for _ in range(3):
            if os.fork() == 0:
                time.sleep(30)
                os._exit(0)
        print("ready", flush=True)
        time.sleep(30)
        """
    )
    # the first level below the measured pid is skipped (the sandbox's runner): measure from a shell
    proc = subprocess.Popen(["/bin/sh", "-c", f"{PY} -c '{code}'"], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        assert len(descendants(proc.pid)) == 4
        kb = tree_memory_kb(proc.pid, skip_first_level=False)
        assert 64 << 10 <= kb < 100 << 10, kb
    finally:
        for pid in descendants(proc.pid):
            os.kill(pid, 9)
        proc.kill()
        proc.wait()


# -- through the real sandbox --------------------------------------------------------------------


def job(code, limits, user=JOB_USER, **kw):
    from twisted.internet import reactor

    return run(reactor, [PY, "-c", textwrap.dedent(code)], limits=limits, user=user, **kw)


FORKING_HOG = """
import os, time
for i in range(8):
    if os.fork() == 0:
        held = b"x" * (60 << 20)
        time.sleep(20)
        os._exit(0)
time.sleep(20)
"""


@pytest_twisted.ensureDeferred
async def test_children_each_under_the_limit_are_killed_at_their_total():
    require_sandbox()
    started = time.monotonic()
    outcome = await job(FORKING_HOG, Limits(memory_mb=128, wall_seconds=20, processes=16), user=BOMB_USER)
    assert outcome.status == "memory", outcome
    assert "together used more than the 128 MB" in outcome.message
    assert time.monotonic() - started < 5


@pytest_twisted.ensureDeferred
async def test_a_single_process_job_cannot_fork_spawn_or_unshare_but_may_use_threads():
    from market.sandbox.runner import start

    require_sandbox()
    code = textwrap.dedent(
        """
        import ctypes, os, subprocess, threading
        libc = ctypes.CDLL(None, use_errno=True)
        def unshare():
            if libc.unshare(0x10000000) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
        for name, call in [("fork", os.fork), ("spawn", lambda: subprocess.run(["/bin/true"])), ("unshare", unshare)]:
            try:
                call()
                print(name, "ok")
            except OSError as e:
                print(name, e.errno)
        t = threading.Thread(target=print, args=("thread ok",))
        t.start(); t.join()
        """
    )
    from twisted.internet import reactor

    execution = start(
        reactor, [PY, "-c", code], limits=Limits(wall_seconds=10), user=JOB_USER, level="full", single_process=True
    )
    outcome = await execution.result
    assert outcome.status == "ok", outcome
    assert outcome.stdout.decode().split("\n") == ["fork 1", "spawn 1", "unshare 1", "thread ok", ""]


@pytest_twisted.ensureDeferred
async def test_without_single_process_the_same_job_may_fork():
    require_sandbox()
    outcome = await job(
        "import os\npid = os.fork()\nif pid == 0: os._exit(0)\nos.waitpid(pid, 0)\nprint('forked')",
        Limits(wall_seconds=10),
    )
    assert outcome.stdout == b"forked\n"


# -- where a delegated cgroup exists (a fake tree here) ------------------------------------------


@pytest_twisted.ensureDeferred
async def test_with_a_cgroup_the_kernel_holds_the_total_and_no_watchdog_runs(tmp_path, monkeypatch):
    """The cgroup gets the clamped limits (memory + disk + the runner's 32 MB, processes + 2), and
    the run starts no watchdog: memory.max is the kernel's own total."""
    from twisted.internet import reactor

    from market.sandbox import runner
    from market.sandbox.probe import Probe, SandboxLevel, probe

    require_sandbox()
    base = tmp_path / "cg"
    base.mkdir()
    (base / "cgroup.controllers").write_text("memory pids\n")
    (base / "cgroup.subtree_control").write_text("memory pids")
    os.chmod(tmp_path, 0o755)
    real = probe(JOB_USER)
    found = Probe(SandboxLevel.FULL, (*real.present, "cgroup"), {}, real.landlock_abi, real.user, str(base))
    created = {}
    create = runner.JobCgroups.create

    def recording(self, memory_bytes, pids):
        path = create(self, memory_bytes, pids)
        created.update(memory=open(os.path.join(path, "memory.max")).read(), pids=pids, path=path)
        return path

    monkeypatch.setattr(runner.JobCgroups, "create", recording)
    limits, _ = clamp(Limits(memory_mb=4096, disk_mb=2048, wall_seconds=10), Caps(memory_mb=100, disk_mb=20))
    execution = runner.start(reactor, [PY, "-c", "print('in')"], limits=limits, user=JOB_USER, level=found)
    assert execution.watchdog is None and execution.cgroup == created["path"]
    outcome = await execution.result
    assert outcome.status == "ok" and outcome.stdout == b"in\n"
    assert created["memory"] == str((100 + 20 + 32) << 20) and created["pids"] == limits.processes + 2
    # the wrapper really entered it (on this fake tree: wrote its pid into a plain file)
    assert open(os.path.join(created["path"], "cgroup.procs")).read() == "0\n"
