"""The probe's pure rules: made from a secret and the job id alone, checked by recomputing a few
segments, and the secret itself, made once per database by its schema migration."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market import tasklet
from market.dispatch import prober
from market.store import Database, schema, upgrade
from market.store import secrets as sql_secrets

SECRET = bytes(range(32))
STEPS = 3_000


def encoded(values) -> bytes:
    return tasklet.codec.encode(values)


def right(secret=SECRET, job_id=1, steps=STEPS) -> bool:
    return prober.answer_is_right(encoded(prober.expected(secret, job_id, steps)), SECRET, 1, STEPS)


def test_a_probe_is_the_same_for_the_same_secret_and_job_and_differs_otherwise():
    assert prober.source(prober.chain(SECRET, 7), STEPS) == prober.source(prober.chain(SECRET, 7), STEPS)
    others = {prober.source(prober.chain(SECRET, j), STEPS)[0] for j in range(50)}
    others |= {prober.source(prober.chain(bytes(32), j), STEPS)[0] for j in range(50)}
    assert len(others) == 100


def test_a_probes_program_names_nothing_that_says_probe_or_test():
    for job_id in range(200):
        text, entry, args = prober.source(prober.chain(SECRET, job_id), STEPS)
        assert "probe" not in text.lower() and "test" not in text.lower()
        assert entry.isidentifier() and args == [prober.CHECKPOINTS, prober.segment(STEPS)]


def test_the_program_computes_the_answer_the_server_checks():
    text, entry, args = prober.source(prober.chain(SECRET, 3), STEPS)
    namespace: dict = {}
    exec(text, namespace)
    assert namespace[entry](*args) == prober.expected(SECRET, 3, STEPS)


def test_an_honest_answer_is_right():
    assert right()


def test_another_probes_answer_is_wrong():
    assert not right(job_id=2)  # replayed: another job's answer
    assert not right(secret=bytes(32))  # another market's (or a guessed secret's)
    assert not right(steps=STEPS // 2)  # a shorter probe's


def test_a_shifted_or_reordered_or_cut_answer_is_wrong():
    values = prober.expected(SECRET, 1, STEPS)
    c = prober.chain(SECRET, 1)
    shifted = values[1:] + [c.run(values[-1], prober.segment(STEPS))]  # one segment ahead: all consistent but the first
    for wrong in (shifted, values[::-1], values[:-1], values + [values[-1]], [values[0]] * len(values)):
        assert not prober.answer_is_right(encoded(wrong), SECRET, 1, STEPS)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, prober.CHECKPOINTS - 1), st.integers(1, prober.MODULUS - 1))
def test_any_one_wrong_checkpoint_is_caught_if_its_segment_is_checked(index, delta):
    values = prober.expected(SECRET, 1, STEPS)
    values[index] = (values[index] + delta) % prober.MODULUS
    c = prober.chain(SECRET, 1)
    k = prober.segment(STEPS)

    class Every(random.Random):  # a checker that samples every segment
        def sample(self, population, k):  # type: ignore[override]
            return list(population)

    assert not prober.checkpoints_are_right(values, c, k, Every())


def test_skipping_half_the_segments_is_caught_nearly_always():
    values = prober.expected(SECRET, 1, STEPS)
    c, k = prober.chain(SECRET, 1), prober.segment(STEPS)
    for j in range(1, prober.CHECKPOINTS - 1, 2):  # every other checkpoint made up
        values[j] = (values[j] * 3 + 1) % prober.MODULUS
    caught = sum(not prober.checkpoints_are_right(values, c, k, random.Random(seed)) for seed in range(200))
    assert caught == 200  # a made-up checkpoint spoils two segments: every sample lands on one


def test_the_check_costs_a_small_fraction_of_the_work():
    steps = 200_000
    c, k = prober.chain(SECRET, 9), prober.segment(steps)
    began = time.perf_counter()
    values = prober.expected(SECRET, 9, steps)
    work = time.perf_counter() - began
    began = time.perf_counter()
    assert prober.checkpoints_are_right(values, c, k)
    check = time.perf_counter() - began
    assert (2 + prober.SAMPLES) / prober.CHECKPOINTS <= 0.05
    assert check < 0.15 * work, (check, work)


def test_probe_sizes_follow_the_last_speed_within_bounds():
    assert prober.steps_for(None, 3.0, 27_000) == 27_000
    assert prober.steps_for(2_000_000.0, 3.0, 27_000) == 6_000_000
    assert prober.steps_for(10.0, 3.0, 27_000) == prober.CHECKPOINTS
    assert prober.steps_for(1e12, 3.0, 27_000) == prober.MAX_STEPS
    assert prober.operations(6_000_000) == 6_000_000 and prober.operations(101) == 200


def test_the_answer_fits_its_byte_budget():
    assert len(encoded([prober.MODULUS - 1] * prober.CHECKPOINTS)) <= prober.MAX_ANSWER


# -- the secret: made by one migration, one per database ----------------------------------------


def test_every_database_draws_its_own_probe_secret(tmp_path):
    secrets = []
    for name in ("a", "b"):
        db = Database(f"sqlite:{tmp_path}/{name}.sqlite")
        upgrade(db)
        secrets.append(db.transact(sql_secrets.probe_secret))
        db.close()
    assert all(len(s) == 32 for s in secrets) and secrets[0] != secrets[1]


def test_upgrading_to_the_probe_secret_version_makes_the_secret_once(tmp_path):
    db = Database(f"sqlite:{tmp_path}/old.sqlite")
    before = [m for m in schema.MIGRATIONS if m[0] < schema.PROBE_SECRET_VERSION]
    upgrade(db, before)
    with pytest.raises(Exception, match="no such table: secrets"):
        db.transact(sql_secrets.probe_secret)
    upgrade(db)
    secret = db.transact(sql_secrets.probe_secret)
    upgrade(db)  # nothing left to apply: the secret stays
    assert db.transact(sql_secrets.probe_secret) == secret
    db.close()
