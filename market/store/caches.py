"""Cache generations: what lets every front end keep a short per-process cache of rows that
change rarely and still see a change made by any process within about a second.

One row per cached kind in ``cache_generation``; whatever changes such a value bumps its row in
the same transaction (``bump``), and each front end reads the rows every ``CHECK_SECONDS``
(``generations``: one primary-key read of two rows) and drops what it cached when one moved:

  clients      a client's suspension (``suspect``), revocation and measured speed — the
               dispatcher's cache of client rows (``market.dispatch.service``)
  credentials  a token replaced or revoked, a client revoked, an account disabled, enabled or
               confirmed — the XML-RPC face's cache of who an Authorization header names
               (``market.rpc.methods``, through ``accounts.credentials_changed``)
"""

from __future__ import annotations

CLIENTS = "clients"
CREDENTIALS = "credentials"
NAMES = (CLIENTS, CREDENTIALS)
#: how often a front end reads the generations (seconds): the longest another front end's change
#: (a suspension, a revocation, a new speed) waits to reach this one's caches
CHECK_SECONDS = 1.0


def bump(tx, *names: str) -> None:
    """Values cached under ``names`` changed in this transaction: every process drops its copies."""
    for name in names:
        if name not in NAMES:
            raise ValueError(f"unknown cache generation {name!r}")
        tx.execute("UPDATE cache_generation SET generation = generation + 1 WHERE name = ?", (name,))


def generations(tx) -> dict[str, int]:
    """The current generation of every cached kind."""
    return {r["name"]: int(r["generation"]) for r in tx.all("SELECT name, generation FROM cache_generation")}
