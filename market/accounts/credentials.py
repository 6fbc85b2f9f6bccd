"""Passwords and tokens.

Passwords are hashed with argon2id; tokens (API tokens, client tokens, confirmation links,
session cookies) are 32 random bytes shown once and stored only as their SHA-256, which is
enough for high-entropy secrets and lets the server look them up by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from market.core.errors import MarketError

MIN_PASSWORD = 8

#: the argon2 ``PasswordHasher``, made on first use with argon2-cffi's default (RFC 9106) parameters,
#: ~190 ms a hash here. No setting and no environment variable changes it; a test suite may put a
#: cheap hasher here from its own code (this project's does, in tests/cheaphashes.py).
hasher = None


def _hasher():
    global hasher
    if hasher is None:
        from argon2 import PasswordHasher

        hasher = PasswordHasher()
    return hasher


def check_password_strength(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise MarketError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise MarketError("a password may have at most 1024 characters")


def hash_password(password: str) -> str:
    """argon2id hash; slow on purpose — call it off the reactor thread (deferToThread)."""
    check_password_strength(password)
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    if not password_hash or not isinstance(password, str):
        return False
    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh secret and the hash to store.

    Never starting with '-': given as ``--token -x...`` on a command line, argparse would take it
    for an option (1 token in 64 did, and its user got "expected one argument").
    """
    token = secrets.token_urlsafe(32)
    while token.startswith("-"):
        token = secrets.token_urlsafe(32)
    return token, token_hash(token)


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
