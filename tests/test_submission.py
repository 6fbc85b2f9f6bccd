"""Submitting a job (market.jobs.submission): the paper's ``job`` then ``init``, validated and compiled
once, state #0 carrying the job id, and no CPU work inside a database transaction — whether the
CLI, the web form, the XML-RPC methods or the tests submit."""

from __future__ import annotations

import base64
import os
import subprocess
import time
import xmlrpc.client

import pytest
import pytest_twisted
from twisted.internet.task import Clock

from market import tasklet
from market.core.errors import JobRefused, MarketError, TooLarge
from market.jobs import submission
from market.store import jobs as jsql
from tests import marketdata as md
from tests.servers import MARKET, Market, env

SOURCE = "def main(n, step=1):\n    total = 0\n    for i in range(0, n, step):\n        total += i\n    return total\n"


def _fresh(tag: str) -> str:
    """A source the runtime's compile cache has not seen (so compilations can be counted)."""
    return f"# {tag} {time.monotonic_ns()}\n" + SOURCE


def test_a_prepared_job_stamps_the_same_state_0_as_start_for_any_job_id():
    job = tasklet.prepare(SOURCE, "main", [10], {"step": 2})
    for job_id in (None, 1, 7, 2**40):
        assert job.state(job_id) == tasklet.start(SOURCE, "main", [10], {"step": 2}, job_id=job_id)
    assert tasklet.read_header(job.state(7)).job_id == 7 and tasklet.read_header(job.state(7)).seq == 0


def test_prepare_validates_compiles_and_freezes_exactly_once(monkeypatch):
    from market.tasklet import codec, runner

    compiled, encoded = [], []
    real_compile, real_encode = runner.compile_job, codec.encode
    monkeypatch.setattr(runner, "compile_job", lambda *a: compiled.append(a) or real_compile(*a))
    monkeypatch.setattr(codec, "encode", lambda *a, **k: encoded.append(a) or real_encode(*a, **k))
    job = submission.prepare(_fresh("once"), "main", [100])
    states = [job.state(job_id) for job_id in range(1, 4)]
    assert len(compiled) == 1 and len(encoded) == 1
    assert [tasklet.read_header(s).job_id for s in states] == [1, 2, 3]


def test_submitting_in_a_transaction_does_no_cpu_work(db, monkeypatch):
    owner, _ = md.account(db, "owner")
    job = submission.prepare(_fresh("tx"), "main", [100])
    from market.tasklet import codec, compiler, runner, validator

    def forbidden(*a, **k):
        raise AssertionError("CPU work inside the transaction")

    for module, name in [
        (runner, "compile_job"),
        (compiler, "compile_job"),
        (validator, "check_module"),
        (codec, "encode"),
        (tasklet, "start"),
        (tasklet, "prepare"),
        (tasklet, "validate"),
    ]:
        monkeypatch.setattr(module, name, forbidden)
    job_id = db.transact(submission.submit, owner, job, "sum", 150, time.time())
    row = db.transact(jsql.job_row, job_id)
    assert (row["status"], row["price"], row["entry"], row["seq"]) == ("ready", 150, "main", 0)
    header = tasklet.read_header(bytes(db.transact(jsql.committed_state, job_id)["data"]))
    assert (header.job_id, header.seq, header.source_sha256) == (job_id, 0, row["source_sha256"])


def test_refusals_name_their_lines_and_keep_their_kind():
    with pytest.raises(JobRefused, match="line 3") as e:
        submission.prepare("def main(n):\n    return n\nimport os\n", "main", [1])
    assert e.value.kind == "refused"
    with pytest.raises(JobRefused, match="too many positional arguments"):
        submission.prepare(SOURCE, "main", [1, 2, 3])
    with pytest.raises(JobRefused, match="plain data"):
        submission.prepare(SOURCE, "main", [object()])
    with pytest.raises(TooLarge, match="1024 KiB"):
        submission.prepare(SOURCE + "#" * (1024 * 1024), "main", [1])
    with pytest.raises(JobRefused):
        submission.checked_module(SOURCE, "nosuchfunction")


def test_a_job_that_is_refused_leaves_nothing_in_the_store(db):
    owner, _ = md.account(db, "owner")
    with pytest.raises(MarketError):
        db.transact(submission.submit, owner, submission.prepare(SOURCE, "main", [1]), "", 100, time.time())
    assert db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0


# -- the server's side: XML-RPC job + init, in process ------------------------------------------


class _Dispatcher:
    def __init__(self, db):
        from market.offload.testing import InlinePool

        self.db, self.clock, self.offload = db, Clock(), InlinePool()


def _auth(name: str, token: str) -> bytes:
    return b"Basic " + base64.b64encode(f"account/{name}:{token}".encode())


async def _call(rpc, auth, method, *args):
    answer = rpc.answer(xmlrpc.client.dumps(args, method, allow_none=True).encode(), auth)
    if not isinstance(answer, bytes):
        answer = await answer
    return xmlrpc.client.loads(answer)[0][0]


@pytest.fixture
def sqlite_db(tmp_path):
    from market.store import Database, upgrade

    db = Database(f"sqlite:{tmp_path}/submit.sqlite")
    upgrade(db)
    yield db
    db.close()


@pytest_twisted.ensureDeferred
async def test_rpc_job_then_init_makes_a_ready_job_whose_state_0_carries_its_id(sqlite_db):
    from market.rpc.methods import MarketRPC

    owner, token = md.account(sqlite_db, "owner")
    rpc, auth = MarketRPC(_Dispatcher(sqlite_db)), _auth("owner", token)
    job = submission.prepare(SOURCE, "main", [10])
    job_id = await _call(rpc, auth, "job", owner, SOURCE, "0.05", "sum", "main")
    assert sqlite_db.transact(jsql.job_row, job_id)["status"] == "new"
    assert await _call(rpc, auth, "init", job_id, xmlrpc.client.Binary(job.state(job_id))) is True
    assert sqlite_db.transact(jsql.job_row, job_id)["status"] == "ready"
    stored = bytes(sqlite_db.transact(jsql.committed_state, job_id)["data"])
    assert stored == job.state(job_id) and tasklet.read_header(stored).job_id == job_id


@pytest_twisted.ensureDeferred
async def test_rpc_init_refuses_a_state_of_another_job_module_or_id(sqlite_db):
    from market.rpc.methods import MarketRPC

    owner, token = md.account(sqlite_db, "owner")
    rpc, auth = MarketRPC(_Dispatcher(sqlite_db)), _auth("owner", token)
    job_id = await _call(rpc, auth, "job", owner, SOURCE, "0.05", "sum", "main")
    other = submission.prepare(SOURCE.replace("total", "t"), "main", [10])
    mine = submission.prepare(SOURCE, "main", [10])
    for state, words in [
        (other.state(job_id), "not made from this job"),
        (mine.state(job_id + 1), "job id differ"),
        (b"not an envelope", "not a valid envelope"),
    ]:
        with pytest.raises(xmlrpc.client.Fault) as e:
            await _call(rpc, auth, "init", job_id, xmlrpc.client.Binary(state))
        assert e.value.faultCode == 1 and words in e.value.faultString
    assert sqlite_db.transact(jsql.job_row, job_id)["status"] == "new"
    # a state without a job id (tasklet.start's default) is still accepted: the contract stays
    assert await _call(rpc, auth, "init", job_id, xmlrpc.client.Binary(mine.state(None))) is True


@pytest_twisted.ensureDeferred
async def test_rpc_job_refuses_with_the_published_fault_codes(sqlite_db):
    from market.rpc.methods import MarketRPC

    owner, token = md.account(sqlite_db, "owner")
    rpc, auth = MarketRPC(_Dispatcher(sqlite_db)), _auth("owner", token)
    cases = [
        ((owner, "import os\ndef main():\n    return 1\n", "0.05", "x", "main"), 7, "line 1"),
        ((owner, SOURCE + "#" * (1024 * 1024), "0.05", "x", "main"), 8, "KiB"),
        ((owner, SOURCE, "0.051", "x", "main"), 1, "decimals"),
        ((owner + 1, SOURCE, "0.05", "x", "main"), 3, "you are account"),
    ]
    for args, code, words in cases:
        with pytest.raises(xmlrpc.client.Fault) as e:
            await _call(rpc, auth, "job", *args)
        assert e.value.faultCode == code and words in e.value.faultString
    assert sqlite_db.transact(lambda tx: tx.scalar("SELECT COUNT(*) FROM jobs")) == 0


# -- market submit against a real twistd market --------------------------------------------------


def test_market_submit_makes_a_ready_job_and_refusals_exit_with_their_kind(db, db_url, tmp_path):
    owner, token = md.account(db, "alice")
    server = Market(db_url, str(tmp_path), "--window", "0.2").start()
    try:
        module = tmp_path / "job.py"
        module.write_text(SOURCE)
        e = dict(env(), MARKET_SERVER=server.url, MARKET_ACCOUNT="alice", MARKET_TOKEN=token)

        def market(*args):
            return subprocess.run([*MARKET, *args], capture_output=True, text=True, env=e, timeout=60, cwd=tmp_path)

        r = market("submit", str(module), "main", "--name", "sum", "--price", "0.05", "--arg", "1000")
        assert r.returncode == 0, r.stderr
        job_id = int(r.stdout.strip())
        row = db.transact(jsql.job_row, job_id)
        assert (row["status"], row["account_id"], row["price"], row["name"]) == ("ready", owner, 5, "sum")
        assert tasklet.read_header(bytes(db.transact(jsql.committed_state, job_id)["data"])).job_id == job_id

        module.write_text("import os\ndef main():\n    return 1\n")
        r = market("submit", str(module), "main", "--name", "bad", "--price", "0.05")
        assert r.returncode == 2 and "cannot run as a market job" in r.stderr and "line 1" in r.stderr
        # a Fault keeps its kind: not found (4) is a refusal by the market, exit 1
        r = market("price", str(job_id + 100), "1.00")
        assert r.returncode == 1 and "(Fault 4)" in r.stderr and "Traceback" not in r.stderr
    finally:
        server.stop()
    assert os.path.exists(server.log)


# -- limits checked before any parsing, and the check in a helper -------------------------------


def _functions(count: int) -> str:
    return "".join(f"def f{i}(x):\n    return x + {i}\n" for i in range(count)) + "def main():\n    return 1\n"


@pytest.mark.parametrize(
    "source, words",
    [
        ("x = 1\n" * 20_001 + SOURCE, "lines; the market takes at most 20,000"),
        ("x = 1\r" * 20_001 + SOURCE, "lines; the market takes at most 20,000"),  # a lone CR ends a line too
        ("X = '" + "a" * 10_001 + "'\n" + SOURCE, "characters; the market takes at most 10,000 in one line"),
        (SOURCE + "#" * (1024 * 1024), "over 1024 KiB"),
    ],
)
def test_a_module_over_the_cheap_limits_is_refused_before_anything_parses_it(source, words, monkeypatch):
    import ast

    monkeypatch.setattr(ast, "parse", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(TooLarge, match=words):
        submission.check_limits(source)


def test_the_cheap_limits_cost_milliseconds_even_for_the_review_s_1_mib_module():
    source = _functions(12_000) + "#" * 400_000 + "\n"
    began = time.perf_counter()
    with pytest.raises(TooLarge, match="lines"):
        submission.check_limits(source)
    assert time.perf_counter() - began < 0.05
    within = "x = 1\n" * 19_000
    submission.check_limits(within)  # at the limits: let through


@pytest.mark.parametrize(
    "source, words",
    [
        (_functions(2_001), "def, class or lambda words; the market takes at most 2,000"),
        ("X = [" + "1," * 160_000 + "]\n" + SOURCE, "words, numbers and symbols; the market takes at most 150,000"),
        ("X = f'" + "{1}" * 20_001 + "'\n" + SOURCE, "'{' characters; the market takes at most 20,000"),
    ],
)
def test_a_module_whose_text_would_cost_too_much_to_parse_is_refused_before_parsing(source, words, monkeypatch):
    import ast

    monkeypatch.setattr(ast, "parse", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(TooLarge, match=words):
        submission.check_shape(source)


def test_input_too_deep_for_the_parser_is_a_refusal_not_a_crash():
    with pytest.raises(JobRefused):
        submission.prepare("X = (a" + "\n.b" * 15_000 + ")\n" + SOURCE, "main", [1])


def test_the_web_form_s_check_lists_the_functions_and_picks_the_only_one():
    only = submission.examined_module(SOURCE, "", [5], {}, True)
    assert only["entry"] == "main" and only["refusal"] is None and only["job"] is not None
    two = submission.examined_module(SOURCE + "def other():\n    return 2\n", "", [5], {}, True)
    assert two["functions"] == ["main", "other"] and two["entry"] == "" and two["job"] is None
    refused = submission.examined_module("import os\n" + SOURCE, "main", [5], {}, True)
    assert refused["refusal"][0] == "refused" and "line 1" in refused["refusal"][1]
    unfrozen = submission.examined_module(SOURCE, "main", [], {}, False)
    assert unfrozen["job"] is None and unfrozen["refusal"] is None


@pytest_twisted.ensureDeferred
async def test_the_server_checks_a_module_in_a_helper_after_its_cheap_limits(sqlite_db):
    from market.rpc.methods import MarketRPC

    owner, token = md.account(sqlite_db, "owner")
    dispatcher = _Dispatcher(sqlite_db)
    rpc, auth = MarketRPC(dispatcher), _auth("owner", token)
    await _call(rpc, auth, "job", owner, SOURCE, "0.05", "sum", "main")
    assert dispatcher.offload.calls == ["market.jobs.submission:checked_module"]
    with pytest.raises(xmlrpc.client.Fault) as e:
        await _call(rpc, auth, "job", owner, _functions(12_000), "0.05", "big", "main")
    assert e.value.faultCode == 8 and "lines" in e.value.faultString
    assert dispatcher.offload.calls == ["market.jobs.submission:checked_module"]  # refused before the pool


@pytest_twisted.ensureDeferred
async def test_examine_in_rebuilds_the_job_a_helper_prepared():
    from market.offload.testing import InlinePool

    pool = InlinePool()
    examined = await submission.examine_in(pool, SOURCE, "", [10], {"step": 2})
    assert examined.entry == "main" and examined.refusal is None
    assert examined.job.state(7) == tasklet.start(SOURCE, "main", [10], {"step": 2}, job_id=7)
    refused = await submission.examine_in(pool, SOURCE, "main", [1, 2, 3], {})
    assert isinstance(refused.refusal, JobRefused) and refused.job is None
