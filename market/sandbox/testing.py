"""Test helpers shipped with the sandbox: decide whether sandbox tests can run here."""
from __future__ import annotations

import os
from typing import Optional

__all__ = ["JOB_USER", "unusable_reason", "require_sandbox"]

# Tests run as root in CI; 'nobody' is the stock unprivileged account.
JOB_USER: Optional[str] = "nobody" if os.geteuid() == 0 else None


def unusable_reason(user: Optional[str] = JOB_USER) -> Optional[str]:
    """None when the real sandbox works for ``user``; otherwise why not."""
    from .probe import SandboxLevel, probe

    found = probe(user)
    if found.level == SandboxLevel.NONE:
        return "sandbox unusable: " + "; ".join(f"{k}: {v}" for k, v in found.missing.items())
    return None


def require_sandbox(user: Optional[str] = JOB_USER) -> None:
    """Skip the calling test when the sandbox is unusable — but FAIL when CI=true,
    so a CI machine without bwrap/setpriv can never pass by skipping."""
    import pytest

    why = unusable_reason(user)
    if why is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)
