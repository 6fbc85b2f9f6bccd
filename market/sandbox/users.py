"""The unprivileged account jobs run as; root is never a job user."""

from __future__ import annotations

import grp
import os
import pwd
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["JobUser", "JobUserPool", "UserError", "resolve_user", "job_user_for"]


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

    A number with no account behind it is allowed (its gid is the same number): the
    sandbox needs no home or passwd entry, and an otherwise unused uid per job slot
    shares its process count with nothing else on the host.
    Raises :class:`UserError` with a plain-words reason.
    """
    if name.isdigit():
        uid = int(name)
        try:
            entry = pwd.getpwuid(uid)
        except KeyError:
            if uid == 0:
                raise UserError("uid 0 is root; jobs never run as root") from None
            return JobUser(name, uid, uid, switch=os.geteuid() != uid)
    else:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise UserError(
                f"no user {name!r} on this machine — create one with "
                f"'useradd --system --no-create-home {name}', use an unused "
                "numeric uid, or pick another"
            ) from None
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        raise UserError(
            f"user {name!r} is root (uid {entry.pw_uid}, gid {entry.pw_gid}); "
            "jobs never run as root — use an unprivileged user such as 'nobody'"
        )
    return JobUser(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=os.geteuid() != entry.pw_uid)


def job_user_for(name: str | None) -> JobUser:
    """The user a job will run as, given the caller's choice.

    As root a user must be named (root inside bwrap keeps full capabilities). As an
    unprivileged worker the job runs as the worker's own user; naming another user
    is refused because there is no way to switch to it.
    """
    euid = os.geteuid()
    if name is None:
        if euid == 0:
            raise UserError(
                "refusing to run a job as root: pass user='nobody' (or a dedicated "
                "unprivileged account) so the sandbox can drop to it"
            )
        entry = pwd.getpwuid(euid)
        return JobUser(entry.pw_name, euid, os.getegid(), switch=False)
    user = resolve_user(name)
    if user.switch and euid != 0:
        raise UserError(
            f"cannot run jobs as {user.name!r}: this worker runs as uid {euid}, "
            "not root; omit the user to run jobs as the worker's own account"
        )
    return user


def group_name(gid: int) -> str:
    """Name of a group id, or the number as text when it has no name."""
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


class JobUserPool:
    """One account per concurrent job slot.

    RLIMIT_NPROC is counted per host user across every user namespace, so two jobs run
    as the same account share one process budget (one job's fork bomb starves the other).
    Give each slot its own account (``market-job-1`` …, or unused numeric uids such as
    ``JobUserPool(str(u) for u in range(100000, 100008))``) and take one per running job.
    """

    def __init__(self, names: Iterable[str]) -> None:
        users = [resolve_user(name) for name in names]  # refuses root and unknown names
        if len({u.uid for u in users}) != len(users):
            raise UserError("job user pool has two names for one uid; each slot needs its own account")
        self._free: list[str] = [u.name for u in users]
        self._busy: set[str] = set()

    def acquire(self) -> str | None:
        """A free account name, or None when every slot is busy."""
        if not self._free:
            return None
        name = self._free.pop(0)
        self._busy.add(name)
        return name

    def release(self, name: str) -> None:
        """Give back an account taken with :meth:`acquire`."""
        if name not in self._busy:
            raise UserError(f"job user {name!r} was not taken from this pool")
        self._busy.remove(name)
        self._free.append(name)

    def __len__(self) -> int:
        return len(self._free) + len(self._busy)
