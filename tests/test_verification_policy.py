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


TRUTH = "t"


@st.composite
def disputes(draw):
    """A worker (honest or not), then replays in order: honest ones reach the truth or say they
    hit their cap (a decider, with 4x the cap, only when the worker made its state up); liars send
    a made-up hash of their own (or the truth) and may claim a cap. Trusted replayers are honest
    (trust is earned by verified slices); workers under watch may lie."""
    honest_worker = draw(st.booleans())
    n = draw(st.integers(1, 1 + v.MAX_DECIDERS))
    replays, honest = [], {}
    for i in range(n):
        client = 20 + i
        is_honest = draw(st.booleans())
        trusted = is_honest and draw(st.booleans())
        if is_honest:
            capped = (not honest_worker) if i > 0 else (draw(st.booleans()) or not honest_worker)
            reached = "cap" if capped else TRUTH
        else:
            capped = draw(st.booleans())
            # liars do not collude: each one's made-up state is its own
            reached = draw(st.sampled_from([TRUTH, f"lie{i}", f"cap{i}"]))
        replays.append(v.Replay(client, reached, capped, trusted))
        honest[client] = is_honest
    target = TRUTH if honest_worker else draw(st.sampled_from(["x", "y", "m"]))
    return target, honest_worker, replays, honest


@given(disputes())
def test_no_honest_party_ever_loses_whatever_liars_under_watch_say(case):
    target, honest_worker, replays, honest = case
    for k in range(1, len(replays) + 1):
        j = v.judge(target, 10, replays[:k])
        if honest_worker:
            assert 10 not in j.losers
        assert not [c for c in j.losers if honest.get(c)]
        if j.status != v.CheckStatus.DISPUTED:
            break


@given(disputes())
def test_a_made_up_state_is_never_verified_while_deciders_are_trusted_or_honest(case):
    target, honest_worker, replays, honest = case
    if honest_worker:
        return
    for k in range(1, len(replays) + 1):
        j = v.judge(target, 10, replays[:k])
        if all(honest[r.client] for r in replays[1:k]) and k > 1:
            assert not j.worker_right
        if j.status != v.CheckStatus.DISPUTED:
            break


def test_the_first_replay_alone_never_makes_a_loser():
    for capped in (False, True):
        j = v.judge("t", 10, [v.Replay(20, "x", capped, trusted=True)])
        assert j.status == v.CheckStatus.DISPUTED and j.losers == ()


def test_a_trusted_decider_that_reaches_the_target_makes_the_lying_first_verifier_lose():
    j = v.judge("t", 10, [v.Replay(20, "x", trusted=False), v.Replay(30, "t", trusted=True)])
    assert j.status == v.CheckStatus.DECIDED and j.worker_right and j.losers == (20,)


def test_a_trusted_decider_that_agrees_with_the_first_verifier_makes_the_worker_lose():
    j = v.judge("t", 10, [v.Replay(20, "x", trusted=False), v.Replay(30, "x", trusted=True)])
    assert j.status == v.CheckStatus.DECIDED and not j.worker_right and j.losers == (10,)


def test_a_decider_that_agrees_with_neither_sends_the_dispute_to_another_decider():
    replays = [v.Replay(20, "x", trusted=False), v.Replay(30, "y", trusted=True)]
    assert v.judge("t", 10, replays).status == v.CheckStatus.DISPUTED
    # the next decider confirms the worker: the first verifier and the first decider both lose
    j = v.judge("t", 10, [*replays, v.Replay(40, "t", trusted=True)])
    assert j.worker_right and set(j.losers) == {20, 30}


def test_a_dispute_nobody_confirms_is_given_up_after_max_deciders_and_nobody_loses():
    replays = [v.Replay(20 + i, f"h{i}", trusted=True) for i in range(1 + v.MAX_DECIDERS)]
    j = v.judge("t", 10, replays)
    assert j.status == v.CheckStatus.UNVERIFIABLE and j.losers == () and not j.worker_right


def test_an_under_watch_decider_alone_convicts_nobody_while_a_trusted_one_is_in_the_dispute():
    # a lying first verifier under watch and a lying decider under watch agree on nothing
    j = v.judge("t", 10, [v.Replay(20, "x", trusted=False), v.Replay(30, "y", trusted=False)])
    assert j.status == v.CheckStatus.DISPUTED and j.losers == ()
    # an under-watch capped decider does not convict the worker after a first replay that reached
    # a state (only a trusted decider's cap, or a second cap, does)
    j = v.judge("t", 10, [v.Replay(20, "x", trusted=False), v.Replay(30, "cap", capped=True, trusted=False)])
    assert j.status == v.CheckStatus.DISPUTED and j.losers == ()


def test_a_cap_hit_is_no_disagreement_a_decider_with_a_larger_cap_reaching_the_target_clears_all():
    j = v.judge("t", 10, [v.Replay(20, "c", capped=True, trusted=False), v.Replay(30, "t", trusted=True)])
    assert j.status == v.CheckStatus.DECIDED and j.worker_right and j.losers == ()


def test_when_the_decider_also_hits_its_larger_cap_the_worker_loses_and_the_capped_verifier_never():
    j = v.judge("t", 10, [v.Replay(20, "c", capped=True, trusted=False), v.Replay(30, "c4", capped=True)])
    assert j.status == v.CheckStatus.DECIDED and not j.worker_right and j.losers == (10,)
    # two caps claimed under watch convict nobody: claiming a cap costs a liar nothing
    j = v.judge("t", 10, [v.Replay(20, "c", capped=True, trusted=False), v.Replay(30, "c4", True, False)])
    assert j.status == v.CheckStatus.DISPUTED and j.losers == ()


def test_a_decider_replays_with_four_times_a_first_replays_cap():
    assert v.first_steps(1000) == 1000
    assert v.decider_steps(1000) == 4000 == v.first_steps(1000) * v.DECIDER_CAP_FACTOR
    assert v.decider_steps(v.MAX_STEPS) == v.MAX_STEPS


def test_a_dispute_waits_for_a_trusted_decider_then_bootstraps_with_one_under_watch():
    c = check(status="disputed", first_verifier=20, first_verifier_owner=120, disputed_at=100.0)
    watched = v.Verifier(30, 130, "cpython-3.11", trusted=False)
    assert v.can_verify(v.Verifier(30, 130, "cpython-3.11", trusted=True), c, at=101.0, wait_seconds=60)
    assert not v.can_verify(watched, c, at=101.0, wait_seconds=60)
    assert v.can_verify(watched, c, at=160.0, wait_seconds=60)  # no trusted worker took it: a new market
    # a worker under watch still makes first replays (a new market must bootstrap)
    assert v.can_verify(watched, check(), at=0.0)


def test_an_earlier_decider_and_its_owner_never_decide_the_same_dispute_again():
    c = check(status="disputed", first_verifier=20, first_verifier_owner=120, deciders=((30, 130),))
    assert not v.can_verify(v.Verifier(30, 130, "cpython-3.11"), c)
    assert not v.can_verify(v.Verifier(31, 130, "cpython-3.11"), c)
    assert v.can_verify(v.Verifier(40, 140, "cpython-3.11"), c)


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


# -- holding a worker's checks, moot checks, on hold, watch slices (t1: the cost of cheaters) --------


def test_a_workers_slice_checks_beyond_the_limit_in_flight_are_held_and_others_are_not():
    me = v.Verifier(30, 130, "cpython-3.11")
    out = [check(id=i, status="replaying", created_at=float(i)) for i in (1, 2)]
    mine = check(id=3, created_at=3.0)
    other = check(id=4, worker=11, worker_owner=111, created_at=4.0)
    limit = v.MAX_OPEN_PER_WORKER
    assert v.pick_check(me, [*out, mine, other], limit=limit) == other  # worker 10 has 2 out
    assert v.pick_check(me, [out[0], mine, other], limit=limit) == mine  # 1 out: the oldest again
    # without a limit (the store today) nothing is held
    assert v.pick_check(me, [*out, mine, other]) == mine


def test_a_result_is_never_held():
    me = v.Verifier(30, 130, "cpython-3.11")
    out = [check(id=i, status="replaying") for i in (1, 2, 3)]
    result = check(id=4, kind="result", created_at=9.0)
    assert v.pick_check(me, [*out, result], limit=1) == result


def test_one_dispute_of_a_worker_is_decided_at_a_time_and_the_oldest_goes_first():
    me = v.Verifier(30, 130, "cpython-3.11")
    first = check(id=1, status="disputed", first_verifier=20, first_verifier_owner=120, disputed_at=5.0)
    second = check(id=2, status="disputed", first_verifier=21, first_verifier_owner=121, disputed_at=6.0)
    assert v.pick_check(me, [second, first], limit=2) == first
    deciding = first._replace(status="deciding")
    assert v.pick_check(me, [deciding, second], limit=2) is None  # it waits for that decision
    assert v.pick_check(me, [second], limit=2) == second  # the first closed: its turn


def test_a_held_check_never_expires_and_a_released_one_waits_from_its_release():
    out = [check(id=i, status="replaying") for i in (1, 2)]
    held = check(id=3, created_at=0.0)
    limit = v.MAX_OPEN_PER_WORKER
    assert v.expired([*out, held], at=1000.0, wait_seconds=60.0, limit=limit) == []
    released = held._replace(waiting_since=990.0)
    assert v.expired([released], at=1000.0, wait_seconds=60.0, limit=limit) == []
    assert v.expired([released], at=1050.0, wait_seconds=60.0, limit=limit) == [released]
    # no limit: the old rule, from its creation
    assert v.expired([*out, held], at=1000.0, wait_seconds=60.0, limit=None) == [held]


def test_a_losers_checks_not_being_replayed_are_moot_and_nobody_elses():
    assert v.moot(check(status="waiting"), loser=10)
    assert v.moot(check(status="disputed", first_verifier=20, first_verifier_owner=120), loser=10)
    assert not v.moot(check(status="replaying"), loser=10)  # a replay out finishes (and is paid)
    assert not v.moot(check(status="deciding"), loser=10)
    assert not v.moot(check(status="waiting"), loser=20)  # a liar's loss says nothing of this worker


def test_a_worker_with_a_check_disputed_or_being_decided_is_on_hold():
    assert not v.on_hold(10, [check(status="waiting"), check(status="replaying")])
    assert v.on_hold(10, [check(status="disputed")])
    assert v.on_hold(10, [check(status="deciding")])
    assert not v.on_hold(11, [check(status="disputed")])  # another worker's dispute
    assert not v.on_hold(10, [check(status="agreed"), check(status="unverifiable")])


@given(st.floats(0.5, 3600), st.integers(0, 50), st.floats(0.1, 60))
def test_a_watched_worker_gets_a_share_of_its_slice_never_below_the_minimum_nor_above_the_grant(granted, ver, least):
    got = v.slice_seconds(granted, ver, least)
    if not v.under_watch(ver):
        assert got == granted
    else:
        assert got <= granted
        assert got == min(granted, max(least, granted * v.WATCH_SLICE_SHARE))
