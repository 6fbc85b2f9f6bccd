"""Who is calling (MarketRPC.identify, before any body byte is read): the credentials cache saves a
database read per worker call, and a replaced token stops working within AUTH_CACHE_SECONDS of its
first use, however often it is used meanwhile."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from market.accounts import credentials
from market.core.errors import MarketError
from market.rpc.methods import AUTH_CACHE_SECONDS, MEMBER_BODY, Caller, MarketRPC
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


async def identify(rpc, header):
    caller = rpc.identify(header)
    return (await caller) if not isinstance(caller, Caller) else caller


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
    assert (await identify(rpc, request)).row["id"] == cid
    assert counting.runs == 1
    _, new_digest = credentials.new_token()
    sqlite_db.transact(lambda tx: tx.execute("UPDATE clients SET token_hash = ? WHERE id = ?", (new_digest, cid)))
    for _ in range(9):  # used every second: the cached row serves, and is not kept alive by use
        dispatcher.clock.advance(1)
        assert rpc.identify(request).row["id"] == cid  # at once, from the cache
    assert counting.runs == 1
    dispatcher.clock.advance(AUTH_CACHE_SECONDS - 9 + 0.1)
    with pytest.raises(MarketError, match="wrong credentials"):
        await identify(rpc, request)
    assert counting.runs == 2


@pytest_twisted.ensureDeferred
async def test_a_wrong_token_is_never_served_from_the_cache(sqlite_db):
    host, _ = md.account(sqlite_db, "host")
    cid, token = md.client(sqlite_db, host, "box")
    rpc = MarketRPC(Dispatcher(sqlite_db))
    caller = await identify(rpc, Request(f"client/{cid}", token))
    assert caller.row["id"] == cid
    with pytest.raises(MarketError, match="wrong credentials"):
        await identify(rpc, Request(f"client/{cid}", token + "x"))
    with pytest.raises(MarketError, match="for accounts"):
        await rpc._auth(caller, "account")


@pytest_twisted.ensureDeferred
async def test_a_caller_carries_its_body_limit_and_the_account_that_owns_its_uploads(sqlite_db):
    from market.settings import ConnectionSettings

    host, host_token = md.account(sqlite_db, "host")
    cid, token = md.client(sqlite_db, host, "box")
    rpc = MarketRPC(Dispatcher(sqlite_db), ConnectionSettings(state_body=3 * 1024 * 1024))
    worker = await identify(rpc, Request(f"client/{cid}", token))
    member = await identify(rpc, Request("account/host", host_token))
    assert (worker.kind, worker.owner, worker.max_body) == ("client", host, 3 * 1024 * 1024)
    assert (member.kind, member.owner, member.max_body) == ("account", host, MEMBER_BODY)


def test_credentials_that_cannot_name_anyone_are_refused_without_a_database_read():
    rpc = MarketRPC(Dispatcher(CountingDatabase(None)))
    nobody = [b"", b"Bearer x", b"Basic !!!", Request("client/abc", "t"), Request("robot/1", "t"), Request("", "t")]
    for header in nobody:
        with pytest.raises(MarketError):
            rpc.identify(header)
    assert rpc.db.runs == 0
