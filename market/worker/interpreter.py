"""The job interpreter a worker runs slices on (``--python``): which ones the runtime supports.

Two interpreters are in play and each has its own floor. The market package itself (``twistd``,
the CLI, ``sim``) needs CPython 3.11 (``python_requires``). Jobs run inside the sandbox on the
worker's ``--python``, which only has to run the job runtime (``market.tasklet``): CPython 3.9 or
newer, or PyPy 3.9 or newer. States are plain data, so a job frozen on one resumes on any other.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass

#: the oldest language version the job runtime supports, on CPython and on PyPy
MIN_JOB_PYTHON: tuple[int, int] = (3, 9)
IMPLEMENTATIONS = ("cpython", "pypy")

_ASK = "import sys; print(sys.implementation.name, sys.version_info[0], sys.version_info[1])"


class UnsupportedInterpreter(Exception):
    """The ``--python`` given cannot run jobs; the message says why and what to use instead."""


@dataclass(frozen=True)
class Interpreter:
    path: str
    implementation: str
    version: tuple[int, int]

    def header_name(self) -> str:
        """As a state's header names it ("cpython-3.11", market.tasklet.envelope.INTERPRETER)."""
        return f"{self.implementation}-{self.version[0]}.{self.version[1]}"

    def describe(self) -> str:
        name = {"cpython": "CPython", "pypy": "PyPy"}.get(self.implementation, self.implementation)
        return f"{name} {self.version[0]}.{self.version[1]}"


def check(path: str, timeout: float = 20.0) -> Interpreter:
    """Ask ``path`` what it is; refuse it unless it is CPython or PyPy >= 3.9."""
    wanted = f"CPython or PyPy {MIN_JOB_PYTHON[0]}.{MIN_JOB_PYTHON[1]} or newer (e.g. /usr/bin/python3)"
    try:
        out = subprocess.run([path, "-I", "-S", "-c", _ASK], capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise UnsupportedInterpreter(f"--python {path}: no such program — give {wanted}") from None
    except PermissionError:
        raise UnsupportedInterpreter(f"--python {path}: not executable — give {wanted}") from None
    except subprocess.TimeoutExpired:
        raise UnsupportedInterpreter(f"--python {path}: did not answer within {timeout:g} s — give {wanted}") from None
    try:
        impl, major, minor = out.stdout.split()
        found = Interpreter(path, impl, (int(major), int(minor)))
    except ValueError:
        raise UnsupportedInterpreter(
            f"--python {path}: not a Python interpreter (exit {out.returncode}) — give {wanted}"
        ) from None
    if found.implementation not in IMPLEMENTATIONS or found.version < MIN_JOB_PYTHON:
        raise UnsupportedInterpreter(f"--python {path} is {found.describe()}; jobs need {wanted}")
    return found
