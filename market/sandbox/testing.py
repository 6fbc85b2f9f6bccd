"""Test helpers shipped with the sandbox: decide whether sandbox tests can run here."""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["JOB_USER", "BOMB_USER", "unusable_reason", "require", "require_sandbox"]

# Tests run as root in CI; 'nobody' is the stock unprivileged account.
JOB_USER: str | None = "nobody" if os.geteuid() == 0 else None
# Fork bombs fill RLIMIT_NPROC for their whole host uid (see docs/sandbox.md); an unused
# uid keeps them from starving other sandboxes running as 'nobody' at the same time.
BOMB_USER: str | None = "100042" if os.geteuid() == 0 else None


def unusable_reason(user: str | None = JOB_USER, layers: Sequence[str] = ()) -> str | None:
    """None when the real sandbox (and every layer named) works for ``user``; else why not."""
    from .probe import SandboxLevel, probe

    found = probe(user)
    if found.level == SandboxLevel.NONE:
        return "sandbox unusable: " + "; ".join(f"{k}: {v}" for k, v in found.missing.items())
    for layer in layers:
        if not found.has(layer):
            return f"sandbox layer {layer} missing: {found.missing.get(layer, 'unknown')}"
    return None


def require(why: str | None) -> None:
    """Skip the calling test for ``why`` — but FAIL when CI=true, so a CI machine
    without bwrap/setpriv (or another requirement) can never pass by skipping."""
    import pytest

    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


def require_sandbox(user: str | None = JOB_USER, layers: Sequence[str] = ()) -> None:
    """:func:`require` a working sandbox with ``layers`` for ``user``."""
    require(unusable_reason(user, layers))
