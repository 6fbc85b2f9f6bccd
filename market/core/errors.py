"""Errors a user can hit, in plain words, and the one table that says what each kind means.

Every refusal the product makes to a person or a program is one of these (or a subclass). Each
error class names its *kind*; :data:`KINDS` gives every kind its XML-RPC Fault code, its HTTP
status and the ``market`` command's exit code. ``market.rpc.faults``, the web site and the CLI
derive their mappings from this table, so a kind means the same everywhere and no traceback is ever
shown. The Fault codes are published (docs/rpc.md): never renumber one.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Kind:
    """What one kind of refusal is called and how each face of the market reports it."""

    name: str  #: the ``kind`` of the error classes below
    fault: int  #: XML-RPC Fault code (published)
    fault_name: str  #: its constant in market.rpc.faults and its name in docs/rpc.md
    http: int  #: HTTP status on the web site
    exit: int  #: exit code of the ``market`` command
    meaning: str


#: exit codes of the ``market`` command: 2 for bad input (fix the command), 1 for a refusal by the
#: market or an unreachable database or server
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 1
#: ``market result`` of a job that ended without its result (error, memory, refused, aborted...):
#: the error on standard error
EXIT_JOB_FAILED = 3
#: ``market result`` of a job its owner cancelled
EXIT_JOB_CANCELLED = 4

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind("invalid", 1, "BAD_ARGUMENT", 400, EXIT_BAD_INPUT, "a wrong or malformed value"),
        Kind("auth", 2, "NOT_AUTHENTICATED", 401, EXIT_REFUSED, "missing or wrong credentials"),
        Kind("forbidden", 3, "FORBIDDEN", 403, EXIT_REFUSED, "authenticated, but not yours"),
        Kind("not-found", 4, "NOT_FOUND", 404, EXIT_REFUSED, "no such thing, or not one of yours"),
        Kind("conflict", 5, "CONFLICT", 409, EXIT_REFUSED, "the thing is in the wrong state for this"),
        Kind("insufficient-funds", 6, "INSUFFICIENT_FUNDS", 402, EXIT_REFUSED, "the account cannot pay"),
        Kind("refused", 7, "JOB_REFUSED", 422, EXIT_BAD_INPUT, "the module is outside the supported subset"),
        Kind("too-large", 8, "TOO_LARGE", 413, EXIT_BAD_INPUT, "over a size limit"),
        Kind(
            "state-refused",
            10,
            "STATE_REFUSED",
            422,
            EXIT_REFUSED,
            "a checked-in state that does not follow from its lease; nothing stored or paid",
        ),
        Kind(
            "price-too-high",
            11,
            "PRICE_TOO_HIGH",
            422,
            EXIT_BAD_INPUT,
            "a price above the market's ceiling (max-price); nothing stored",
        ),
        Kind("database", 9, "UNAVAILABLE", 503, EXIT_REFUSED, "the database or server is unreachable; retry"),
        Kind("internal", 99, "INTERNAL", 500, EXIT_REFUSED, "a bug; the server logged it"),
        Kind("no-such-method", 8001, "NO_SUCH_METHOD", 404, EXIT_REFUSED, "no such XML-RPC method"),
    )
}


class MarketError(Exception):
    """A refusal with a plain-words message that says what was wrong and what to do.

    The base class is the ``invalid`` kind: a wrong or malformed value.
    """

    #: the row of :data:`KINDS` that says how this refusal is reported
    kind = "invalid"


class PriceTooHigh(MarketError):
    kind = "price-too-high"


class NotAuthenticated(MarketError):
    kind = "auth"


class Forbidden(MarketError):
    kind = "forbidden"


class NotFound(MarketError):
    kind = "not-found"


class Conflict(MarketError):
    kind = "conflict"


class InsufficientFunds(MarketError):
    kind = "insufficient-funds"


class JobRefused(MarketError):
    """A job module outside the resumable subset; the message names every problem and its line."""

    kind = "refused"


class TooLarge(MarketError):
    kind = "too-large"


class StateRefused(MarketError):
    """A check-in whose state is not the next state of its lease's job (another job's, an old one,
    the leased state itself, an unchanged payload, an old envelope format): nothing is stored or
    paid, and the lease stays open for a right state until its deadline."""

    kind = "state-refused"


class DatabaseUnavailable(MarketError):
    kind = "database"


class InternalError(MarketError):
    """A bug (reported by a server, say); never raised for something the user did."""

    kind = "internal"


class NoSuchMethod(MarketError):
    kind = "no-such-method"


def kind_of(error: BaseException) -> Kind:
    """The table row for ``error``; anything that is not a MarketError of a known kind is a bug."""
    name = getattr(error, "kind", None) if isinstance(error, MarketError) else None
    return KINDS.get(name, KINDS["internal"]) if isinstance(name, str) else KINDS["internal"]


def error_for(kind: Kind, message: str) -> MarketError:
    """An error of ``kind`` with ``message`` (a client turning a Fault back into a refusal)."""
    cls = _CLASSES.get(kind.name, InternalError)
    return cls(message)


_CLASSES: dict[str, type[MarketError]] = {
    cls.kind: cls
    for cls in (
        MarketError,
        NotAuthenticated,
        Forbidden,
        NotFound,
        Conflict,
        InsufficientFunds,
        JobRefused,
        PriceTooHigh,
        TooLarge,
        StateRefused,
        DatabaseUnavailable,
        InternalError,
        NoSuchMethod,
    )
}
