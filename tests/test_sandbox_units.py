"""Specifications of the sandbox's pure parts: limits, users, command line, classification."""

import os
import signal

import pytest

from market.sandbox.command import BindError, Layers, build_command, check_binds
from market.sandbox.limits import Limits, LimitsError
from market.sandbox.outcome import classify, parse_status
from market.sandbox.users import JobUser, UserError, job_user_for, resolve_user

NOBODY = JobUser("nobody", 65534, 65534, switch=True)


def test_limits_have_sane_defaults():
    limits = Limits()
    assert limits.wall_seconds > 0 and limits.memory_mb >= 64 and limits.processes >= 2


@pytest.mark.parametrize(
    "field, value",
    [
        ("wall_seconds", 0),
        ("cpu_seconds", -1),
        ("memory_mb", 1),
        ("output_bytes", -1),
        ("disk_mb", 0),
        ("processes", 1),
        ("files", 3),
        ("memory_mb", "64"),
        ("processes", True),
        ("wall_seconds", float("nan")),
        ("memory_mb", 1.5),
    ],
)
def test_limits_reject_bad_values_by_name(field, value):
    with pytest.raises(LimitsError, match=field):
        Limits(**{field: value})


def test_root_is_never_a_job_user():
    with pytest.raises(UserError, match="never run as root"):
        resolve_user("root")
    with pytest.raises(UserError, match="never run as root"):
        resolve_user("0")


def test_unknown_user_is_explained():
    with pytest.raises(UserError, match="no user 'no-such-user-xyz'"):
        resolve_user("no-such-user-xyz")


@pytest.mark.skipif(os.geteuid() != 0, reason="root-only rule")
def test_root_worker_without_a_job_user_is_refused():
    with pytest.raises(UserError, match="refusing to run a job as root"):
        job_user_for(None)


def test_command_chain_drops_privileges_then_limits_then_bwrap():
    argv = build_command(
        [["/usr/bin/true"]], limits=Limits(processes=7, files=20), user=NOBODY, binds=[], inner_path="/x/inner.py"
    )
    assert argv[:2] == ["setpriv", "--reuid=65534"]
    assert argv.index("setpriv") < argv.index("prlimit") < argv.index("bwrap")
    for flag in (
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--as-pid-1",
        "--new-session",
        "--clearenv",
    ):
        assert flag in argv
    assert "--nproc=7" in argv and "--nofile=20" in argv and "--core=0" in argv
    assert "/etc" not in argv and not any(a.startswith("/root") for a in argv)


def test_tmpfs_is_sized_to_the_disk_limit():
    argv = build_command([["/usr/bin/true"]], limits=Limits(disk_mb=3), user=NOBODY, binds=[], inner_path="/x/inner.py")
    i = argv.index("--tmpfs")
    assert argv[i - 4 : i] == ["--size", str(3 << 20), "--perms", "1777"]


def test_binds_cannot_overlay_the_sandbox_layout(tmp_path):
    for target in ("/usr", "/usr/lib/x", "/proc", "/.sandbox/inner.py", "/"):
        with pytest.raises(BindError):
            check_binds([(str(tmp_path), target)])
    with pytest.raises(BindError, match="does not exist"):
        check_binds([(str(tmp_path / "missing"), "/data")])
    assert check_binds([(str(tmp_path), "/data/")]) == [(str(tmp_path), "/data")]


def test_landlock_rules_cover_binds_when_enabled(tmp_path):
    import marshal

    argv = build_command(
        [["/usr/bin/true"]],
        limits=Limits(),
        user=NOBODY,
        binds=[(str(tmp_path), "/data")],
        inner_path="/x/inner.py",
        layers=Layers(landlock=True, seccomp_filter="/x/f.bpf"),
    )
    config = marshal.loads(bytes.fromhex(argv[-1]))
    assert config["landlock"]["/data"] == "rx" and config["landlock"]["/tmp"] == "rw"
    assert config["seccomp"] == "/.sandbox/filter.bpf"


def _classify(records, **kw):
    args = dict(
        killed=None, records=records, stdout=b"", stderr=b"", limits=Limits(), wall=0.1, exit_code=0, exit_signal=None
    )
    args.update(kw)
    return classify(**args)


def test_status_channel_ignores_torn_lines():
    assert parse_status(b'{"step": 0, "exit": 0}\n{"do') == [{"step": 0, "exit": 0}]


def test_classification_rules():
    done = {"done": True, "cpu": 0.5}
    assert _classify([{"step": 0, "exit": 0}, done]).status == "ok"
    assert _classify([{"step": 0, "exit": 3}, done]).exit_code == 3
    assert _classify([{"step": 0, "exit": 1}, done], stderr=b"MemoryError\n").status == "memory"
    assert _classify([{"step": 0, "signal": signal.SIGXCPU}, done]).status == "timeout"
    assert _classify([{"step": 0, "signal": signal.SIGSEGV}, done]).status == "crash"
    assert _classify([{"step": 0, "signal": signal.SIGKILL, "cpu": 0.1}, done]).status == "memory"
    failed = _classify([], stderr=b"bwrap: boom\n", exit_code=1)
    assert (failed.status, failed.message) == ("crash", "sandbox failed: bwrap: boom")
    assert _classify([{"step": 0, "exec_error": "cannot execute x"}]).status == "crash"
    for killed in ("timeout", "overflow", "abort"):
        assert _classify([], killed=killed).status == killed


def test_runner_status_encoding_is_json():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location(
        "inner", os.path.join(os.path.dirname(__file__), "..", "market", "sandbox", "inner.py")
    )
    inner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inner)
    record = {"step": 0, "exec_error": 'no "x" \\ \u00e9\n', "exit": None, "cpu": 0.5, "done": True}
    assert json.loads(inner.encode(record)) == record


def test_a_missing_sandbox_fails_under_ci_and_skips_elsewhere(monkeypatch):
    from market.sandbox.testing import require

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="bwrap missing"):
        require("bwrap missing")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception):
        require("bwrap missing")
    require(None)  # nothing missing: no effect


def test_probe_without_bwrap_is_level_none_and_says_why(monkeypatch, tmp_path):
    from market.sandbox.probe import SandboxLevel, clear_probe_cache, probe

    monkeypatch.setenv("PATH", str(tmp_path))  # no tools at all
    clear_probe_cache()
    try:
        found = probe(None if os.geteuid() else "nobody")
        assert found.level == SandboxLevel.NONE
        assert "bubblewrap" in found.missing["bwrap"] and "util-linux" in found.missing["rlimits"]
        assert "sandbox level: none" in found.describe()
    finally:
        clear_probe_cache()


def test_a_refused_run_names_the_reason():
    from market.sandbox.probe import Probe, SandboxLevel
    from market.sandbox.runner import _Refused, prepare
    from market.sandbox.testing import JOB_USER

    none = Probe(SandboxLevel.NONE, (), {"bwrap": "bwrap not found"})
    with pytest.raises(_Refused, match="bwrap not found"):
        prepare([["/bin/true"]], limits=Limits(), binds=(), user=JOB_USER, level=none, staging=None, status_fd=None)


def test_job_user_pool_hands_out_each_account_once():
    from market.sandbox.users import JobUserPool

    pool = JobUserPool(["nobody"])
    assert pool.acquire() == "nobody" and pool.acquire() is None
    pool.release("nobody")
    assert pool.acquire() == "nobody"
    with pytest.raises(UserError, match="never run as root"):
        JobUserPool(["nobody", "root"])
    with pytest.raises(UserError, match="one uid"):
        JobUserPool(["nobody", "65534"])


def fake_cgroup(tmp_path, controllers="cpu memory pids", enabled=""):
    base = tmp_path / "jobs"
    base.mkdir()
    (base / "cgroup.controllers").write_text(controllers + "\n")
    (base / "cgroup.subtree_control").write_text(enabled)
    return base


def test_cgroup_children_get_memory_and_pids_limits(tmp_path):
    from market.sandbox.cgroup import JobCgroups

    base = fake_cgroup(tmp_path)
    cgroups = JobCgroups(str(base))
    cgroups.check()
    assert (base / "cgroup.subtree_control").read_text() == "+memory +pids"
    path = cgroups.create(100 << 20, 10)
    assert open(os.path.join(path, "memory.max")).read() == str(100 << 20)
    assert open(os.path.join(path, "pids.max")).read() == "10"
    with open(os.path.join(path, "memory.events"), "w") as f:
        f.write("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert JobCgroups.oom_killed(path)
    JobCgroups.remove(path)
    assert not os.path.exists(path)


def test_cgroup_without_memory_controller_is_refused(tmp_path):
    from market.sandbox.cgroup import CgroupError, JobCgroups

    with pytest.raises(CgroupError, match="missing memory"):
        JobCgroups(str(fake_cgroup(tmp_path, controllers="hugetlb"))).check()


def test_a_run_with_the_cgroup_layer_enters_its_cgroup_first(tmp_path):
    from market.sandbox.probe import Probe, SandboxLevel
    from market.sandbox.runner import finish_cgroup, prepare
    from market.sandbox.testing import JOB_USER

    base = fake_cgroup(tmp_path, enabled="memory pids")
    found = Probe(SandboxLevel.DEGRADED, ("bwrap", "rlimits", "cgroup"), {}, cgroup_base=str(base))
    argv, path = prepare(
        [["/bin/true"]],
        limits=Limits(memory_mb=100, disk_mb=10, processes=5),
        binds=(),
        user=JOB_USER,
        level=found,
        staging=None,
        status_fd=None,
    )
    assert argv[:4] == ["/bin/sh", "-c", 'echo 0 > "$0/cgroup.procs" && exec "$@"', path]
    assert open(os.path.join(path, "memory.max")).read() == str((100 + 10 + 32) << 20)
    assert open(os.path.join(path, "pids.max")).read() == "7"
    assert finish_cgroup(path) is False and not os.path.exists(path)


def test_oom_kill_in_the_cgroup_is_classified_memory():
    assert _classify([{"step": 0, "signal": signal.SIGKILL}, {"done": True}], oom_killed=True).status == "memory"


def test_an_unused_numeric_uid_is_a_valid_job_user():
    import pwd

    uid = next(u for u in range(100000, 100100) if not _has_account(pwd, u))
    user = resolve_user(str(uid))
    assert (user.uid, user.gid, user.name) == (uid, uid, str(uid))
    with pytest.raises(UserError, match="root"):
        resolve_user("0")


def _has_account(pwd, uid):
    try:
        pwd.getpwuid(uid)
        return True
    except KeyError:
        return False
