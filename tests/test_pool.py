"""The pooling window, driven by fake clocks (no reactor)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock

from market.core.pool import NoWork, Pool, PoolRequest, WindowPolicy
from sim.clock import SimClock

CLOCKS = [pytest.param(Clock, id="task.Clock"), pytest.param(SimClock, id="SimClock")]


class Recorder:
    """An ``assign`` that records each window's requests and answers with a job per client id
    in ``jobs`` (or with whatever ``reply`` returns)."""

    def __init__(self, jobs=None, reply=None):
        self.windows = []
        self.jobs = jobs if jobs is not None else {}
        self.reply = reply

    def __call__(self, requests):
        self.windows.append(list(requests))
        if self.reply is not None:
            return self.reply(requests)
        return {r.key: self.jobs[r.client_id] for r in requests if r.client_id in self.jobs}


def results(deferreds):
    out = []
    for d in deferreds:
        d.addBoth(out.append)
    return out


def make(clock_type, window=5.0, threshold=10, **recorder):
    clock = clock_type()
    assign = Recorder(**recorder)
    return clock, assign, Pool(clock, WindowPolicy(window, threshold), assign)


# -- the pure policy -----------------------------------------------------------------------------


def test_window_policy_closes_window_seconds_after_opening():
    assert WindowPolicy(2.5, 10).closes_at(100.0) == 102.5


def test_window_policy_is_full_at_the_threshold():
    policy = WindowPolicy(1.0, 3)
    assert not policy.is_full(2)
    assert policy.is_full(3) and policy.is_full(4)


def test_window_policy_retry_after_is_the_window_but_at_least_one_second():
    assert WindowPolicy(0.1, 3).retry_after == 1.0
    assert WindowPolicy(30.0, 3).retry_after == 30.0


@pytest.mark.parametrize("window, threshold", [(0, 1), (-1.0, 1), (1.0, 0)])
def test_window_policy_refuses_nonsense(window, threshold):
    with pytest.raises(ValueError):
        WindowPolicy(window, threshold)


# -- closing the window --------------------------------------------------------------------------


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_window_closes_after_window_seconds(clock_type):
    clock, assign, pool = make(clock_type, jobs={1: "job-7"})
    answers = results([pool.request(1, 50.0)])
    clock.advance(4.9)
    assert answers == [] and assign.windows == []
    clock.advance(0.1)
    assert answers == ["job-7"]
    assert [r.client_id for r in assign.windows[0]] == [1]


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_window_opens_at_the_first_request_not_at_later_ones(clock_type):
    clock, assign, pool = make(clock_type)
    pool.request(1, 1.0)
    clock.advance(3.0)
    pool.request(2, 1.0)
    clock.advance(2.0)
    assert [[r.client_id for r in w] for w in assign.windows] == [[1, 2]]


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_window_closes_at_once_when_threshold_requests_wait(clock_type):
    clock, assign, pool = make(clock_type, threshold=3, jobs={1: "a", 2: "b", 3: "c"})
    answers = results([pool.request(i, 1.0) for i in (1, 2, 3)])
    assert answers == ["a", "b", "c"]
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_request_records_arrival_time_speed_extra_and_a_unique_key(clock_type):
    clock, assign, pool = make(clock_type)
    clock.advance(7.0)
    pool.request(4, 123.5, extra={"slice": 60})
    pool.request(5, 1.0)
    clock.advance(5.0)
    first, second = assign.windows[0]
    assert (first.client_id, first.speed, first.requested_at, first.extra) == (4, 123.5, 7.0, {"slice": 60})
    assert isinstance(first, PoolRequest) and first.key != second.key


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_a_request_assign_gave_nothing_gets_no_work_with_retry_after(clock_type):
    clock, assign, pool = make(clock_type, window=0.5, jobs={1: "job"})
    answers = results([pool.request(1, 1.0), pool.request(2, 1.0)])
    clock.advance(0.5)
    assert answers[0] == "job"
    assert isinstance(answers[1], NoWork) and answers[1].retry_after == 1.0


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_an_empty_pool_sets_no_timer(clock_type):
    clock, assign, pool = make(clock_type)
    assert clock.getDelayedCalls() == []
    clock.advance(100.0)
    assert assign.windows == []


# -- failures and overlap ------------------------------------------------------------------------


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_assign_raising_errbacks_every_waiting_request(clock_type):
    def broken(requests):
        raise RuntimeError("database is down")

    clock, assign, pool = make(clock_type, reply=broken)
    answers = results([pool.request(1, 1.0), pool.request(2, 1.0)])
    clock.advance(5.0)
    assert len(answers) == 2
    assert all(a.check(RuntimeError) for a in answers)
    assert pool.stats.assign_failures == 1


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_assign_failing_later_errbacks_every_waiting_request(clock_type):
    pending = Deferred()
    clock, assign, pool = make(clock_type, reply=lambda requests: pending)
    answers = results([pool.request(1, 1.0), pool.request(2, 1.0)])
    clock.advance(5.0)
    assert answers == []
    pending.errback(RuntimeError("lock wait timeout"))
    assert [a.check(RuntimeError) for a in answers] == [RuntimeError, RuntimeError]


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_assign_returning_a_non_mapping_errbacks(clock_type):
    clock, assign, pool = make(clock_type, reply=lambda requests: ["not", "a", "dict"])
    answers = results([pool.request(1, 1.0)])
    clock.advance(5.0)
    assert answers[0].check(TypeError)


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_a_failure_while_delivering_still_answers_everyone(clock_type):
    from collections.abc import Mapping

    class Breaks(Mapping):
        """Answers the first lookup, then fails."""

        def __init__(self):
            self.lookups = 0

        def __getitem__(self, key):
            self.lookups += 1
            if self.lookups > 1:
                raise RuntimeError("answers went away")
            return "job"

        def __iter__(self):
            return iter(())

        def __len__(self):
            return 0

    clock, assign, pool = make(clock_type, reply=lambda requests: Breaks())
    answers = results([pool.request(i, 1.0) for i in (1, 2, 3)])
    clock.advance(5.0)
    assert answers[0] == "job"
    assert [a.check(RuntimeError) for a in answers[1:]] == [RuntimeError, RuntimeError]
    assert clock.getDelayedCalls() == []
    assert pool.stats.windows_closed == 1


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_requests_during_assign_go_to_the_next_window(clock_type):
    pending = []

    def slow(requests):
        pending.append(Deferred())
        return pending[-1]

    clock, assign, pool = make(clock_type, reply=slow)
    first = results([pool.request(1, 1.0)])
    clock.advance(5.0)
    second = results([pool.request(2, 1.0)])
    assert [[r.client_id for r in w] for w in assign.windows] == [[1]]
    pending[0].callback({assign.windows[0][0].key: "job-a"})
    assert first == ["job-a"] and second == []
    clock.advance(5.0)
    assert [[r.client_id for r in w] for w in assign.windows] == [[1], [2]]
    pending[1].callback({})
    assert isinstance(second[0], NoWork)


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_next_window_due_during_assign_closes_right_after_it(clock_type):
    pending = []

    def slow(requests):
        pending.append(Deferred())
        return pending[-1]

    clock, assign, pool = make(clock_type, reply=slow)
    pool.request(1, 1.0)
    clock.advance(5.0)
    pool.request(2, 1.0)
    clock.advance(6.0)  # the second window expires while the first assign still runs
    assert len(assign.windows) == 1
    pending[0].callback({})
    assert [[r.client_id for r in w] for w in assign.windows] == [[1], [2]]
    pending[1].callback({})
    assert clock.getDelayedCalls() == []


# -- one place per client, cancellation, stop ----------------------------------------------------


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_a_second_request_from_a_client_replaces_the_first(clock_type):
    clock, assign, pool = make(clock_type, jobs={1: "job"})
    first = results([pool.request(1, 1.0)])
    assert first == []
    second = results([pool.request(1, 2.0)])
    assert isinstance(first[0], NoWork)
    clock.advance(5.0)
    assert second == ["job"]
    assert [(r.client_id, r.speed) for r in assign.windows[0]] == [(1, 2.0)]
    assert pool.stats.requests_replaced == 1


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_cancelling_a_request_withdraws_it_from_the_window(clock_type):
    clock, assign, pool = make(clock_type)
    gone = pool.request(1, 1.0)
    pool.request(2, 1.0)
    gone.addErrback(lambda f: f.trap(CancelledError))
    gone.cancel()
    clock.advance(5.0)
    assert [r.client_id for r in assign.windows[0]] == [2]


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_cancelling_the_only_request_cancels_the_timer(clock_type):
    clock, assign, pool = make(clock_type)
    d = pool.request(1, 1.0)
    d.addErrback(lambda f: f.trap(CancelledError))
    d.cancel()
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_stop_answers_waiting_requests_and_leaves_no_delayed_calls(clock_type):
    clock, assign, pool = make(clock_type)
    answers = results([pool.request(1, 1.0), pool.request(2, 1.0)])
    stopped = results([pool.stop()])
    assert stopped == [None]
    assert [type(a) for a in answers] == [NoWork, NoWork]
    assert clock.getDelayedCalls() == []
    assert assign.windows == []


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_requests_after_stop_get_no_work_at_once(clock_type):
    clock, assign, pool = make(clock_type)
    pool.stop()
    assert isinstance(results([pool.request(1, 1.0)])[0], NoWork)
    assert clock.getDelayedCalls() == []


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_stop_waits_for_a_running_assign(clock_type):
    pending = Deferred()
    clock, assign, pool = make(clock_type, reply=lambda requests: pending)
    answers = results([pool.request(1, 1.0)])
    clock.advance(5.0)
    stopped = results([pool.stop()])
    assert stopped == []
    pending.callback({assign.windows[0][0].key: "job"})
    assert stopped == [None] and answers == ["job"]
    assert clock.getDelayedCalls() == []


# -- monitoring ----------------------------------------------------------------------------------


@pytest.mark.parametrize("clock_type", CLOCKS)
def test_stats_count_windows_answers_and_mean_wait(clock_type):
    clock, assign, pool = make(clock_type, jobs={1: "job"})
    pool.request(1, 1.0)
    clock.advance(4.0)
    pool.request(2, 1.0)
    clock.advance(1.0)
    stats = pool.stats
    assert (stats.windows_closed, stats.requests_served, stats.requests_without_work) == (1, 1, 1)
    assert stats.mean_wait == pytest.approx(3.0)
    assert stats.waiting == 0


# -- invariants under any sequence of arrivals, cancellations and time ---------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 1.0, 2.5])),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([Clock, SimClock]), st.integers(1, 4), operations)
def test_every_request_is_answered_exactly_once_and_nothing_is_left_behind(clock_type, threshold, ops):
    clock = clock_type()
    windows = []

    def assign(requests):
        windows.append([r.client_id for r in requests])
        return {r.key: f"job-for-{r.client_id}" for r in requests if r.client_id % 2 == 0}

    pool = Pool(clock, WindowPolicy(1.0, threshold), assign)
    issued, answers = [], []
    for op, arg in ops:
        if op == "request":
            d = pool.request(arg, 1.0)
            index = len(issued)
            issued.append(d)
            d.addBoth(lambda result, i=index: answers.append((i, result)))
        elif op == "advance":
            clock.advance(arg)
        elif issued:
            issued[arg % len(issued)].cancel()  # a no-op once answered
    pool.stop()
    assert sorted(i for i, _ in answers) == list(range(len(issued)))  # each answered once
    assert clock.getDelayedCalls() == []
    for window in windows:
        assert len(window) == len(set(window)) and 1 <= len(window) <= threshold
    for _, result in answers:
        if isinstance(result, str):
            continue
        assert isinstance(result, NoWork) or result.check(CancelledError)
