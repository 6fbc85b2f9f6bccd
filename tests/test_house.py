"""The house's own checks run in the suite, so CI runs them: lint and format (ruff), types (mypy).

The versions are pinned in setup.cfg's ``test`` extra; ``.pre-commit-config.yaml`` runs the same
commands before a commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.support import need

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_finds_nothing_to_lint():
    need(shutil.which("ruff") is not None, "ruff (pip install '.[test]')")
    out = _run("ruff", "check", "--no-cache", ".")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]


def test_ruff_finds_nothing_to_format():
    need(shutil.which("ruff") is not None, "ruff (pip install '.[test]')")
    out = _run("ruff", "format", "--no-cache", "--check", ".")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]


def test_mypy_finds_no_type_errors():
    need(shutil.which("mypy") is not None, "mypy (pip install '.[test]')")
    # the project's configuration: pyproject's ``files`` (market, sim, quote), strict on the pure core
    # and the state codec. No cache: a CI run starts cold anyway, and a developer's cache stays theirs.
    out = _run("mypy", f"--cache-dir={os.devnull}")
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
