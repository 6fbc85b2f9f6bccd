"""The simulator's heap clock behaves like the IReactorTime subset the pool relies on."""

import pytest
from twisted.internet.error import AlreadyCalled, AlreadyCancelled

from sim.clock import SimClock


def test_calls_run_in_time_order_each_at_its_own_time():
    clock, seen = SimClock(), []
    for delay in (3.0, 1.0, 2.0):
        clock.callLater(delay, lambda d=delay: seen.append((d, clock.seconds())))
    clock.advance(10.0)
    assert seen == [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0)]
    assert clock.seconds() == 10.0


def test_calls_due_at_the_same_time_run_in_scheduling_order():
    clock, seen = SimClock(), []
    for name in "abc":
        clock.callLater(1.0, seen.append, name)
    clock.advance(1.0)
    assert seen == ["a", "b", "c"]


def test_a_call_scheduled_by_a_call_within_the_advance_runs_too():
    clock, seen = SimClock(), []
    clock.callLater(1.0, lambda: clock.callLater(1.0, seen.append, clock.seconds()))
    clock.advance(2.0)
    assert seen == [1.0]


def test_cancelled_calls_do_not_run_and_leave_no_delayed_calls():
    clock, seen = SimClock(), []
    call = clock.callLater(1.0, seen.append, 1)
    call.cancel()
    assert not call.active() and clock.getDelayedCalls() == [] and clock.pending == 0
    clock.advance(5.0)
    assert seen == []
    with pytest.raises(AlreadyCancelled):
        call.cancel()


def test_reset_moves_a_call_and_runs_it_once():
    clock, seen = SimClock(), []
    call = clock.callLater(1.0, lambda: seen.append(clock.seconds()))
    call.reset(5.0)
    assert call.getTime() == 5.0
    clock.advance(10.0)
    assert seen == [5.0]
    with pytest.raises(AlreadyCalled):
        call.reset(1.0)


def test_delay_postpones_a_call():
    clock, seen = SimClock(), []
    call = clock.callLater(1.0, lambda: seen.append(clock.seconds()))
    call.delay(2.0)
    clock.advance(10.0)
    assert seen == [3.0]


def test_run_until_stops_before_later_calls():
    clock, seen = SimClock(), []
    clock.callLater(1.0, seen.append, 1)
    clock.callLater(3.0, seen.append, 3)
    clock.run(until=2.0)
    assert seen == [1] and clock.seconds() == 2.0 and clock.next_time() == 3.0
    assert [c.getTime() for c in clock.getDelayedCalls()] == [3.0]


def test_negative_delays_are_refused():
    with pytest.raises(ValueError):
        SimClock().callLater(-1.0, print)
