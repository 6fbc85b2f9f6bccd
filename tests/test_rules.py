"""The market's rules (market.core.rules), on plain values: statuses, the lease lifecycle, window
planning, settlement, three strikes and lease expiry."""

from __future__ import annotations

import xmlrpc.client
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core import ledger, money, rules
from market.core.rules import (
    JobChange,
    JobKind,
    JobStatus,
    LeaseStatus,
    Outcome,
    SliceStatus,
    StateStatus,
    Verdict,
    WindowJob,
)

REPO = Path(__file__).resolve().parent.parent
T0 = 1_800_000_000.0


# -- statuses --------------------------------------------------------------------------------------


def test_statuses_are_the_strings_the_database_stores():
    assert [s.value for s in JobStatus] == ["new", "ready", "running", "held", "finished", "cancelled"]
    assert [s.value for s in LeaseStatus] == ["out", "accepted", "rejected", "expired", "finished", "failed"]
    assert [s.value for s in StateStatus] == ["committed", "superseded"]
    assert [k.value for k in JobKind] == ["job", "task", "test"]


def test_a_status_compares_and_hashes_like_its_string():
    assert JobStatus.READY == "ready" and "ready" == JobStatus.READY
    assert {"ready": 1}[JobStatus.READY] == 1
    assert f"status = '{JobStatus.HELD}'" == "status = 'held'"
    assert "finished" in rules.OVER and "crash" in rules.STRIKE_STATUSES


def test_the_report_publishes_exactly_the_statuses_its_schema_allows():
    from lxml import etree

    from market import report

    xsd = etree.parse(str(REPO / "schema" / "report.xsd"))
    ns = {"xs": "http://www.w3.org/2001/XMLSchema"}
    enumerations = [
        sorted(t.xpath(".//xs:enumeration/@value", namespaces=ns))
        for t in xsd.xpath("//xs:simpleType[.//xs:enumeration]", namespaces=ns)
    ]
    assert sorted(report.JOB_STATUSES) in enumerations
    assert sorted(report.DISPATCH_STATUSES) in enumerations
    assert sorted(report.JOB_STATUSES) == sorted(["ready", "running", "held", "finished", "new", "cancelled"])
    assert sorted(report.DISPATCH_STATUSES) == sorted(["out", "accepted", "rejected", "expired", "finished", "failed"])
    assert all(type(s) is str for s in (*report.JOB_STATUSES, *report.DISPATCH_STATUSES))


def test_the_rpc_accepts_the_sandboxes_slice_statuses_and_the_result_outcomes():
    from market.rpc import methods
    from market.sandbox.outcome import STATUSES

    # + the worker's own 'nofreeze' (an extension: the sandbox knows nothing of freezing)
    assert methods.SLICE_STATUSES == (*STATUSES, "nofreeze")
    assert methods.OUTCOMES == ("finished", "error", "success", "timeout", "overflow", "abort", "crash", "memory")
    assert set(rules.STRIKE_STATUSES) <= set(SliceStatus)


# -- jobs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", list(JobStatus))
def test_only_finished_and_cancelled_jobs_are_over(status):
    assert rules.is_over(status) == (status in ("finished", "cancelled"))


@pytest.mark.parametrize("status", list(JobStatus))
def test_only_a_ready_job_can_be_leased_and_a_test_job_always(status):
    assert rules.can_lease(status, JobKind.JOB) == (status == "ready")
    assert rules.can_lease(status, JobKind.TASK) == (status == "ready")
    assert rules.can_lease(status, JobKind.TEST)


@pytest.mark.parametrize("status", list(JobStatus))
def test_a_held_job_goes_back_to_ready_and_no_other_status_moves(status):
    assert rules.unheld(status) == ("ready" if status == "held" else status)


def test_a_worker_keeps_a_lease_only_while_it_is_out_and_its_job_runs():
    assert rules.lease_is_wanted("out", "running")
    assert not rules.lease_is_wanted("out", "cancelled")
    assert not rules.lease_is_wanted("expired", "running")


# -- leases ----------------------------------------------------------------------------------------


def test_a_lease_is_due_back_after_its_slice_and_the_transfer_allowance():
    assert rules.lease_deadline(T0, 30.0, 5.0) == T0 + 35.0


def test_a_task_runs_for_its_own_time_limit_and_a_job_for_the_granted_slice():
    spec = '{"limits": {"time": 12.5}}'
    assert rules.task_seconds(spec) == 12.5
    assert rules.lease_seconds(rules.task_seconds(spec), 60.0) == 12.5
    assert rules.lease_seconds(rules.task_seconds(None), 60.0) == 60.0
    assert rules.task_seconds('{"limits": {}}') is None and rules.task_seconds("not json") is None


def test_a_check_in_at_the_deadline_is_in_time_and_after_it_late():
    deadline = T0 + 35.0
    assert rules.judge_checkin("out", deadline, "running", deadline) is Verdict.ACCEPT
    assert rules.judge_checkin("out", deadline, "running", deadline + 0.001) is Verdict.REJECT
    assert not rules.overdue(deadline, deadline) and rules.overdue(deadline, deadline + 0.001)


@pytest.mark.parametrize("job_status", ["finished", "cancelled"])
def test_a_check_in_for_a_job_that_is_over_is_rejected(job_status):
    assert rules.judge_checkin("out", T0 + 35, job_status, T0 + 1) is Verdict.REJECT


@pytest.mark.parametrize("lease_status", ["accepted", "rejected", "expired", "finished"])
def test_a_check_in_on_a_closed_lease_is_a_repeat_even_when_late(lease_status):
    assert rules.judge_checkin(lease_status, T0, "ready", T0 + 1000) is Verdict.REPEAT


def test_accepted_time_is_measured_by_the_server_from_checkout_in_whole_milliseconds():
    assert rules.accepted_ms(T0, 30.0, T0 + 12.3456) == 12345


def test_accepted_time_is_capped_at_the_granted_slice():
    assert rules.accepted_ms(T0, 30.0, T0 + 34.9) == 30_000


def test_accepted_time_is_never_negative():
    assert rules.accepted_ms(T0, 30.0, T0 - 5) == 0


@given(
    out=st.floats(0, 1e9, allow_nan=False),
    granted=st.floats(0, 1e5, allow_nan=False),
    after=st.floats(-1e5, 1e5, allow_nan=False),
)
def test_accepted_time_is_the_measured_time_clamped_to_the_slice(out, granted, after):
    at = out + after
    assert rules.accepted_ms(out, granted, at) == int(max(0.0, min(at - out, granted)) * 1000)


def test_a_repeat_answers_what_the_lease_recorded_marked_duplicate():
    assert rules.repeat_answer(7, "accepted", 1691, 12345) == {
        "stateid": 7,
        "status": "accepted",
        "paid": 1691,
        "duplicate": True,
        "accepted_ms": 12345,
    }
    assert rules.repeat_answer(8, "expired", None, None)["paid"] == 0


def test_answers_are_plain_values_xml_rpc_can_send():
    answer = rules.answer(7, LeaseStatus.ACCEPTED, 5, 6)
    assert type(answer["status"]) is str
    xmlrpc.client.dumps((answer,))  # a StrEnum member would raise "cannot marshal"


# -- what a job becomes --------------------------------------------------------------------------


def test_an_accepted_slice_puts_a_job_back_on_the_ready_list():
    assert rules.after_accepted_slice(JobKind.JOB) == "ready"
    assert rules.after_accepted_slice(JobKind.TASK) == "ready"


def test_an_accepted_slice_finishes_a_test_job():
    assert rules.after_accepted_slice(JobKind.TEST) == "finished"


def test_a_rejected_lease_puts_its_running_job_back_on_the_ready_list():
    assert rules.released("running", JobKind.JOB, 0) == JobChange(JobStatus.READY)


def test_a_rejected_lease_leaves_a_job_with_another_lease_out_running():
    assert rules.released("running", JobKind.JOB, 1) is None


@pytest.mark.parametrize("status", ["ready", "held", "finished", "cancelled"])
def test_a_closed_lease_leaves_a_job_that_is_not_running_alone(status):
    assert rules.released(status, JobKind.JOB, 0) is None


def test_a_test_job_whose_lease_closes_without_a_result_ends_unfinished():
    assert rules.released("running", JobKind.TEST, 0) == JobChange(JobStatus.FINISHED, Outcome.UNFINISHED)


def test_an_expired_lease_puts_its_job_back_on_the_ready_list():
    assert rules.after_expiry("running", JobKind.JOB, 0) == JobChange(JobStatus.READY)


def test_an_expired_test_job_ends_expired():
    assert rules.after_expiry("running", JobKind.TEST, 0) == JobChange(JobStatus.FINISHED, Outcome.EXPIRED)


@pytest.mark.parametrize("status", sorted(rules.STRIKE_STATUSES))
def test_the_third_crash_memory_or_refused_failure_ends_the_job_with_it(status):
    assert rules.after_failure(JobKind.JOB, status, 2) is None
    assert rules.after_failure(JobKind.JOB, status, 3) == JobChange(JobStatus.FINISHED, status)


@pytest.mark.parametrize("status", ["ok", "timeout", "overflow", "abort"])
def test_failures_that_are_not_the_jobs_fault_never_end_it(status):
    assert rules.after_failure(JobKind.JOB, status, 100) is None


def test_a_job_ends_nofreeze_at_the_configured_number_of_slices_without_a_freeze_point():
    assert rules.after_failure(JobKind.JOB, "nofreeze", 2) is None
    assert rules.after_failure(JobKind.JOB, "nofreeze", 3) == JobChange(JobStatus.FINISHED, Outcome.NOFREEZE)
    assert rules.after_failure(JobKind.JOB, "nofreeze", 4, nofreeze_strikes=5) is None
    assert rules.after_failure(JobKind.JOB, "nofreeze", 1, nofreeze_strikes=1) == JobChange(
        JobStatus.FINISHED, Outcome.NOFREEZE
    )


@pytest.mark.parametrize("status", list(SliceStatus))
def test_only_a_slice_without_a_freeze_point_is_billed_though_it_failed(status):
    assert rules.billed_failure(JobKind.JOB, status) == (status == "nofreeze")
    assert rules.billed_failure(JobKind.TASK, status) == (status == "nofreeze")
    assert not rules.billed_failure(JobKind.TEST, status)


def test_a_test_job_ends_at_its_first_failure():
    assert rules.after_failure(JobKind.TEST, "timeout", 1) == JobChange(JobStatus.FINISHED, "timeout")


@given(failures=st.lists(st.sampled_from(list(SliceStatus)), max_size=30), kind=st.sampled_from(list(JobKind)))
def test_a_job_ends_at_the_first_failure_that_makes_three_of_a_strike_status(failures, kind):
    """Three strikes as a property: fed one failure after another, the rule ends the job exactly at
    the first status of crash/memory/refused/nofreeze seen for the third time (a test job at its first)."""
    counts: dict[str, int] = {}
    ended_at = None
    for i, status in enumerate(failures):
        counts[status] = counts.get(status, 0) + 1
        change = rules.after_failure(kind, status, counts[status])
        if change is not None:
            assert change == JobChange(JobStatus.FINISHED, status)
            ended_at = i
            break
    if kind == JobKind.TEST:
        expected = 0 if failures else None
    else:
        seen: dict[str, int] = {}
        expected = None
        for i, status in enumerate(failures):
            seen[status] = seen.get(status, 0) + 1
            if status in ("crash", "memory", "refused", "nofreeze") and seen[status] == 3:
                expected = i
                break
    assert ended_at == expected


# -- windows ---------------------------------------------------------------------------------------


def test_a_lease_reserves_what_its_slice_may_cost():
    assert rules.reservation(JobKind.JOB, 137, 30.0) == money.payment(137, 30_000) == 4110


def test_a_test_job_reserves_nothing():
    assert rules.reservation(JobKind.TEST, 137, 30.0) == 0


def test_a_window_holds_a_job_whose_owner_cannot_pay_a_slice():
    top = [WindowJob(1, 10, 100, None), WindowJob(2, 20, 100, None), WindowJob(3, 10, 50, None)]
    plan = rules.plan_window(top, {10: 10_000, 20: 2_999}, wanted=3, longest=30.0)  # 100 c/s x 30 s = 3000
    assert [j.id for j in plan.candidates] == [1, 3]
    assert plan.held == [2]


def test_a_window_sets_aside_what_an_owners_earlier_candidates_may_cost():
    top = [WindowJob(1, 10, 100, None), WindowJob(2, 10, 100, None)]
    plan = rules.plan_window(top, {10: 5_000}, wanted=2, longest=30.0)
    assert [j.id for j in plan.candidates] == [1] and plan.held == [2]


def test_a_window_prices_a_task_at_its_own_time_limit():
    top = [WindowJob(1, 10, 100, 10.0)]  # 100 c/s x 10 s = 1000, not x 30 s
    assert [j.id for j in rules.plan_window(top, {10: 1_000}, wanted=1, longest=30.0).candidates] == [1]


def test_a_window_reads_the_ready_list_no_further_than_its_last_candidate():
    taken = []

    def top():
        for i in range(1, 100):
            taken.append(i)
            yield WindowJob(i, 10, 1, None)

    plan = rules.plan_window(top(), {10: 10**9}, wanted=3, longest=30.0)
    assert [j.id for j in plan.candidates] == [1, 2, 3] and taken == [1, 2, 3]


def test_a_window_looks_twice_as_far_as_its_clients_and_a_few_more():
    assert rules.window_reach(10) == 28


window_jobs = st.lists(
    st.tuples(st.integers(1, 4), st.integers(1, 500), st.none() | st.floats(1, 60)), max_size=25
).map(lambda rows: [WindowJob(i + 1, owner, price, seconds) for i, (owner, price, seconds) in enumerate(rows)])


@given(
    top=window_jobs,
    money_of=st.dictionaries(st.integers(1, 4), st.integers(-100, 40_000)),
    wanted=st.integers(0, 8),
    longest=st.floats(1, 60),
)
def test_window_planning_holds_exactly_the_jobs_whose_owner_cannot_pay(top, money_of, wanted, longest):
    available = {owner: money_of.get(owner, 0) for owner in range(1, 5)}
    plan = rules.plan_window(top, available, wanted, longest)
    candidates = [j.id for j in plan.candidates]
    # what was looked at is a prefix of the ready list, split into candidates and held, in order
    looked = top[: len(candidates) + len(plan.held)]
    assert sorted(candidates + plan.held) == [j.id for j in looked]
    assert len(candidates) <= wanted
    if len(candidates) < wanted:
        assert len(looked) == len(top)  # it only stops early once it has enough
    # replaying the prefix: a job is held exactly when its owner's money left cannot pay its slice
    left = dict(available)
    for job in looked:
        cost = rules.reservation(JobKind.JOB, job.price, job.seconds or longest)  # what its lease would reserve
        if job.id in plan.held:
            assert left[job.owner] < cost
        else:
            assert left[job.owner] >= cost
            left[job.owner] -= cost
    # no owner is promised more than it has
    for owner in available:
        promised = sum(
            rules.reservation(JobKind.JOB, j.price, j.seconds or longest) for j in plan.candidates if j.owner == owner
        )
        assert promised <= max(0, available[owner])


# -- settlement ------------------------------------------------------------------------------------


def _slice(lease_id=1, job_id=1, kind="job", price=137, owner=10, payee=20, ms=12_345):
    return rules.Slice(lease_id, job_id, kind, price, owner, payee, ms)


def test_a_slice_pays_money_payment_of_its_accepted_time_from_owner_to_host():
    balances = {10: 10_000, 20: 0}
    settlement = rules.settle([_slice()], balances)
    assert settlement.paid == {1: money.payment(137, 12_345)} == {1: 1691}
    assert settlement.postings == [(ledger.Entry(10, 20, 1691, "payment", "job 1 slice 1"), 1)]
    assert balances == {10: 10_000 - 1691, 20: 1691}


def test_test_jobs_are_free():
    balances = {20: 0}
    assert rules.settle([_slice(kind="test", owner=None)], balances).paid == {1: 0}
    assert balances == {20: 0}


def test_running_your_own_job_on_your_own_machine_costs_nothing():
    balances = {10: 10_000}
    settlement = rules.settle([_slice(owner=10, payee=10)], balances)
    assert settlement.paid == {1: 0} and settlement.postings == [] and balances == {10: 10_000}


def test_a_shortfall_pays_what_the_owner_has():
    balances = {10: 1000, 20: 0}
    assert rules.settle([_slice()], balances).paid == {1: 1000}
    assert balances == {10: 0, 20: 1000}


def test_an_owner_with_nothing_pays_nothing_and_is_not_overdrawn():
    balances = {10: 0, 20: 0}
    assert rules.settle([_slice()], balances) == rules.Settlement({1: 0}, [])


def test_slices_settled_together_draw_on_the_same_balance_in_order():
    balances = {10: 2000, 20: 0, 30: 0}
    settlement = rules.settle([_slice(1, payee=20), _slice(2, payee=30)], balances)
    assert settlement.paid == {1: 1691, 2: 309}
    assert balances == {10: 0, 20: 1691, 30: 309}


def test_a_slice_too_short_to_cost_a_cent_pays_nothing():
    assert rules.settle([_slice(price=1, ms=999)], {10: 5, 20: 0}).paid == {1: 0}


slices = st.lists(
    st.builds(
        rules.Slice,
        lease_id=st.integers(1, 10**6),
        job_id=st.integers(1, 50),
        kind=st.sampled_from(list(JobKind)),
        price=st.integers(1, 10_000),
        owner=st.none() | st.integers(1, 5),
        payee=st.integers(1, 5),
        accepted_ms=st.integers(0, 600_000),
        reserved=st.none(),
    ),
    max_size=20,
    unique_by=lambda s: s.lease_id,
)


@settings(max_examples=300)
@given(slices=slices, start=st.lists(st.integers(0, 2_000_000), min_size=5, max_size=5))
def test_settlement_conserves_money_and_never_overdraws(slices, start):
    balances = {account: start[account - 1] for account in range(1, 6)}
    before = dict(balances)
    settlement = rules.settle(slices, balances)
    assert sum(balances.values()) == sum(before.values())
    assert all(b >= 0 for b in balances.values())
    assert set(settlement.paid) == {s.lease_id for s in slices}
    by_lease = {s.lease_id: s for s in slices}
    replay = dict(before)
    for entry, lease_id in settlement.postings:
        s = by_lease[lease_id]
        assert (entry.debit_account, entry.credit_account, entry.kind) == (s.owner, s.payee, "payment")
        assert 0 < entry.amount <= money.payment(s.price, s.accepted_ms)
        assert s.kind != "test" and s.owner != s.payee
        assert entry.memo == f"job {s.job_id} slice {s.lease_id}"
        ledger.apply(replay, entry)  # the ledger's own rule accepts every entry, in order
    assert replay == balances
    assert sum(settlement.paid.values()) == sum(e.amount for e, _ in settlement.postings)


@given(slices=slices)
def test_an_owner_who_can_pay_pays_exactly_money_payment(slices):
    balances = dict.fromkeys(range(1, 6), money.MAX_CENTS)
    settlement = rules.settle(slices, balances)
    for s in slices:
        free = s.kind == "test" or s.owner is None or s.owner == s.payee
        assert settlement.paid[s.lease_id] == (0 if free else money.payment(s.price, s.accepted_ms))


# -- payment at the lease price (issue 17, item 3) -----------------------------------------------


def test_a_slice_is_paid_at_its_lease_price_and_never_above_what_the_lease_reserved():
    # raised 2.50 -> 5.00 mid-slice: the lease reserved 2.50/s for 1 s, the slice is paid from it
    reserved = rules.reservation("job", 250, 1.0)
    lease_price = rules.Slice(1, 1, "job", 250, 10, 20, 908, reserved)
    assert rules.settle([lease_price], {10: 10_000, 20: 0}).paid == {1: 227}
    # even a slice that names a higher price cannot take more than the reservation
    dearer = rules.Slice(1, 1, "job", 500, 10, 20, 1000, reserved)
    assert rules.settle([dearer], {10: 10_000, 20: 0}).paid == {1: reserved} == {1: 250}


@given(
    price=st.integers(1, 10_000),
    seconds=st.floats(0.05, 600.0),
    at=st.floats(0.0, 700.0),
)
def test_an_accepted_slice_never_pays_more_than_its_reservation(price, seconds, at):
    reserved = rules.reservation("job", price, seconds)
    ms = rules.accepted_ms(0.0, seconds, at)
    paid = rules.settle([rules.Slice(1, 1, "job", price, 10, 20, ms, reserved)], {10: money.MAX_CENTS, 20: 0}).paid[1]
    assert paid == min(money.payment(price, ms), reserved) == money.payment(price, ms)


# -- states bound to their leases (issue 17, item 1) ----------------------------------------------

_EXPECTED = rules.StateFacts(7, "a" * 64, "main", "b" * 64, 4, "c" * 64)


def test_a_state_that_follows_from_its_lease_is_not_refused():
    assert rules.state_refusal(3, _EXPECTED, _EXPECTED._replace(payload_sha256="d" * 64)) is None


@pytest.mark.parametrize(
    "change, words",
    [
        ({"job_id": 8}, "lease 3 is for job 7 but this state names job 8"),
        ({"job_id": None}, "names no job"),
        ({"source_sha256": "e" * 64}, "another module"),
        ({"entry": "other"}, "another module"),
        ({"parent": "f" * 64}, "not made from the state lease 3 checked out"),
        ({"seq": 3}, "sequence number 3, lease 3 expects 4"),
        ({"seq": 5}, "sequence number 5"),
        ({}, "unchanged"),
    ],
)
def test_a_state_that_does_not_follow_from_its_lease_is_refused_in_plain_words(change, words):
    got = _EXPECTED._replace(**change) if change else _EXPECTED
    if change:
        got = got._replace(payload_sha256="d" * 64)
    why = rules.state_refusal(3, _EXPECTED, got)
    assert why is not None and words in why
    assert "nothing was stored or paid" in why and "lease stays open" in why
