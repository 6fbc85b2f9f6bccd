"""The database's own secrets, made once by a schema migration and never shown."""

from __future__ import annotations


def probe_secret(tx) -> bytes:
    """The secret every probe's input is derived from (``market.dispatch.prober.chain``)."""
    value = tx.scalar("SELECT value FROM secrets WHERE name = 'probe'")
    if value is None:
        raise LookupError("the database has no probe secret — run: market db upgrade")
    return bytes.fromhex(value)
