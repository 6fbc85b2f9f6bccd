"""The matcher's rules, stated as properties."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core.matcher import (
    POLICIES,
    Assignment,
    PooledClient,
    ReadyJob,
    aging,
    client_order_key,
    describe,
    fifo,
    job_order_key,
    match,
    price_only,
    random_match,
    top_jobs,
)

# Narrow ranges on purpose: they make ties in price, speed and time common.
prices = st.integers(min_value=1, max_value=5)
times = st.integers(min_value=0, max_value=3).map(float)
speeds = st.integers(min_value=1, max_value=4).map(float)


@st.composite
def ready_jobs(draw, max_size=8):
    ids = draw(st.lists(st.integers(0, 10_000), max_size=max_size, unique=True))
    return [ReadyJob(i, draw(prices), draw(times)) for i in ids]


@st.composite
def pooled_clients(draw, max_size=6):
    ids = draw(st.lists(st.integers(0, 10_000), max_size=max_size, unique=True))
    return [PooledClient(i, draw(speeds), draw(times)) for i in ids]


def value(assignments):
    return sum(a.job.price * a.client.speed for a in assignments)


@given(pooled_clients(), ready_jobs())
def test_match_is_deterministic_whatever_the_input_order(clients, jobs):
    shuffled_clients, shuffled_jobs = clients[::-1], jobs[::-1]
    random.Random(len(jobs)).shuffle(shuffled_jobs)
    assert match(clients, jobs) == match(shuffled_clients, shuffled_jobs)


@given(pooled_clients(), ready_jobs())
def test_match_size_is_min_of_clients_and_jobs(clients, jobs):
    assert len(match(clients, jobs)) == min(len(clients), len(jobs))


@given(pooled_clients(), ready_jobs())
def test_match_never_assigns_a_job_or_client_twice(clients, jobs):
    pairs = describe(match(clients, jobs))
    assert len({c for c, _ in pairs}) == len(pairs)
    assert len({j for _, j in pairs}) == len(pairs)


@given(pooled_clients(), ready_jobs())
def test_ith_best_job_goes_to_ith_best_client(clients, jobs):
    got = match(clients, jobs)
    ranked_jobs = sorted(jobs, key=job_order_key)
    ranked_clients = sorted(clients, key=client_order_key)
    assert got == [Assignment(c, j) for c, j in zip(ranked_clients, ranked_jobs)]


def test_job_ties_break_on_submission_time_then_id():
    jobs = [ReadyJob(3, 5, 1.0), ReadyJob(2, 5, 1.0), ReadyJob(1, 5, 2.0), ReadyJob(9, 6, 9.0)]
    clients = [PooledClient(i, 1.0, 0.0) for i in range(4)]
    assert [a.job.id for a in match(clients, jobs)] == [9, 2, 3, 1]


def test_client_ties_break_on_request_time_then_id():
    clients = [
        PooledClient(7, 2.0, 1.0),
        PooledClient(4, 2.0, 1.0),
        PooledClient(1, 2.0, 3.0),
        PooledClient(8, 9.0, 5.0),
    ]
    jobs = [ReadyJob(i, 10 - i, 0.0) for i in range(4)]
    assert describe(match(clients, jobs)) == [(8, 0), (4, 1), (7, 2), (1, 3)]


@settings(max_examples=150)
@given(pooled_clients(max_size=6), ready_jobs(max_size=7))
def test_paper_rule_maximizes_price_times_speed(clients, jobs):
    size = min(len(clients), len(jobs))
    if len(clients) <= len(jobs):
        candidates = (zip(clients, perm) for perm in itertools.permutations(jobs, size))
    else:
        candidates = (zip(perm, jobs) for perm in itertools.permutations(clients, size))
    best = max((sum(j.price * c.speed for c, j in pairs) for pairs in candidates), default=0)
    assert value(match(clients, jobs)) == best


@given(st.integers(0, 2**32), st.integers(1, 60), st.integers(1, 40))
@settings(max_examples=25, deadline=None)
def test_top_jobs_on_a_large_ready_list_equals_a_full_sort(seed, distinct_prices, k):
    draw = random.Random(seed)
    jobs = [ReadyJob(i, draw.randint(1, distinct_prices), float(draw.randint(0, 9))) for i in range(5000)]
    assert top_jobs(jobs, k) == sorted(jobs, key=job_order_key)[:k]


def test_top_jobs_accepts_a_generator():
    jobs = [ReadyJob(i, i % 13, 0.0) for i in range(10_000)]
    assert top_jobs(iter(jobs), 5) == sorted(jobs, key=job_order_key)[:5]


def test_top_jobs_with_every_price_equal_is_still_exact():
    jobs = [ReadyJob(i, 7, float(-i)) for i in range(10_000)]
    assert [j.id for j in top_jobs(jobs, 3)] == [9999, 9998, 9997]


# sampled_from rather than pytest.mark.parametrize: pytest-twisted's wrapper breaks the
# combination of parametrize and @given.
@given(st.sampled_from(sorted(POLICIES)), pooled_clients(), ready_jobs())
def test_every_policy_assigns_min_size_without_repeats(name, clients, jobs):
    got = POLICIES[name](clients, jobs, now=10.0, rng=random.Random(1))
    assert len(got) == min(len(clients), len(jobs))
    assert len({a.client.id for a in got}) == len(got) == len({a.job.id for a in got})
    assert {a.client for a in got} <= set(clients) and {a.job for a in got} <= set(jobs)


def test_paper_policy_is_match():
    assert POLICIES["paper"] is match


def test_fifo_serves_the_oldest_job_to_the_first_asker():
    jobs = [ReadyJob(1, 100, 5.0), ReadyJob(2, 1, 1.0)]
    clients = [PooledClient(1, 99.0, 3.0), PooledClient(2, 1.0, 2.0)]
    assert describe(fifo(clients, jobs)) == [(2, 2), (1, 1)]


def test_price_only_ignores_speed():
    jobs = [ReadyJob(1, 100, 5.0), ReadyJob(2, 1, 1.0)]
    clients = [PooledClient(1, 99.0, 3.0), PooledClient(2, 1.0, 2.0)]
    assert describe(price_only(clients, jobs)) == [(2, 1), (1, 2)]


@given(pooled_clients(), ready_jobs(), st.integers(0, 2**32))
def test_random_is_reproducible_with_the_same_seed(clients, jobs, seed):
    first = random_match(clients, jobs, rng=random.Random(seed))
    assert first == random_match(clients, jobs, rng=random.Random(seed))


def test_random_accepts_a_seed_instead_of_a_generator():
    clients = [PooledClient(i, 1.0, 0.0) for i in range(3)]
    jobs = [ReadyJob(i, 1, 0.0) for i in range(50)]
    assert random_match(clients, jobs, rng=42) == random_match(clients, jobs, rng=random.Random(42))


def test_random_refuses_to_use_global_randomness():
    with pytest.raises(ValueError, match="rng"):
        random_match([PooledClient(1, 1.0, 0.0)], [ReadyJob(1, 1, 0.0)])


def test_aging_lets_an_old_cheap_job_outrank_a_new_dear_one():
    old_cheap, new_dear = ReadyJob(1, 1, 0.0), ReadyJob(2, 10, 1000.0)
    clients = [PooledClient(1, 1.0, 0.0)]
    assert match(clients, [old_cheap, new_dear])[0].job == new_dear
    assert aging(clients, [old_cheap, new_dear], now=1000.0, rate=0.01)[0].job == old_cheap
    assert aging(clients, [old_cheap, new_dear], now=1000.0, rate=0.001)[0].job == new_dear


@given(pooled_clients(), ready_jobs(), st.floats(0, 1e6))
def test_aging_at_rate_zero_is_the_paper_rule(clients, jobs, now):
    assert aging(clients, jobs, now=now, rate=0.0) == match(clients, jobs)
