"""The simulator: reproducible, conserving work and money, matching like market.core.matcher."""

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from market.core import money
from market.core.matcher import POLICIES, aging, describe
from quote import rule as quote_rule
from sim.cli import main
from sim.engine import simulate
from sim.metrics import compute_metrics, jain_index
from sim.scenario import ScenarioError, parse_experiment

TINY = """
[run]
name = "tiny"
duration = 1800
starvation_bound = 300
[pool]
window = 2.0
threshold = 4
slice = 120
allowance = 10
[clients]
count = 12
online = { dist = "exponential", mean = 900 }
offline = { dist = "exponential", mean = 300 }
miss_rate = 0.1
[jobs]
initial = 20
rate = 0.02
length = { dist = "exponential", mean = 2e8 }
quote_share = 0.3
[sweep]
pool.policy = ["paper", "aging"]
"""


def tiny(**overrides):
    """The TINY scenario's first run, with overrides like {"pool": {"policy": "fifo"}}."""
    import tomllib

    document = tomllib.loads(TINY)
    del document["sweep"]
    for table, values in overrides.items():
        document.setdefault(table, {}).update(values)
    return parse_experiment(document).runs[0][1]


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


# -- reproducibility -----------------------------------------------------------------------------


def test_same_seed_gives_identical_output(tiny_file, tmp_path, capsys):
    outputs = []
    for name in ("a", "b"):
        assert main([str(tiny_file), "--seed", "7", "--out", str(tmp_path / name), "--no-plots", "--quiet"]) == 0
        outputs.append(
            (
                capsys.readouterr().out,
                (tmp_path / name / "results.csv").read_bytes(),
                (tmp_path / name / "results.json").read_bytes(),
            )
        )
    assert outputs[0] == outputs[1]
    assert "policy=paper" in outputs[0][0] and "policy=aging" in outputs[0][0]


def test_same_seed_gives_identical_output_across_processes_and_hash_seeds(tiny_file, tmp_path):
    import os
    import subprocess
    import sys

    outputs = []
    for hash_seed in ("1", "2"):
        out = tmp_path / hash_seed
        done = subprocess.run(
            [sys.executable, "-m", "sim", str(tiny_file), "--out", str(out), "--no-plots", "--quiet"],
            capture_output=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=Path(__file__).resolve().parents[1],
        )
        outputs.append((done.stdout, (out / "results.json").read_bytes()))
    assert outputs[0] == outputs[1]


def test_another_seed_gives_another_run(tiny_file, tmp_path, capsys):
    for seed in ("1", "2"):
        main([str(tiny_file), "--seed", seed, "--out", str(tmp_path / seed), "--no-plots", "--quiet"])
    capsys.readouterr()
    assert (tmp_path / "1" / "results.csv").read_bytes() != (tmp_path / "2" / "results.csv").read_bytes()


# -- conservation --------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    policy=st.sampled_from(sorted(POLICIES)),
    miss=st.sampled_from([0.0, 0.2]),
    window=st.sampled_from([0.5, 5.0]),
)
def test_finished_jobs_did_exactly_their_submitted_work(seed, policy, miss, window):
    result = simulate(tiny(run={"seed": seed}, pool={"policy": policy, "window": window}, clients={"miss_rate": miss}))
    finished = [j for j in result.jobs if j.finished_at is not None]
    assert finished, "the scenario should finish some jobs"
    assert all(j.done == j.length for j in finished)
    assert all(0 <= j.done <= j.length for j in result.jobs)
    assert sum(j.paid for j in result.jobs) == sum(c.earnings for c in result.clients)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    policy=st.sampled_from(sorted(POLICIES)),
    transfer=st.sampled_from([0.0, 4.0]),
    miss=st.sampled_from([0.0, 0.2]),
)
def test_every_slice_the_simulator_pays_is_money_payment_of_its_server_measured_time(seed, policy, transfer, miss):
    result = simulate(
        tiny(run={"seed": seed}, pool={"policy": policy, "transfer": transfer}, clients={"miss_rate": miss}),
        keep_books=True,
    )
    books = result.books
    jobs = {j.id: j for j in result.jobs}
    paid: dict[int, int] = {}
    for entry, lease_id, _ in books.ledger:
        if entry.kind != "payment":
            continue
        lease = books.leases[lease_id]
        job = jobs[lease.job_id]
        measured = min(lease.checked_in_at - lease.checked_out_at, lease.granted)  # transfer included
        assert lease.accepted_ms == int(measured * 1000)
        assert entry.amount == lease.paid
        # its exact cost plus its job's carry below a cent, rounded down (``money.carried_payment``)
        assert (
            money.payment(job.price, lease.accepted_ms)
            <= entry.amount
            <= money.payment_ceiling(job.price, lease.accepted_ms)
        )
        assert entry.memo == f"job {job.id} slice {lease.id}"
        paid[job.id] = paid.get(job.id, 0) + entry.amount
    assert paid and all(j.paid == paid.get(j.id, 0) for j in result.jobs)
    assert all(0 <= carry < money.MILLI for carry in books.carries.values())
    audit = books.audit()
    assert audit["total"] == audit["granted"] and not audit["negative"] and audit["reservations"]


def test_a_missed_deadline_rolls_the_work_back():
    result = simulate(tiny(clients={"miss_rate": 1.0}))
    assert all(j.done == 0 and j.paid == 0 for j in result.jobs)
    assert sum(j.rollbacks for j in result.jobs) > 0


# -- the simulator's matches are market.core.matcher's -------------------------------------------------


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10_000), policy=st.sampled_from(sorted(POLICIES)))
def test_dispatches_equal_the_policy_on_the_whole_ready_list(seed, policy):
    scenario = tiny(run={"seed": seed}, pool={"policy": policy})
    result = simulate(scenario, record_windows=True)
    assert result.windows
    for window in result.windows:
        rng = random.Random()
        rng.setstate(window.rng_state)
        kwargs = {"rate": scenario.aging_rate} if policy == "aging" else {}
        expected = POLICIES[policy](window.clients, window.ready, now=window.at, rng=rng, **kwargs)
        # the pool answers in request order, the policy lists in rank order: compare the pairs
        assert sorted(window.dispatched) == sorted(describe(expected))


def test_aging_serves_cheap_jobs_the_paper_rule_leaves_waiting():
    # one price-1 job in ten, the rest pay 100; 20% more work arrives than the clients can do
    market = {
        "clients": {"online": None, "offline": None, "speed": 1e6, "miss_rate": 0.0},
        "jobs": {
            "initial": 0,
            "rate": 0.048,
            "quote_share": 0.0,
            "length": 3e8,
            "price": {"dist": "choice", "values": [1, 100], "weights": [1, 9]},
        },
        "run": {"duration": 7200},
    }
    paper = compute_metrics(simulate(tiny(**market)))
    aged = compute_metrics(simulate(tiny(pool={"policy": "aging", "aging_rate": 0.2}, **market)))
    cheapest = 0  # wait_by_price_decile[0] is the price-1 jobs
    assert aged["wait_max"] < paper["wait_max"] / 2
    assert aged["wait_by_price_decile"][cheapest] < paper["wait_by_price_decile"][cheapest] / 2
    assert aged["value_ratio"] < paper["value_ratio"]  # the price of fairness


# -- scenario files ------------------------------------------------------------------------------


def test_a_sweep_runs_every_combination_in_file_order():
    experiment = parse_experiment({"sweep": {"pool": {"window": [1, 2], "threshold": [5, 6, 7]}}})
    points = [dict(params) for params, _ in experiment.runs]
    assert points[:2] == [{"pool.window": 1, "pool.threshold": 5}, {"pool.window": 1, "pool.threshold": 6}]
    assert len(points) == 6
    assert [s.window for _, s in experiment.runs] == [1.0] * 3 + [2.0] * 3


def test_a_sweep_can_set_a_distribution_parameter():
    experiment = parse_experiment(
        {"clients": {"online": 600, "offline": 60}, "sweep": {"jobs": {"price": {"sigma": [0.1, 2.0]}}}}
    )
    assert [s.price.param("sigma") for _, s in experiment.runs] == [0.1, 2.0]


def test_parameters_joined_with_plus_move_together():
    experiment = parse_experiment(
        {
            "clients": {"online": {"dist": "exponential", "mean": 1}, "offline": {"dist": "exponential", "mean": 1}},
            "sweep": {
                "clients.online.mean+clients.offline.mean": [[600, 200], [3600, 1200]],
                "pool": {"slice": [60, 300]},
            },
        }
    )
    points = [dict(params) for params, _ in experiment.runs]
    assert len(points) == 4
    assert points[0] == {"clients.online.mean": 600, "clients.offline.mean": 200, "pool.slice": 60}
    assert [s.offline.param("mean") for _, s in experiment.runs] == [200, 200, 1200, 1200]


@pytest.mark.parametrize(
    "document, words",
    [
        ({"pool": {"windw": 1}}, "unknown setting 'pool.windw'"),
        ({"pool": {"policy": "lottery"}}, "pool.policy 'lottery'"),
        ({"jobs": {"price": {"dist": "normal"}}}, "unknown dist 'normal'"),
        ({"clients": {"online": 60}}, "go together"),
        ({"sweep": {"pool": {"window": 3}}}, "non-empty list"),
        ({"market": {}}, "unknown table"),
        ({"sweep": {"pool.window+pool.slice": [[1, 2, 3]]}}, "lists of 2 values"),
    ],
)
def test_scenario_mistakes_are_named_in_plain_words(document, words):
    with pytest.raises(ScenarioError, match=words):
        parse_experiment(document)


def test_per_job_csv_has_a_row_per_job_with_wait_and_turnaround(tiny_file, tmp_path, capsys):
    assert main([str(tiny_file), "--out", str(tmp_path), "--no-plots", "--quiet", "--per-job"]) == 0
    import csv

    with open(tmp_path / "jobs-1.csv") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "results.csv") as f:
        summary = next(csv.DictReader(f))
    assert len(rows) == int(summary["jobs_submitted"])
    finished = [r for r in rows if r["finished_at"]]
    assert finished and all(float(r["turnaround"]) >= float(r["wait"]) >= 0 for r in finished)
    assert all(r["done"] == r["length"] for r in finished)


def test_cli_reports_a_bad_scenario_without_a_traceback(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("[pool]\nwindow = -1\n")
    assert main([str(path)]) == 2
    assert "pool.window must be a number greater than 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    "plot, words",
    [
        ('file = "a.png"\ny = "wiat_mean"\nx = "pool.policy"', "'wiat_mean' is not a line metric"),
        ('file = "a.png"\ny = "wait_mean"\nx = "pool.window"', "x must be one of the swept"),
        ('file = "a.png"\nkind = "pie"\ny = "wait_mean"', "unknown kind 'pie'"),
        ('file = "a.png"\nkind = "deciles"\ny = "wait_mean"', "not a deciles metric"),
    ],
)
def test_cli_refuses_a_bad_plot_before_running(tmp_path, capsys, plot, words):
    path = tmp_path / "plot.toml"
    path.write_text(TINY + "[[plot]]\n" + plot + "\n")
    assert main([str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert words in err and "run 1" not in err


def test_cli_reports_a_missing_file(tmp_path, capsys):
    assert main([str(tmp_path / "nope.toml")]) == 2
    assert "no scenario file" in capsys.readouterr().err


def test_cli_draws_the_requested_plots(tmp_path, capsys):
    path = tmp_path / "plot.toml"
    path.write_text(
        TINY + '[[plot]]\nfile = "v.png"\nx = "pool.policy"\ny = ["value_ratio"]\n'
        '[[plot]]\nfile = "d.png"\nkind = "deciles"\ny = "speed_by_price_decile"\n'
    )
    assert main([str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert (tmp_path / "out" / "v.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "out" / "d.png").exists()


# -- the quote rule and the metrics --------------------------------------------------------------


def test_quote_is_one_cent_over_the_nth_highest_price():
    speeds = [1.0, 2.0, 3.0, 4.0]  # two clients reach 3.0

    def quote_price(speeds, prices, wanted):
        return quote_rule.quote_sorted(speeds, prices, wanted).price_cents

    assert quote_price(speeds, {5: 1, 7: 1, 9: 1, 20: 1}, 3.0) == 10
    assert quote_price(speeds, {9: 2, 20: 1}, 2.0) == 10
    assert quote_price(speeds, {5: 1}, 3.0) == 1
    assert quote_price(speeds, {5: 1}, 4.5) is None


def test_the_simulator_prices_with_the_quote_tools_own_rule():
    import sim.engine

    assert sim.engine.quote_sorted is quote_rule.quote_sorted


@settings(max_examples=200, deadline=None)
@given(
    speeds=st.lists(st.floats(0.0, 100.0), max_size=20),
    prices=st.dictionaries(st.integers(1, 50), st.integers(1, 4), max_size=10),
    wanted=st.floats(0.0, 110.0) | st.just(float("nan")),
)
def test_the_quote_on_sorted_speeds_is_the_quote_tools_answer(speeds, prices, wanted):
    assert quote_rule.quote_sorted(sorted(speeds), prices, wanted) == quote_rule.quote(speeds, prices, wanted)


def test_jain_index_is_one_for_equal_shares_and_one_over_n_for_a_monopoly():
    assert jain_index([2.0, 2.0, 2.0]) == pytest.approx(1.0)
    assert jain_index([1.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)


def test_value_never_exceeds_the_offline_bound():
    for policy in POLICIES:
        m = compute_metrics(simulate(tiny(pool={"policy": policy})))
        assert 0 < m["value_ratio"] <= 1


def test_aging_policy_used_by_the_simulator_is_the_matchers():
    assert POLICIES["aging"] is aging
