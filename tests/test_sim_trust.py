"""The simulator's cheating workers and verification by replay (sim.trust), with a fixed seed.

Small runs (a few dozen clients for a few simulated hours) that check the properties the shipped
experiments rest on: cheaters are caught, reversals make owners whole, the books balance,
verification costs more the more is replayed, and the policy is market.core.verification's.
"""

import functools
import math
import tomllib
from pathlib import Path

import pytest

from market.core import verification
from sim.engine import simulate as plain_simulate
from sim.metrics import compute_metrics
from sim.scenario import ScenarioError, parse_experiment
from sim.trust import TrustSimulation, simulate

MARKET = {
    "run": {"name": "trust-test", "duration": 10800, "seed": 3, "starvation_bound": 1800},
    "pool": {"window": 1.0, "threshold": 10, "slice": 120, "allowance": 10},
    "clients": {"count": 50},
    "jobs": {"initial": 30, "rate": 0.01, "length": {"dist": "exponential", "mean": 1.2e9}},
}


def scenario(**trust):
    document = {**MARKET, "trust": {"cheaters": 0.2, **trust}}
    return parse_experiment(document).runs[0][1]


def run(keep_books=False, **trust):
    """A run and its metrics; the same settings run once per session (the results are not changed)."""
    return _run(keep_books, tuple(sorted(trust.items())))


@functools.cache
def _run(keep_books, trust):
    result = simulate(scenario(**dict(trust)), keep_books=keep_books)
    return result, compute_metrics(result)


# The market holds a watched worker's checks (at most 2 out at once: the store's take_check) and
# leases a worker under watch a share of its slice (the dispatcher), so sim's ``watch_slice`` is on
# by default and these tests run sim as the market is built. It does not refuse a disputed worker
# paid leases (sim's ``hold``, off: the market holds its pay instead); the ``_with_the_hold`` tests
# below measure that knob on top.
def test_instant_cheaters_are_caught_within_ten_of_their_slices():
    _, m = run(cheat="instant")
    assert m["cheated_slices"] > 0
    assert m["detection_rate"] == 1.0
    assert m["slices_to_detection_p50"] <= 10


def test_cheaters_that_rejoin_under_a_new_owner_are_caught_again():
    result, m = run(cheat="instant", rejoin=True)
    machines = {w.machine for w in result.trust.workers.values() if w.cheater}
    assert m["cheater_clients"] > len(machines)  # new identities came back, and were caught again
    assert m["detection_rate"] == 1.0


def test_with_the_hold_and_short_watch_slices_instant_cheaters_are_caught_within_ten_slices():
    _, m = run(cheat="instant", hold=True, watch_slice=True)
    assert m["cheated_slices"] > 0
    assert m["detection_rate"] == 1.0
    assert m["slices_to_detection_p50"] <= 10


def test_with_the_hold_and_short_watch_slices_rejoining_cheaters_are_caught_again():
    result, m = run(cheat="instant", rejoin=True, hold=True, watch_slice=True)
    machines = {w.machine for w in result.trust.workers.values() if w.cheater}
    assert m["cheater_clients"] > len(machines)
    assert m["detection_rate"] == 1.0


def test_reversals_make_owners_whole_for_every_caught_cheater():
    _, m = run(cheat="instant", rejoin=False)
    assert m["cheat_reversed"] > 0
    assert m["owner_loss_net"] == 0
    assert m["owner_loss_outstanding"] == 0  # every cheater was caught before the end


def test_skipping_cheaters_are_caught_and_reversed():
    _, m = run(cheat="skip", rejoin=False)
    assert m["detection_rate"] == 1.0
    assert m["owner_loss_net"] == 0


def test_forged_results_are_never_final_with_the_markets_rules():
    _, m = run(cheat="forge", rejoin=False)
    assert m["forged_results"] > 0
    assert m["forged_final"] == 0
    assert m["detection_rate"] == 1.0


# With watch slices (as the market now leases them) and no ``hold``, a forger is caught after a
# median 5 forged results (92 slices), not 1 (8): its short slices under watch rarely end a job, so
# it forges once out of watch, on full slices whose result replays and decisions take longer, and
# it goes on forging meanwhile. None is final (forged_final 0), and with ``hold`` it is 1 again
# (measured 2026-12-05, seed 3). Kept failing on purpose: the market needs a rule for this first.
@pytest.mark.xfail(
    strict=True, reason="watch slices without the hold let a forger make ~5 forged results before it is caught"
)
def test_forged_results_are_caught_and_never_final():
    _, m = run(cheat="forge", rejoin=False)
    assert m["forged_results"] > 0
    assert m["forged_final"] == 0
    assert m["cheats_to_detection_p50"] <= 2  # its first forged results give it away


def test_slow_cheaters_are_not_caught_by_replay():
    # a state reached in fewer steps is reachable from its parent: replay agrees with it
    _, m = run(cheat="slow", rejoin=False)
    assert m["cheated_slices"] > 0
    assert m["disputes"] == 0
    assert m["detection_rate"] == 0.0


def test_cheating_does_not_pay_at_the_default_settings():
    for cheat in ("instant", "skip"):
        _, m = run(cheat=cheat)
        assert m["cheat_gain_per_hour"] < 0, cheat


def test_forging_results_does_not_pay_at_the_default_settings_in_the_shipped_market():
    # a forger works honestly but for its final slices, so in this file's small 3 h market its gain
    # is noise around 0 (positive in 5 of 10 seeds at 2 % and at 5 % sampled alike); the claim is
    # checked where docs/trust.md makes it: sim/scenarios/trust.toml's market, the policy's defaults
    with open(Path(__file__).parent.parent / "sim" / "scenarios" / "trust.toml", "rb") as f:
        document = tomllib.load(f)
    del document["sweep"], document["plot"]
    assert "margin" not in document["trust"] and "fraction" not in document["trust"]  # the defaults
    document["trust"]["cheat"] = "forge"
    m = compute_metrics(simulate(parse_experiment(document).runs[0][1]))
    assert m["forged_results"] > 0 and m["forged_final"] == 0
    assert m["cheat_gain_per_hour"] < 0


def test_the_books_balance_with_reversals_and_replay_fees():
    result, m = run(keep_books=True, cheat="instant", rejoin=True)
    audit = result.books.audit()
    assert audit["negative"] == []
    assert audit["total"] == audit["granted"]
    kinds = {entry.kind for entry, _, _ in result.books.ledger}
    assert {"payment", "reversal"} <= kinds
    assert m["replay_fees"] > 0


def test_verification_costs_more_the_more_slices_are_replayed():
    shares = [run(cheat="none", fraction=f)[1]["verify_compute_share"] for f in (0.0, 0.05, 0.2)]
    assert shares[0] < shares[1] < shares[2]


def test_verification_cost_in_operations_adds_up_by_part_and_weighs_a_slow_verifiers_second_less():
    result, m = run(cheat="instant", fraction=0.2)
    parts = [m[f"verify_ops_{part}"] for part in ("made_up", "result", "watch", "sampled")]
    assert m["verify_ops_made_up"] > 0 and m["verify_ops_result"] > 0 and m["verify_ops_sampled"] > 0
    assert math.isclose(sum(parts), m["verify_ops_share"], rel_tol=1e-9)
    # seconds x speed: the share in operations differs from the seconds share exactly when verifiers are
    # not as fast as the workers they check
    slow = m["verifier_speed_ratio"] < 1
    assert (m["verify_ops_share"] < m["verify_compute_share"]) == slow


def test_the_steady_state_cost_leaves_out_the_first_hours():
    result, m = run(cheat="none", fraction=0.05)
    assert result.trust.steady_after == MARKET["run"]["duration"] / 4  # a short run: its first quarter
    f = result.trust.f
    assert 0 < f["steady_slice_seconds"] < f["slice_seconds"]
    assert 0 < f["steady_replay_compute"] < f["replay_compute"]
    assert 0 < m["verify_compute_share_steady"] < 1 and 0 < m["verify_ops_share_steady"] < 1


def test_in_a_new_market_every_client_starts_under_watch_and_the_start_up_costs_most():
    _, established = run(cheat="none")
    _, new = run(cheat="none", new_market=True)
    assert established["verify_share_watch"] == 0  # honest clients start with a record
    assert new["verify_share_watch"] > 0
    assert new["verify_compute_share"] > established["verify_compute_share"]
    # the transient: from the first quarter on, a new market costs less than over the whole run
    assert new["verify_compute_share_steady"] < new["verify_compute_share"]


def test_the_policy_decides_which_slices_are_replayed():
    # with a fraction of 1 every slice is replayed (market.core.verification.why_verify)
    result, m = run(cheat="none", fraction=1.0)
    assert m["checks"] == result.trust.f["slices"]
    # an established market replays every final result and nothing else when nothing is sampled
    result, m = run(cheat="none", fraction=0.0)
    assert m["checks"] == result.trust.f["checks_result"] == m["jobs_finished"] > 0


def test_lying_verifiers_are_caught_by_the_third_owner():
    _, m = run(cheat="instant", liars=True, rejoin=False)
    assert m["disputes"] > 0
    assert m["detection_rate"] == 1.0


def test_same_seed_same_figures():
    first = run(cheat="instant")[1]
    second = compute_metrics(simulate(scenario(cheat="instant")))
    assert {k: v for k, v in first.items() if not (isinstance(v, float) and math.isnan(v))} == {
        k: v for k, v in second.items() if not (isinstance(v, float) and math.isnan(v))
    }


def test_trust_settings_are_the_policys():
    s = scenario(fraction=0.02, watch_slices=3)
    assert s.trust.settings == verification.Settings(fraction=0.02, watch_slices=3)
    assert isinstance(TrustSimulation(s), TrustSimulation)


def test_a_scenario_without_a_trust_table_has_no_trust_figures():
    document = dict(MARKET)
    m = compute_metrics(simulate(parse_experiment(document).runs[0][1]))
    assert "detection_rate" not in m


def test_the_plain_engine_refuses_a_trust_scenario():
    with pytest.raises(ValueError, match="sim.trust"):
        plain_simulate(scenario())


@pytest.mark.parametrize(
    "trust, words",
    [
        ({"cheaters": 1.5}, "trust.cheaters is a share"),
        ({"cheat": "bribe"}, "trust.cheat 'bribe' is not one of"),
        ({"scope": "world"}, "trust.scope"),
        ({"colour": "red"}, "unknown setting 'trust.colour'"),
    ],
)
def test_plain_words_for_bad_trust_settings(trust, words):
    with pytest.raises(ScenarioError, match=words):
        scenario(**trust)


def test_every_trust_figure_goes_into_the_files():
    from sim.metrics import SCALAR_METRICS
    from sim.trust import TRUST_METRICS

    _, m = run(cheat="instant")
    deciles = {"speed_by_price_decile", "progress_by_price_decile", "wait_by_price_decile"}
    assert set(m) - set(SCALAR_METRICS) - deciles == set(TRUST_METRICS)


def test_watch_slices_and_the_hold_each_cut_what_refuting_cheaters_costs_and_convict_no_honest_worker():
    _, both = run(cheat="instant", hold=True, watch_slice=True)
    _, no_hold = run(cheat="instant", hold=False, watch_slice=True)
    _, long_slices = run(cheat="instant", hold=True, watch_slice=False)
    assert both["verify_compute_share"] < no_hold["verify_compute_share"]
    assert both["verify_compute_share"] < long_slices["verify_compute_share"]
    for m in (both, no_hold, long_slices):
        assert m["honest_suspects"] == 0 and m["owner_loss_net"] == 0


def test_a_convicted_workers_checks_are_given_up_not_replayed():
    result, m = run(cheat="instant")
    sim = result.trust
    assert sim.f["checks_moot"] > 0
    assert not any(
        sim.workers[r.check.worker].suspect and r.check.status == "waiting" for r in sim.open_checks.values()
    )


def test_early_refutation_is_a_what_if_that_makes_catching_cheaper():
    _, today = run(cheat="instant")
    _, early = run(cheat="instant", refute_early=1.0)
    assert early["verify_ops_made_up"] < today["verify_ops_made_up"]
    assert early["honest_suspects"] == 0
