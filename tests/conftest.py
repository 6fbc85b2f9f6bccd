"""Shared fixtures. Do not import the reactor here (pytest-twisted installs it)."""

from __future__ import annotations

import pytest

from tests import cheaphashes
from tests.support import MySQLDatabases, fresh_url

# argon2 with real parameters takes ~190 ms a hash; tests use cheap ones (the switch is in tests/ only)
cheaphashes.install()


@pytest.fixture
def mysql_databases():
    dbs = MySQLDatabases()
    yield dbs
    dbs.drop_all()


@pytest.fixture(params=["sqlite", "mysql"])
def backend(request):
    """Each test using it runs once on embedded SQLite and once on the real MariaDB."""
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, mysql_databases):
    """A URL of a fresh, empty database on the backend under test."""
    return fresh_url(backend, tmp_path, mysql_databases)


@pytest.fixture
def db(db_url):
    """A fresh database with the current schema."""
    from market.store import Database, upgrade

    database = Database(db_url)
    upgrade(database)
    yield database
    database.close()
