"""`python -m market.sandbox`: the operator's probe and one-shot run."""

import subprocess
import sys

from market.sandbox.__main__ import main
from market.sandbox.testing import JOB_USER, require_sandbox


def test_probe_prints_the_level_and_layers(capsys):
    require_sandbox()
    assert main(["probe"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sandbox level: ") and "bwrap: yes" in out


def test_run_prints_the_job_output_and_the_outcome():
    require_sandbox()
    user = ["--user", JOB_USER] if JOB_USER else []
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "market.sandbox",
            "run",
            *user,
            "--wall",
            "5",
            "--",
            "/usr/bin/python3",
            "-c",
            "print('hi')",
        ],
        capture_output=True,
        timeout=30,
    )
    assert proc.returncode == 0 and proc.stdout == b"hi\n"
    assert b"[ok] exit=0" in proc.stderr


def test_bad_limits_are_a_usage_error(capsys):
    assert main(["run", "--memory", "1", "--", "/bin/true"]) == 2
    assert "memory_mb must be at least 4" in capsys.readouterr().err
