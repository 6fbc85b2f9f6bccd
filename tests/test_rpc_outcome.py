"""XML-RPC ``outcome``: the published keys as they were, and a preview of the result's text written
in a helper within a budget, so a result bomb is answered (its bytes) but never expanded."""

from __future__ import annotations

import base64
import xmlrpc.client

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from market.tasklet import codec
from tests import marketdata as md
from tests.test_web_support import finish_job, make_job

PUBLISHED = {"id", "kind", "outcome", "error", "result"}


class _Dispatcher:
    def __init__(self, db, offload):
        self.db, self.clock, self.offload = db, Clock(), offload


async def _outcome(db, offload, account: str, token: str, job_id: int) -> dict:
    from market.rpc.methods import MarketRPC

    auth = b"Basic " + base64.b64encode(f"account/{account}:{token}".encode())
    answer = MarketRPC(_Dispatcher(db, offload)).answer(xmlrpc.client.dumps((job_id,), "outcome").encode(), auth)
    if not isinstance(answer, bytes):
        answer = await answer
    return xmlrpc.client.loads(answer)[0][0]


@pytest.fixture
def sqlite_db(tmp_path):
    from market.store import Database, upgrade

    db = Database(f"sqlite:{tmp_path}/outcome.sqlite")
    upgrade(db)
    yield db
    db.close()


def _bomb(levels: int = 40) -> list:
    a: list = []
    for _ in range(levels):
        a = [a, a]
    return a


@pytest_twisted.ensureDeferred
async def test_outcome_keeps_its_keys_and_adds_a_preview(sqlite_db):
    from market.offload.testing import InlinePool

    owner, token = md.account(sqlite_db, "owner")
    job = make_job(sqlite_db, owner, "answer", 100)
    finish_job(sqlite_db, job, {"total": 499500})
    pool = InlinePool()
    answer = await _outcome(sqlite_db, pool, "owner", token, job)
    assert PUBLISHED <= set(answer) and answer["outcome"] == "finished"
    assert codec.decode(answer["result"].data) == {"total": 499500}
    assert answer["preview"] == '{"total": 499500}' and answer["preview_complete"] is True
    assert answer["result_bytes"] == len(answer["result"].data)
    assert pool.calls == ["market.jobs.results:rendered"]


@pytest_twisted.ensureDeferred
async def test_outcome_of_a_result_bomb_answers_its_bytes_and_says_why_there_is_no_preview(sqlite_db):
    from market.offload.testing import InlinePool

    owner, token = md.account(sqlite_db, "owner")
    job = make_job(sqlite_db, owner, "bomb", 100)
    finish_job(sqlite_db, job, _bomb())
    answer = await _outcome(sqlite_db, InlinePool(), "owner", token, job)
    assert answer["result"].data == codec.encode(_bomb()) and answer["result_bytes"] < 200
    assert answer["preview"] is None and answer["preview_complete"] is False
    assert "values once each shared part" in answer["preview_problem"]


@pytest_twisted.ensureDeferred
async def test_outcome_answers_the_result_even_when_the_helpers_are_busy(sqlite_db):
    from twisted.internet import defer

    from market.offload.pool import Busy

    class BusyPool:
        settings = __import__("market.settings", fromlist=["OffloadSettings"]).OffloadSettings()

        def call(self, *a, **k):
            return defer.fail(Busy("the market is busy checking other members' work; retry in a few seconds"))

    owner, token = md.account(sqlite_db, "owner")
    job = make_job(sqlite_db, owner, "answer", 100)
    finish_job(sqlite_db, job, 42)
    answer = await _outcome(sqlite_db, BusyPool(), "owner", token, job)
    assert codec.decode(answer["result"].data) == 42
    assert answer["preview"] is None and "busy" in answer["preview_problem"]
