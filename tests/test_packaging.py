"""What users install: a wheel built from the sdist, in a fresh venv, run from outside the checkout.

The rest of the suite imports the checkout, which hides a package or data file the wheel forgets.
Here nothing of the source tree is on ``sys.path``: the commands are the venv's console scripts and
``twistd``, started in a temporary folder, exactly as an operator runs them after ``pip install``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest

from tests.servers import free_port, terminate, wait_for_port
from tests.support import need_program

REPO = Path(__file__).resolve().parent.parent
PACKAGE_TREES = ("market", "sim", "quote", "twisted/plugins")
ROOT_USER = ["--user", "nobody"] if os.geteuid() == 0 else []


class Installed:
    """A venv with the wheel installed, and a folder outside the checkout to run it in."""

    def __init__(self, work: Path, venv: Path, wheel: Path, sdist: Path):
        self.work, self.venv, self.wheel, self.sdist = work, venv, wheel, sdist
        self.bin = venv / "bin"

    def env(self, **extra: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env.update(extra)
        return env

    def run(
        self, *argv: str, input: str | None = None, timeout: float = 120, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess:
        out = subprocess.run(
            [str(a) for a in argv],
            cwd=self.work,
            env=self.env(**env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and out.returncode != 0:
            raise AssertionError(f"{' '.join(map(str, argv))} exited {out.returncode}:\n{out.stdout}\n{out.stderr}")
        return out


def _tracked(*roots: str) -> list[str]:
    """The files a commit of the working tree would hold (tracked, or new and not ignored)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *roots],
        cwd=REPO,
        capture_output=True,
        check=True,
    )
    return sorted({p for p in out.stdout.decode().split("\0") if p and os.path.exists(REPO / p)})


def _clean_copy(target: Path) -> Path:
    """The tree as a fresh clone would have it: a stale ``*.egg-info`` or ``build/`` in the checkout
    feeds setuptools file lists from an earlier build and hides a forgotten data file."""
    for path in _tracked():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, target / path)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    need_program("git")
    work = tmp_path_factory.mktemp("installed")
    dist = work / "dist"
    source = _clean_copy(work / "source")
    # python -m build makes the sdist, then the wheel FROM the sdist: a file the sdist forgets fails here
    build = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", f"{wheel}[sandbox]"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
    )
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    return Installed(work, venv, wheel, sdist)


# -- what the archives hold ------------------------------------------------------------------------


def test_the_wheel_holds_every_module_and_data_file_of_the_package_trees(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    missing = [p for p in _tracked(*PACKAGE_TREES) if p not in names]
    assert not missing, f"the wheel leaves out {missing}"


def test_the_wheel_ships_the_report_schema_of_record(installed):
    shipped = zipfile.ZipFile(installed.wheel).read("quote/report.xsd")
    assert shipped == (REPO / "schema" / "report.xsd").read_bytes()


def test_the_sdist_holds_every_tracked_file(installed):
    with tarfile.open(installed.sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    missing = [p for p in _tracked() if p not in names]
    assert not missing, f"the sdist leaves out {missing}"


def test_nothing_is_imported_from_the_checkout(installed):
    out = installed.run(
        installed.bin / "python",
        "-c",
        "import market, quote, sim, twisted.plugins.market_plugins as p; "
        "print(market.__file__); print(quote.__file__); print(sim.__file__); print(p.__file__)",
    )
    for line in out.stdout.split():
        assert line.startswith(str(installed.venv)), line


# -- every entry point, from the installed package -------------------------------------------------


def test_market_help(installed):
    out = installed.run("market", "--help")
    assert "demo" in out.stdout and "submit" in out.stdout


def test_twistd_finds_both_plugins(installed):
    out = installed.run("twistd", "--help")
    assert re.search(r"^\s+market\s", out.stdout, re.M) and re.search(r"^\s+worker\s", out.stdout, re.M)


def test_the_demo_runs_to_its_exact_result(installed):
    out = installed.run("market", "demo", "--dir", "demo", timeout=300)
    assert "(correct: True)" in out.stdout, out.stdout + out.stderr
    assert "ledger balanced: True" in out.stdout


def test_sim_runs_a_tiny_scenario(installed):
    (installed.work / "tiny.toml").write_text(
        '[run]\nname = "tiny"\nduration = 600\n[pool]\nwindow = 2.0\nthreshold = 4\nslice = 60\n'
        '[clients]\ncount = 6\n[jobs]\ninitial = 10\nrate = 0.02\nlength = { dist = "exponential", mean = 1e8 }\n'
    )
    out = installed.run("sim", "tiny.toml", "--out", "simout")
    assert (installed.work / "simout").is_dir() and any((installed.work / "simout").iterdir()), out.stdout
    shipped = installed.run("sim", "--help").stdout
    assert all(name in shipped for name in ("policies", "window", "churn", "aging", "load"))


def test_a_pythia_task_through_an_installed_market_and_worker_then_report_and_quote(installed):
    """Operators' commands as README gives them: db init, accounts, a client (started with the very
    command ``client register`` prints), a task submitted and its result read, the report, quote."""
    need_program("bwrap")
    port = free_port()
    url = "sqlite:market.sqlite"
    server = f"127.0.0.1:{port}"  # no scheme: the CLI and the worker add http:// and /RPC2
    run = installed.run
    run("market", "db", "init", "--db", url)  # a global option after the command
    run(
        "market",
        "--db",
        url,
        "account",
        "create",
        "alice",
        "--email",
        "a@example.org",
        "--password-stdin",
        "--confirmed",
        input="alice-password\n",
    )
    run(
        "market",
        "account",
        "create",
        "bob",
        "--db",
        url,
        "--email",
        "b@example.org",
        "--password-stdin",
        "--confirmed",
        "--grant",
        "0",
        input="bob-password\n",
    )
    token = run("market", "account", "token", "alice", "--db", url).stdout.rsplit(" ", 1)[1].strip()
    registered = run("market", "client", "register", "bob", "--name", "box", "--db", url, "--server", server).stdout
    command = re.search(r"^run it with: (.*)$", registered, re.M).group(1)
    assert ROOT_USER == [] or "--user nobody" in command
    market = subprocess.Popen(
        [
            "twistd",
            "-n",
            "--pidfile=",
            "--logfile=market.log",
            "market",
            "--db",
            url,
            "--rpc",
            f"tcp:{port}:interface=127.0.0.1",
            "--window",
            "0.2",
            "--threshold",
            "1",
            "--test-job-size",
            "30",
        ],
        cwd=installed.work,
        env=installed.env(),
    )
    worker = None
    try:
        wait_for_port(port, market, log=str(installed.work / "market.log"))
        # the printed command as it is, with a log file for this test
        logged = command.replace("twistd -n", "twistd -n --pidfile= --logfile=worker.log", 1)
        worker = subprocess.Popen(["bash", "-c", logged], cwd=installed.work, env=installed.env())
        task = REPO / "tests" / "tasks" / "hello-world.task"
        job = run(
            "market",
            "submit-task",
            str(task),
            "--taskfs",
            str(REPO / "tests" / "tasks" / "hello-world"),
            "--name",
            "hello",
            "--price",
            "0.05",
            "--server",
            server,
            "--account",
            "alice",
            "--token",
            token,
        ).stdout.strip()
        deadline = time.time() + 120
        while time.time() < deadline:
            status = run("market", "status", job, "--server", server, "--account", "alice", "--token", token).stdout
            if "finished" in status:
                break
            assert worker.poll() is None, (installed.work / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
        result = run("market", "result", job, "--server", server, "--account", "alice", "--token", token)
        assert result.stdout == "Hello world!\n"
        assert "success" in result.stderr
    finally:
        terminate(worker, 20)
        terminate(market, 20)
    run("market", "report", "-o", "report.xml", "--db", url)
    quoted = run("quote", "report.xml", "1000").stdout.strip()
    assert quoted == "NotPossible" or re.fullmatch(r"\d+\.\d\d", quoted), quoted
