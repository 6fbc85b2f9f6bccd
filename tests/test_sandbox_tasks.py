"""pythia-style tasks: `.task` validation and the acceptance cases, through the real sandbox."""

import json
import os
import shutil
import subprocess
import tarfile
import time
import zipfile

import pytest
import pytest_twisted

from market.sandbox.environments import Environments
from market.sandbox.staging import default_staging
from market.sandbox.task import Task, TaskError, load_task, parse_task, read_control, run_task
from market.sandbox.testing import BOMB_USER, JOB_USER, require, require_sandbox

TASKS = os.path.join(os.path.dirname(__file__), "tasks")
VALID = {"environment": "busybox", "taskfs": "t.sfs", "limits": {"time": 60, "memory": 32, "disk": 50, "output": 1024}}


def task(environment="busybox", time=10, memory=32, disk=50, output=1024):
    return Task(environment, "unused", time, memory, disk, output)


def with_limits(**changes):
    data = json.loads(json.dumps(VALID))
    data["limits"].update(changes)
    return data


# --- validation (no sandbox needed) -------------------------------------------------


def test_the_pythia_example_parses():
    t = parse_task(json.dumps(VALID))
    assert (t.environment, t.time, t.memory, t.disk, t.output) == ("busybox", 60, 32, 50, 1024)
    assert t.limits().disk_mb == 16 and t.limits().output_bytes == 1024


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"time": "x"}, "limits.time must be a positive number of seconds, got 'x'"),
        ({"time": 0}, "limits.time must be a positive number of seconds, got 0"),
        ({"memory": 2.5}, "limits.memory must be a whole number of MB"),
        ({"disk": 150}, "limits.disk must be a whole percentage"),
        ({"output": -1}, "limits.output must be a whole number of characters >= 0, got -1"),
        ({"output": True}, "limits.output must be"),
        ({"cpu": 1}, "unknown limits key(s): cpu"),
    ],
)
def test_bad_limits_are_named_precisely(changes, message):
    with pytest.raises(TaskError) as info:
        parse_task(with_limits(**changes))
    assert message in str(info.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ("{not json", "task is not valid JSON"),
        ("[]", "task must be a JSON object"),
        ({**VALID, "environment": ""}, "environment must be a non-empty string"),
        ({**VALID, "taskfs": 3}, "taskfs must be a non-empty string, got 3"),
        ({"environment": "busybox", "taskfs": "x"}, "limits must be an object"),
        ({"environment": "busybox", "taskfs": "x", "limits": {"time": 1}}, "limits.memory is missing"),
    ],
)
def test_malformed_tasks_are_explained(data, message):
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_task(data)


def test_unknown_environment_is_refused_at_validation():
    envs = Environments(default_staging())
    assert {"busybox", "python"} <= set(envs.names())
    with pytest.raises(TaskError, match="unknown environment 'cobol'; available: .*busybox"):
        parse_task({**VALID, "environment": "cobol"}, envs)


def test_control_lists_steps_in_order(tmp_path):
    (tmp_path / "control").write_text("# comment\n/task/a.sh\n\nrun.sh --flag 'two words'\necho hi\n")
    (tmp_path / "run.sh").write_text("")
    assert read_control(str(tmp_path)) == [["/task/a.sh"], ["/task/run.sh", "--flag", "two words"], ["echo", "hi"]]


def test_a_taskfs_without_control_is_an_error(tmp_path):
    with pytest.raises(TaskError, match="no control file"):
        read_control(str(tmp_path))


def test_task_file_resolves_taskfs_next_to_it():
    t, taskfs = load_task(os.path.join(TASKS, "hello-world.task"))
    assert taskfs == os.path.join(TASKS, "hello-world.sfs") and t.memory == 32


# --- acceptance, through the real sandbox --------------------------------------------


@pytest.fixture
def sandbox():
    require_sandbox()


def fs(name):
    return os.path.join(TASKS, name)


def go(t, taskfs, input=None, user=JOB_USER, **kw):
    from twisted.internet import reactor

    return run_task(reactor, t, taskfs, input=input, user=user, **kw)


@pytest_twisted.ensureDeferred
async def test_hello_world_from_the_pythia_text(sandbox, tmp_path):
    require(None if shutil.which("mksquashfs") else "mksquashfs missing: install squashfs-tools")
    shutil.copy(fs("hello-world.task"), tmp_path)
    subprocess.run(
        ["mksquashfs", fs("hello-world"), str(tmp_path / "hello-world.sfs"), "-quiet", "-no-progress", "-all-root"],
        check=True,
        capture_output=True,
    )
    t, taskfs = load_task(str(tmp_path / "hello-world.task"))
    outcome = await go(t, taskfs)
    assert (outcome.status, outcome.output) == ("success", "Hello world!\n"), outcome


@pytest_twisted.ensureDeferred
async def test_a_task_greets_each_input_line(sandbox):
    outcome = await go(task(), fs("greet"), input=b"Alice\nBob\n")
    assert (outcome.status, outcome.output) == ("success", "Hello Alice!\nHello Bob!\n")


@pytest_twisted.ensureDeferred
async def test_output_exactly_at_the_limit_is_success(sandbox):
    outcome = await go(task(output=5), fs("abcde"))
    assert (outcome.status, outcome.output) == ("success", "abcde")


@pytest_twisted.ensureDeferred
async def test_output_over_the_limit_is_overflow_with_the_first_bytes(sandbox):
    outcome = await go(task(output=4), fs("abcde"))
    assert (outcome.status, outcome.output) == ("overflow", "abcd")


@pytest_twisted.ensureDeferred
async def test_an_endless_writer_overflows_quickly(sandbox):
    started = time.monotonic()
    outcome = await go(task(time=30), fs("endless"))
    assert outcome.status == "overflow" and len(outcome.raw) == 1024
    assert time.monotonic() - started < 2


@pytest_twisted.ensureDeferred
async def test_start_then_sleep_forever_times_out_with_the_output_so_far(sandbox):
    outcome = await go(task(time=1), fs("sleeper"))
    assert (outcome.status, outcome.output) == ("timeout", "Start\n")


@pytest_twisted.ensureDeferred
async def test_a_fork_bomb_is_contained_and_the_task_finishes(sandbox):
    started = time.monotonic()
    outcome = await go(task(time=30), fs("forkbomb"), user=BOMB_USER)
    assert (outcome.status, outcome.output) == ("success", "Start\nDone\n"), outcome
    assert b"can't fork" in outcome.sandbox.stderr  # it did reach the process limit
    assert time.monotonic() - started < 10


@pytest_twisted.ensureDeferred
async def test_a_disk_flood_is_contained_and_the_task_finishes(sandbox):
    started = time.monotonic()
    outcome = await go(task(time=30), fs("flood"))
    assert (outcome.status, outcome.output) == ("success", "Start\nDone\n"), outcome
    assert b" 16777216 " in outcome.sandbox.stderr  # flood stopped at 50 % of 32 MB
    assert time.monotonic() - started < 10


@pytest_twisted.ensureDeferred
async def test_cancelling_a_task_aborts_it_at_once(sandbox):
    from twisted.internet import reactor
    from twisted.internet import task as ttask

    d = go(task(time=60), fs("sleeper"))
    await ttask.deferLater(reactor, 0.5, lambda: None)
    started = time.monotonic()
    d.cancel()
    outcome = await d
    assert outcome.status == "abort" and time.monotonic() - started < 2


@pytest_twisted.ensureDeferred
async def test_a_failing_step_is_a_crash_with_its_exit_code(sandbox, tmp_path):
    (tmp_path / "control").write_text("echo before\nfalse\necho never\n")
    outcome = await go(task(), str(tmp_path))
    assert (outcome.status, outcome.output, outcome.exit_code) == ("crash", "before\n", 1)
    assert "step 2" in outcome.message


@pytest_twisted.ensureDeferred
async def test_malformed_task_gives_error_not_an_exception(sandbox):
    outcome = await go({"environment": "busybox"}, fs("hello-world"))
    assert outcome.status == "error" and "taskfs" in outcome.message
    outcome = await go({**VALID, "environment": "nope"}, fs("hello-world"))
    assert outcome.status == "error" and "unknown environment 'nope'" in outcome.message


@pytest_twisted.ensureDeferred
async def test_python_environment_runs_debian_python(sandbox):
    outcome = await go(task(environment="python", memory=64), fs("python-env"), input=b"hi")
    assert (outcome.status, outcome.output) == ("success", "python 3 hi\n"), outcome


@pytest_twisted.ensureDeferred
async def test_busybox_environment_hides_the_host_usr(sandbox):
    outcome = await go(task(), fs("busybox-purity"))
    assert outcome.status == "success"
    from market.sandbox import probe

    expected = "usr-hidden\n" if probe(JOB_USER).has("landlock") else "usr-visible\n"
    assert outcome.output == expected


@pytest_twisted.ensureDeferred
async def test_zip_and_tar_task_filesystems(sandbox, tmp_path):
    archive = tmp_path / "hello.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("control", "hello.sh"):
            z.write(fs(f"hello-world/{name}"), name)
    tgz = tmp_path / "hello.tar.gz"
    with tarfile.open(tgz, "w:gz") as t:
        for name in ("control", "hello.sh"):
            t.add(fs(f"hello-world/{name}"), name)
    for path in (archive, tgz):
        outcome = await go(task(), str(path))
        assert (outcome.status, outcome.output) == ("success", "Hello world!\n"), path


@pytest.fixture
def public_dir():
    """A directory the job user can read (pytest's tmp_path is private to root)."""
    import pathlib
    import tempfile

    path = tempfile.mkdtemp(prefix="test-env-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield pathlib.Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest_twisted.ensureDeferred
async def test_operator_environment_directory(sandbox, tmp_path, public_dir):
    envdir = public_dir / "envs"
    (envdir / "tiny" / "bin").mkdir(parents=True)
    shutil.copy(shutil.which("busybox"), envdir / "tiny" / "bin" / "sh")
    for d in (envdir, envdir / "tiny", envdir / "tiny" / "bin"):
        os.chmod(d, 0o755)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "control").write_text("/bin/sh -c 'echo tiny'\n")
    outcome = await go(task(environment="tiny"), str(tmp_path / "t"), envdir=str(envdir))
    assert (outcome.status, outcome.output) == ("success", "tiny\n"), outcome


@pytest_twisted.ensureDeferred
async def test_running_out_of_memory_is_a_crash_that_says_so(sandbox):
    outcome = await go(task(environment="python", memory=48), fs("balloon"))
    assert (outcome.status, outcome.output) == ("crash", "eating\n")
    assert "memory limit of 48 MB" in outcome.message


def test_unsafe_archive_members_never_reach_the_task(tmp_path):
    import io

    from market.sandbox.taskfs import unpack

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as t:
        for name, data in (("control", b"/task/x\n"), ("../escape", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    staging = tmp_path / "staging"
    staging.mkdir()
    from market.sandbox.taskfs import FilesystemError

    with pytest.raises(FilesystemError):
        unpack(str(archive), str(staging))
    assert not (tmp_path / "escape").exists() and os.listdir(staging) == []


def test_special_files_and_setuid_bits_are_dropped(tmp_path):
    from market.sandbox.taskfs import unpack

    src = tmp_path / "src"
    src.mkdir()
    (src / "control").write_text("/task/run\n")
    (src / "run").write_text("#!/bin/sh\n")
    os.chmod(src / "run", 0o4755)
    os.mkfifo(src / "pipe")
    out = unpack(str(src), str(tmp_path))
    assert sorted(os.listdir(out)) == ["control", "run"]
    assert os.stat(os.path.join(out, "run")).st_mode & 0o7777 == 0o755
