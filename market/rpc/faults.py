"""XML-RPC Fault codes: the one place they are defined (documented in docs/rpc.md)."""

from __future__ import annotations

from xmlrpc.client import Fault

BAD_ARGUMENT = 1  # wrong number or type of arguments, malformed value
NOT_AUTHENTICATED = 2  # missing or wrong credentials
FORBIDDEN = 3  # authenticated, but not yours
NOT_FOUND = 4  # no such job, client, state (or not visible to you)
CONFLICT = 5  # the thing is in the wrong state for this (already initialised, finished, ...)
INSUFFICIENT_FUNDS = 6  # the account cannot pay
JOB_REFUSED = 7  # the job's code is outside the supported subset (line numbers in the message)
TOO_LARGE = 8  # request body over the server's cap
UNAVAILABLE = 9  # the database is unreachable; retry later
INTERNAL = 99  # a bug; the server logged it
NO_SUCH_METHOD = 8001  # the method does not exist (the code Twisted's XML-RPC used; kept for clients)

BY_KIND = {
    "invalid": BAD_ARGUMENT,
    "not-found": NOT_FOUND,
    "conflict": CONFLICT,
    "forbidden": FORBIDDEN,
    "insufficient-funds": INSUFFICIENT_FUNDS,
    "database": UNAVAILABLE,
    "refused": JOB_REFUSED,
    "auth": NOT_AUTHENTICATED,
    "too-large": TOO_LARGE,
}


def fault_for(error: Exception) -> Fault:
    """Turn a MarketError (anything with ``kind``) into its Fault."""
    return Fault(BY_KIND.get(getattr(error, "kind", ""), INTERNAL), str(error))
