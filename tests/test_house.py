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

# What mypy checks: the packages and modules that are clean today. The rest (market/core,
# market/store, market/report.py, market/dispatch/service.py, sim) is being changed by another
# engineer; when it is clean too, this list becomes the whole tree: plain ``mypy``, which checks
# pyproject's ``files``. .pre-commit-config.yaml's mypy hook runs the same list.
MYPY_CLEAN = (
    "market/__init__.py",
    "market/__main__.py",
    "market/accounts",
    "market/cli.py",
    "market/demo.py",
    "market/dispatch/__init__.py",
    "market/dispatch/groupcommit.py",
    "market/dispatch/prober.py",
    "market/examples",
    "market/jobs",
    "market/rpc",
    "market/sandbox",
    "market/settings.py",
    "market/tap.py",
    "market/tasklet",
    "market/web",
    "market/worker",
    "quote",
)


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
    # the project's configuration on MYPY_CLEAN; the modules they import are read for their types,
    # but their own errors are not reported (silent) until they are in the list. No cache: a run
    # with other options would replace the one a developer's plain ``mypy`` keeps.
    out = _run("mypy", "--follow-imports=silent", f"--cache-dir={os.devnull}", *MYPY_CLEAN)
    assert out.returncode == 0, out.stdout[-5000:] + out.stderr[-2000:]
