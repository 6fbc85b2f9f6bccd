"""The replay-verification policy (``market.core.verification``), on plain values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from market.core import ledger
from market.core import verification as v

S = v.Settings()


def check(**kw) -> v.Check:
    base = dict(
        id=1,
        kind="slice",
        job_id=7,
        job_owner=100,
        worker=10,
        worker_owner=110,
        interpreter="cpython-3.11",
        status="waiting",
        created_at=0.0,
    )
    base.update(kw)
    return v.Check(**base)  # type: ignore[arg-type]


def test_every_result_is_replayed_whatever_the_draw():
    assert v.why_verify("result", 1000, 0.999) is v.Reason.RESULT


def test_every_slice_of_a_worker_under_watch_is_replayed():
    assert v.why_verify("slice", S.watch_slices - 1, 0.999) is v.Reason.WATCH
    assert v.why_verify("slice", S.watch_slices, 0.999) is None


@given(st.floats(0, 1, exclude_max=True))
def test_a_trusted_workers_slice_is_replayed_exactly_when_the_draw_falls_within_the_fraction(draw):
    reason = v.why_verify("slice", S.watch_slices, draw)
    assert (reason is v.Reason.SAMPLED) == (draw < S.fraction)


def test_the_step_cap_is_slice_times_speed_times_margin_within_bounds():
    assert v.max_steps(2.0, 1_000_000.0, 4.0) == 8_000_000
    assert v.max_steps(2.0, None) == v.MIN_STEPS
    assert v.max_steps(1e6, 1e9) == v.MAX_STEPS


def test_a_verifier_is_another_owners_opted_in_worker_on_the_same_interpreter():
    c = check()
    assert v.can_verify(v.Verifier(20, 120, "cpython-3.11"), c)
    assert not v.can_verify(v.Verifier(10, 120, "cpython-3.11"), c)  # the worker itself
    assert not v.can_verify(v.Verifier(21, 110, "cpython-3.11"), c)  # the worker's owner
    assert not v.can_verify(v.Verifier(22, 100, "cpython-3.11"), c)  # the job's owner
    assert not v.can_verify(v.Verifier(20, 120, "pypy-3.9"), c)
    assert not v.can_verify(v.Verifier(20, 120, "cpython-3.11", suspect=True), c)


def test_a_dispute_goes_to_a_third_owner():
    c = check(status="disputed", first_verifier=20, first_verifier_owner=120)
    assert not v.can_verify(v.Verifier(20, 120, "cpython-3.11"), c)
    assert not v.can_verify(v.Verifier(23, 120, "cpython-3.11"), c)
    assert v.can_verify(v.Verifier(30, 130, "cpython-3.11"), c)


def test_disputes_come_first_then_results_then_the_oldest():
    me = v.Verifier(30, 130, "cpython-3.11")
    old = check(id=1, created_at=0.0)
    result = check(id=2, kind="result", created_at=5.0)
    dispute = check(id=3, created_at=9.0, status="disputed", first_verifier=20, first_verifier_owner=120)
    assert v.pick_check(me, [old, result, dispute]) == dispute
    assert v.pick_check(me, [old, result]) == result
    assert v.pick_check(me, [old]) == old
    assert v.pick_check(v.Verifier(10, 110, "cpython-3.11"), [old, result]) is None


@given(st.sampled_from("abc"), st.sampled_from("abc"), st.sampled_from("abc"))
def test_the_third_replay_decides_and_the_honest_never_lose(target, first, third):
    if target == first:
        return  # no dispute
    d = v.decide(target, first, third, worker=1, first_verifier=2)
    assert d.worker_right == (third == target)
    assert (1 in d.losers) == (third != target)
    assert (2 in d.losers) == (third != first)
    assert d.losers  # someone disagreed with the third: a dispute always has a loser


def test_the_job_goes_back_to_before_the_losers_first_unverified_state():
    states = [
        v.StateRecord(0, None, False),
        v.StateRecord(1, 5, False),
        v.StateRecord(2, 7, True),
        v.StateRecord(3, 7, False),
        v.StateRecord(4, 5, True),
        v.StateRecord(5, 7, False),
    ]
    assert v.rollback_seq(states, 7) == 2
    assert v.rollback_seq(states, 5) == 0
    assert v.rollback_seq(states, 9) == 5  # made nothing: the job stays where it is


@given(
    st.lists(st.tuples(st.sampled_from([1, 2]), st.integers(1, 500), st.booleans(), st.booleans()), max_size=12),
    st.integers(0, 3000),
)
def test_reversals_take_back_only_the_losers_unverified_payments_and_never_overdraw(rows, loser_balance):
    payer, payees = 100, {1: 201, 2: 202}
    payments = [
        v.Payment(i, 7, client, payer, payees[client], amount, verified, done)
        for i, (client, amount, verified, done) in enumerate(rows)
    ]
    balances = {payer: 0, 201: loser_balance, 202: 10_000}
    entries = v.reversals(payments, 1, balances)
    due = sum(p.amount for p in payments if p.client == 1 and not p.verified and not p.reversed)
    assert sum(e.amount for e in entries) == min(due, loser_balance)
    for e in entries:
        assert e.kind == "reversal" and e.debit_account == 201 and e.credit_account == payer
        ledger.apply(balances, e)  # never overdraws
    assert balances[201] >= 0 and sum(balances.values()) == loser_balance + 10_000


def test_a_replay_is_paid_at_most_the_slice_it_checks():
    assert v.replay_ms(5000, 2000) == 2000
    assert v.replay_ms(800, 2000) == 800


def test_a_result_is_verified_only_once_a_replay_agreed():
    assert v.result_standing("agreed") is v.Standing.VERIFIED
    assert v.result_standing("decided", worker_right=True) is v.Standing.VERIFIED
    assert v.result_standing("decided", worker_right=False) is v.Standing.UNVERIFIED
    for s in ("waiting", "replaying", "disputed", "deciding", "unverifiable", None):
        assert v.result_standing(s) is v.Standing.UNVERIFIED


def test_a_check_waits_for_a_verifier_no_longer_than_the_setting():
    assert not v.waited_too_long(100.0, 159.9, 60.0)
    assert v.waited_too_long(100.0, 160.0, 60.0)


def test_the_fee_is_the_final_slice_and_the_sampled_share_of_the_others():
    # 11 slices of 10 s at 1.00/s: the last (10.00) and 2 % of the other 100.00 (2.00)
    assert v.expected_fee(100, 10.0, 11) == 1000 + 200
    assert v.expected_fee(100, 10.0, 11, v.Settings(fraction=0.05)) == 1000 + 500
    assert "2 %" in v.fee_words() and "10 verified slices" in v.fee_words()
