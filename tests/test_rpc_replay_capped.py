"""XML-RPC ``state`` on a replay lease: a verifier that hit its step cap says so with the new
``info`` key ``replay: 'capped'`` (docs/trust.md), which reaches the dispatcher; without it a
check-in is an ordinary one. No method signature changed."""

from __future__ import annotations

import base64
import xmlrpc.client

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from tests import marketdata as md


class _Dispatcher:
    def __init__(self, db):
        self.db, self.clock, self.offload = db, Clock(), None
        self.checkins: list[tuple] = []

    def checkin(self, client_id, stateid, state, status, progress, capped=False):
        self.checkins.append((client_id, stateid, status, progress, capped))
        return defer.succeed({"stateid": stateid, "status": "accepted"})


@pytest.fixture
def sqlite_db(tmp_path):
    from market.store import Database, upgrade

    db = Database(f"sqlite:{tmp_path}/capped.sqlite")
    upgrade(db)
    yield db
    db.close()


async def _state(dispatcher, cid: int, token: str, info: dict) -> dict:
    from market.rpc.methods import MarketRPC

    auth = b"Basic " + base64.b64encode(f"client/{cid}:{token}".encode())
    body = xmlrpc.client.dumps((7, xmlrpc.client.Binary(b"env"), info), "state").encode()
    answer = MarketRPC(dispatcher).answer(body, auth)
    if not isinstance(answer, bytes):
        answer = await answer
    return xmlrpc.client.loads(answer)[0][0]


@pytest_twisted.ensureDeferred
async def test_a_capped_replay_is_passed_on_and_an_ordinary_check_in_is_not_capped(sqlite_db):
    owner, _ = md.account(sqlite_db, "host")
    cid, token = md.client(sqlite_db, owner, "box", 10.0)
    dispatcher = _Dispatcher(sqlite_db)
    await _state(dispatcher, cid, token, {"status": "ok", "replay": "capped"})
    await _state(dispatcher, cid, token, {"status": "ok", "progress": 0.5})
    assert [c[-1] for c in dispatcher.checkins] == [True, False]
