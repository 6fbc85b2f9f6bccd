"""The unprivileged account jobs run as; root is never a job user."""
from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Optional

__all__ = ["JobUser", "UserError", "resolve_user", "job_user_for"]


class UserError(ValueError):
    """The job user cannot be used (unknown, root, or not switchable)."""


@dataclass(frozen=True)
class JobUser:
    """An account resolved to numeric ids. ``switch`` says whether setpriv is needed."""

    name: str
    uid: int
    gid: int
    switch: bool


def resolve_user(name: str) -> JobUser:
    """Resolve a user name (or numeric uid) to a :class:`JobUser`; refuse root.

    Raises :class:`UserError` with a plain-words reason.
    """
    try:
        entry = pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, ValueError):
        raise UserError(f"no user {name!r} on this machine — create one with "
                        f"'useradd --system --no-create-home {name}' or pick another") from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise UserError(f"user {name!r} is root (uid {entry.pw_uid}, gid {entry.pw_gid}); "
                        "jobs never run as root — use an unprivileged user such as 'nobody'")
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=os.geteuid() != entry.pw_uid)


def job_user_for(name: Optional[str]) -> JobUser:
    """The user a job will run as, given the caller's choice.

    As root a user must be named (root inside bwrap keeps full capabilities). As an
    unprivileged worker the job runs as the worker's own user; naming another user
    is refused because there is no way to switch to it.
    """
    euid = os.geteuid()
    if name is None:
        if euid == 0:
            raise UserError("refusing to run a job as root: pass user='nobody' (or a dedicated "
                            "unprivileged account) so the sandbox can drop to it")
        entry = pwd.getpwuid(euid)
        return JobUser(entry.pw_name, euid, os.getegid(), switch=False)
    user = resolve_user(name)
    if user.switch and euid != 0:
        raise UserError(f"cannot run jobs as {user.name!r}: this worker runs as uid {euid}, "
                        "not root; omit the user to run jobs as the worker's own account")
    return user


def group_name(gid: int) -> str:
    """Name of a group id, or the number as text when it has no name."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
