"""The helper pool (market.offload): real helper processes, each call bounded in time and memory,
a bounded queue, refusals that keep their kind, and helpers replaced whatever happens to them."""

from __future__ import annotations

import os
import time

import pytest
import pytest_twisted
from twisted.internet import defer

from market.core.errors import KINDS, InternalError, JobRefused, TooLarge
from market.offload.pool import Busy, HelperFailed, HelperPool, TooSlow
from market.offload.registry import FUNCTIONS, split
from market.rpc import faults
from market.settings import OffloadSettings

TESTS = {
    f"tests.offload_functions:{name}"
    for name in ("echo", "sleep", "spin", "allocate", "refuse", "crash", "bug", "pid", "limits", "chatter", "warn")
}


def fn(name: str) -> str:
    return f"tests.offload_functions:{name}"


async def started(ready: bool = True, **settings) -> HelperPool:
    """A running pool of one helper (unless ``settings`` say otherwise), ready to work if ``ready``."""
    from twisted.internet import reactor

    pool = HelperPool(OffloadSettings(**{"helpers": 1, "helper_seconds": 5.0, **settings}), reactor, FUNCTIONS | TESTS)
    pool.startService()
    if ready:
        await pool.call(fn("echo"))
    return pool


async def sleep(seconds: float) -> None:
    from twisted.internet import reactor, task

    await task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.ensureDeferred
async def test_a_call_runs_in_a_helper_process_and_returns_its_value():
    pool = await started()
    try:
        assert await pool.call(fn("echo"), 1, "two", b"\x00three" * 1000) == (1, "two", b"\x00three" * 1000)
        helper = await pool.call(fn("pid"))
        assert helper != os.getpid() and pool.pids() == [helper]
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_helper_is_started_fresh_and_imports_only_what_its_call_needs():
    pool = await started()
    try:
        answer = await pool.call(fn("limits"))
        loaded = [m for m in answer["modules"] if m.split(".")[0] in ("twisted", "market", "klein", "pymysql")]
        # the market package and this one, the helper itself: no Twisted, no store, no web
        assert set(loaded) <= {"market", "market.offload", "market.offload.helper"}, loaded
        with open(f"/proc/{pool.pids()[0]}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
        assert b"-I" in argv  # isolated: no PYTHONPATH, no user site, nothing of the server's environment
        with open(f"/proc/{pool.pids()[0]}/environ", "rb") as f:
            assert not [v for v in f.read().split(b"\0") if v.startswith(b"MARKET_")]
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_helper_limits_its_own_memory_and_priority_before_any_call():
    pool = await started(helper_memory=200, helper_nice=7)
    try:
        answer = await pool.call(fn("limits"))
        assert answer["as"] == 200 * 1024 * 1024
        assert answer["nice"] >= 7
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_refusal_keeps_its_kind_and_words():
    pool = await started()
    try:
        with pytest.raises(JobRefused, match="not in the subset"):
            await pool.call(fn("refuse"), "not in the subset")
        assert await pool.call(fn("echo"), "still serving") == ("still serving",)
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_call_over_its_time_is_refused_and_its_helper_replaced():
    pool = await started(helper_seconds=0.5)
    try:
        first = pool.pids()
        began = time.monotonic()
        with pytest.raises(TooSlow, match="more than 0.5 s") as e:
            await pool.call(fn("spin"), 30)
        assert time.monotonic() - began < 3
        assert faults.fault_for(e.value).faultCode == KINDS["too-large"].fault
        assert await pool.call(fn("echo"), 1) == (1,)
        assert pool.pids() != first and pool.stats.too_slow == 1
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_the_limit_is_cpu_time_so_a_busy_machine_does_not_fail_a_fair_call():
    import signal

    pool = await started(helper_seconds=1.0)
    try:
        call = pool.call(fn("spin"), 0.3)  # 0.3 s of CPU, but the machine stalls the helper for 1.5 s
        helper = pool.pids()[0]
        os.kill(helper, signal.SIGSTOP)
        await sleep(1.5)
        os.kill(helper, signal.SIGCONT)
        assert await call == "spun"
        began = time.monotonic()
        with pytest.raises(TooSlow):  # one that uses no CPU at all still ends: at 3 times the limit
            await pool.call(fn("sleep"), 60)
        assert 2.5 < time.monotonic() - began < 5
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_call_may_ask_for_less_time_than_the_pool_allows_never_more():
    pool, strict = await started(helper_seconds=5.0), await started(helper_seconds=0.5)
    try:
        with pytest.raises(TooSlow, match="more than 0.3 s"):
            await pool.call(fn("sleep"), 10, seconds=0.3)
        with pytest.raises(TooSlow, match="more than 0.5 s"):
            await strict.call(fn("sleep"), 10, seconds=60)
    finally:
        await pool.stopService()
        await strict.stopService()


@pytest_twisted.ensureDeferred
async def test_a_call_that_needs_more_memory_than_a_helper_has_is_refused_and_the_helper_replaced():
    pool = await started(helper_memory=128)
    try:
        first = pool.pids()
        with pytest.raises(TooLarge, match="128 MiB"):
            await pool.call(fn("allocate"), 300)
        assert await pool.call(fn("allocate"), 10) == 10 * 1024 * 1024
        assert pool.pids() != first
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_helper_that_dies_fails_its_call_plainly_and_is_replaced():
    pool = await started()
    try:
        with pytest.raises(HelperFailed, match="ended while working"):
            await pool.call(fn("crash"))
        assert await pool.call(fn("echo"), 2) == (2,)
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_bug_in_a_function_is_an_internal_error_without_its_traceback():
    pool = await started()
    try:
        with pytest.raises(InternalError) as e:
            await pool.call(fn("bug"))
        assert "Traceback" not in str(e.value) and "ZeroDivision" not in str(e.value)
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_what_a_function_prints_goes_to_the_log_not_into_the_answers():
    pool = await started()
    try:
        assert await pool.call(fn("chatter")) == "answered"
        assert await pool.call(fn("echo"), 3) == (3,)
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_warnings_of_a_strangers_input_are_not_written_to_the_log():
    from twisted.logger import globalLogPublisher

    seen = []
    globalLogPublisher.addObserver(seen.append)
    pool = await started()
    try:
        assert await pool.call(fn("warn")) == "warned"
        await sleep(0.2)
    finally:
        await pool.stopService()
        globalLogPublisher.removeObserver(seen.append)
    assert not [e for e in seen if "SyntaxWarning" in str(e.get("text", ""))]


@pytest_twisted.ensureDeferred
async def test_only_registered_functions_can_be_called():
    pool = await started()
    try:
        with pytest.raises(InternalError, match="not a function helpers may run"):
            await pool.call("os:system", "true")
        assert pool.stats.calls == 1  # the warm-up call only
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_full_queue_refuses_at_once_with_busy_fault_9():
    pool = await started(helper_queue=2)
    try:
        running = [pool.call(fn("sleep"), 0.5) for _ in range(3)]  # one running, two waiting
        began = time.monotonic()
        with pytest.raises(Busy, match="busy") as e:
            await pool.call(fn("echo"), "one too many")
        assert time.monotonic() - began < 0.1
        assert faults.fault_for(e.value).faultCode == 9
        assert await defer.gatherResults(running) == ["slept"] * 3
        assert await pool.call(fn("echo"), "after") == ("after",)
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_one_member_cannot_take_the_whole_queue():
    pool = await started(helper_queue=10, member_calls=2)
    try:
        mine = [pool.call(fn("sleep"), 0.3, owner="mallory") for _ in range(2)]
        with pytest.raises(Busy, match="already have 2"):
            await pool.call(fn("echo"), 1, owner="mallory")
        assert await pool.call(fn("echo"), "alice is served", owner="alice") == ("alice is served",)
        await defer.gatherResults(mine)
        assert await pool.call(fn("echo"), 2, owner="mallory") == (2,)  # done: mallory may call again
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_a_cancelled_waiting_call_leaves_the_queue():
    pool = await started(member_calls=2)
    try:
        running = pool.call(fn("sleep"), 0.3, owner="bob")
        waiting = pool.call(fn("echo"), "never", owner="bob")
        waiting.cancel()
        with pytest.raises(defer.CancelledError):
            await waiting
        assert await pool.call(fn("echo"), "bob again", owner="bob") == ("bob again",)
        await running
    finally:
        await pool.stopService()


@pytest_twisted.ensureDeferred
async def test_stopping_ends_every_helper_and_refuses_what_waits():
    pool = await started()
    pids = pool.pids()
    running = pool.call(fn("sleep"), 0.2)
    waiting = pool.call(fn("echo"), "too late")
    await pool.stopService()
    with pytest.raises(Busy, match="stopping"):
        await waiting
    assert await running == "slept"  # the call in flight finished before its helper went
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or "zombie" in open(f"/proc/{pid}/status").read().lower()
    with pytest.raises(Busy):
        await pool.call(fn("echo"), "stopped")


@pytest_twisted.ensureDeferred
async def test_calls_wait_for_a_helper_that_is_still_starting():
    pool = await started(ready=False)  # its helper has not said it is ready: the call waits for it
    try:
        assert await pool.call(fn("echo"), "first") == ("first",)
    finally:
        await pool.stopService()


def test_the_registry_names_importable_functions_that_take_plain_data():
    import importlib

    for name in FUNCTIONS:
        module, function = split(name)
        assert callable(getattr(importlib.import_module(module), function)), name
    with pytest.raises(ValueError):
        split("no colon here")


def test_the_inline_pool_answers_like_a_pool():
    from market.offload.testing import InlinePool

    pool = InlinePool(functions=FUNCTIONS | TESTS)
    results = []
    pool.call(fn("echo"), 1).addCallback(results.append)
    pool.call(fn("refuse"), "no").addErrback(lambda f: results.append(f.value))
    pool.call("os:system", "true").addErrback(lambda f: results.append(type(f.value)))
    assert results[0] == (1,) and isinstance(results[1], JobRefused) and results[2] is InternalError
    assert pool.calls == [fn("echo"), fn("refuse")]
