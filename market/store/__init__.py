"""The store: the only package that owns SQL.

``Database(url)`` runs units of work (``work(tx, ...)``) in transactions on either backend;
``accounts``, ``clients`` and ``jobs`` hold the units of work; ``schema`` versions the tables.
"""

from market.store.db import Database, Many, Tx  # noqa: F401
from market.store.schema import LATEST, require_current, upgrade  # noqa: F401


def open_database(url=None, create: bool = True) -> "Database":
    """Open the database at ``url`` and make sure its schema is the current one."""
    db = Database(url)
    if create:
        require_current(db)
    return db
