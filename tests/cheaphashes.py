"""Cheap argon2 parameters for the tests: the only switch for them, and it lives in tests/, not in the product.

Real parameters take ~190 ms a hash on these machines; the suite creates hundreds of accounts. A
hash records its own parameters, so one made here still verifies anywhere (and the other way round).
conftest.py installs this in the test process; tests/launch.py in the ``twistd`` and ``market``
processes the tests start.
"""

from __future__ import annotations


def install() -> None:
    """Make this process hash passwords with cheap argon2id parameters."""
    from argon2 import PasswordHasher

    from market.accounts import credentials

    credentials.hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
