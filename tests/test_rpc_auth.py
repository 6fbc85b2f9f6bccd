"""The XML-RPC credentials cache: it saves a database read per worker call, and a replaced token
stops working within AUTH_CACHE_SECONDS of its first use, however often it is used meanwhile."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from market.accounts import credentials
from market.core.errors import MarketError
from market.rpc.methods import AUTH_CACHE_SECONDS, MarketRPC
from tests import marketdata as md


def Request(user: str, token: str) -> bytes:
    """The Authorization header a call with these credentials carries."""
    return b"Basic " + base64.b64encode(f"{user}:{token}".encode())


class Dispatcher:
    def __init__(self, db):
        self.db, self.clock = db, Clock()


class CountingDatabase:
    def __init__(self, db):
        self.db, self.runs = db, 0

    def run(self, work, *args):
        self.runs += 1
        return self.db.run(work, *args)


@pytest.fixture
def sqlite_db(tmp_path):
    from market.store import Database, upgrade

    db = Database(f"sqlite:{tmp_path}/auth.sqlite")
    upgrade(db)
    yield db
    db.close()


@pytest_twisted.ensureDeferred
async def test_a_replaced_token_stops_working_within_the_cache_time_even_while_in_use(sqlite_db):
    host, _ = md.account(sqlite_db, "host")
    cid, token = md.client(sqlite_db, host, "box")
    counting = CountingDatabase(sqlite_db)
    dispatcher = Dispatcher(counting)
    rpc = MarketRPC(dispatcher)
    request = Request(f"client/{cid}", token)
    assert (await rpc._auth(request, "client"))["id"] == cid
    assert counting.runs == 1
    _, new_digest = credentials.new_token()
    sqlite_db.transact(lambda tx: tx.execute("UPDATE clients SET token_hash = ? WHERE id = ?", (new_digest, cid)))
    for _ in range(9):  # used every second: the cached row serves, and is not kept alive by use
        dispatcher.clock.advance(1)
        assert (await rpc._auth(request, "client"))["id"] == cid
    assert counting.runs == 1
    dispatcher.clock.advance(AUTH_CACHE_SECONDS - 9 + 0.1)
    with pytest.raises(MarketError, match="wrong credentials"):
        await rpc._auth(request, "client")
    assert counting.runs == 2


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_is_never_served_from_the_cache(sqlite_db):
    host, _ = md.account(sqlite_db, "host")
    cid, token = md.client(sqlite_db, host, "box")
    rpc = MarketRPC(Dispatcher(sqlite_db))
    assert (await rpc._auth(Request(f"client/{cid}", token), "client"))["id"] == cid
    with pytest.raises(MarketError, match="wrong credentials"):
        await rpc._auth(Request(f"client/{cid}", token + "x"), "client")
    with pytest.raises(MarketError, match="for accounts"):
        await rpc._auth(Request(f"client/{cid}", token), "account")
