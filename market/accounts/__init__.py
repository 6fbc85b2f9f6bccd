"""Account and client registration: the rules around the store's SQL (hashing, tokens, grants)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from market.accounts import credentials
from market.settings import AccountSettings
from market.store import accounts as sql_accounts
from market.store import clients as sql_clients

_settings = AccountSettings()


def configure(settings: AccountSettings) -> None:
    """Use ``settings`` for the accounts this process creates (``twistd market`` does it once at start
    from its Settings; ``market account create`` passes its grant explicitly)."""
    global _settings
    _settings = settings


def starting_grant() -> int:
    """Cents granted to every new account once it is confirmed (setting ``starting-grant``, default 100.00 credits)."""
    return _settings.starting_grant


@dataclass
class NewAccount:
    id: int
    name: str
    confirm_token: str | None


@dataclass
class NewClient:
    id: int
    name: str
    token: str


def create_account(
    db,
    name: str,
    email: str,
    password: str,
    *,
    confirm: bool = True,
    grant_cents: int | None = None,
    now: float | None = None,
) -> NewAccount:
    """Create an account. With ``confirm`` it stays unconfirmed until its e-mailed token comes back,
    and its starting grant (``grant_cents``, default the ``starting-grant`` setting) is paid then,
    once; without, it is confirmed and granted at once (an administrator's ``--confirmed``).

    Hashes the password on the calling thread: servers call this through deferToThread.
    """
    sql_accounts.check_name(name)
    sql_accounts.check_email(email)
    password_hash = credentials.hash_password(password)
    token, token_hash = credentials.new_token() if confirm else (None, None)
    grant = starting_grant() if grant_cents is None else grant_cents
    account_id = db.transact(
        sql_accounts.create_account, name, email, password_hash, time.time() if now is None else now, token_hash, grant
    )
    return NewAccount(account_id, name, token)


def issue_api_token(db, account_id: int) -> str:
    """A new API token for XML-RPC (the previous one stops working); shown once."""
    token, token_hash = credentials.new_token()
    db.transact(sql_accounts.set_api_token_hash, account_id, token_hash)
    return token


def register_client(db, account_id: int, name: str, now: float | None = None) -> NewClient:
    """Register a computation client for an account; its token is returned once and only hashed."""
    token, token_hash = credentials.new_token()
    client_id = db.transact(
        sql_clients.register_client, account_id, name, token_hash, time.time() if now is None else now
    )
    return NewClient(client_id, name, token)


# -- revocations -----------------------------------------------------------------------------
# The XML-RPC face caches who an Authorization header names for AUTH_CACHE_SECONDS. A token
# revoked, a client revoked or an account disabled or confirmed in THIS process (the web site, the
# server's own calls) counts here, and every cached identity from before is looked up again: such
# a change takes effect at once. One made by another process (another front end, ``market client
# revoke`` on the command line) bumps the ``credentials`` cache generation, which every front end
# reads each second (``market.dispatch.cachewatch``) and answers by calling credentials_changed.
_changes = 0


def credentials_changed() -> None:
    """Someone's credentials or standing changed: identities cached before now are stale."""
    global _changes
    _changes += 1


def credentials_generation() -> int:
    """How many changes :func:`credentials_changed` has counted in this process."""
    return _changes
