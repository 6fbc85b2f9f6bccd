"""Errors a user can hit, in plain words.

Every refusal the product makes to a person or a program is one of these (or a subclass), so the
CLI, the XML-RPC layer and the web site can turn it into an exit code, a Fault or an HTTP status
without ever showing a traceback.
"""


class MarketError(Exception):
    """A refusal with a plain-words message that says what was wrong and what to do."""

    #: short machine-readable kind, mapped to Fault codes in market.rpc.faults
    kind = "invalid"


class NotFound(MarketError):
    kind = "not-found"


class Conflict(MarketError):
    kind = "conflict"


class Forbidden(MarketError):
    kind = "forbidden"


class InsufficientFunds(MarketError):
    kind = "insufficient-funds"


class DatabaseUnavailable(MarketError):
    kind = "database"
