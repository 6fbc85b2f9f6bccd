"""XML-RPC Fault codes, read off the one error table (``market.core.errors.KINDS``; docs/rpc.md)."""

from __future__ import annotations

from xmlrpc.client import Fault

from market.core.errors import KINDS, MarketError, error_for, kind_of

BAD_ARGUMENT = KINDS["invalid"].fault
NOT_AUTHENTICATED = KINDS["auth"].fault
FORBIDDEN = KINDS["forbidden"].fault
NOT_FOUND = KINDS["not-found"].fault
CONFLICT = KINDS["conflict"].fault
INSUFFICIENT_FUNDS = KINDS["insufficient-funds"].fault
JOB_REFUSED = KINDS["refused"].fault
TOO_LARGE = KINDS["too-large"].fault
UNAVAILABLE = KINDS["database"].fault
STATE_REFUSED = KINDS["state-refused"].fault
PRICE_TOO_HIGH = KINDS["price-too-high"].fault
INTERNAL = KINDS["internal"].fault
NO_SUCH_METHOD = KINDS["no-such-method"].fault  # the code Twisted's XML-RPC used; kept for clients

#: error kind -> Fault code
BY_KIND = {name: kind.fault for name, kind in KINDS.items()}
_BY_CODE = {kind.fault: kind for kind in KINDS.values()}


def fault_for(error: Exception) -> Fault:
    """Turn a MarketError into its Fault (anything else is a bug: INTERNAL)."""
    return Fault(kind_of(error).fault, str(error))


def error_from(fault: Fault, message: str | None = None) -> MarketError:
    """The refusal a Fault stands for, of the same kind (a client's side of :func:`fault_for`)."""
    kind = _BY_CODE.get(fault.faultCode, KINDS["internal"])
    return error_for(kind, fault.faultString if message is None else message)
