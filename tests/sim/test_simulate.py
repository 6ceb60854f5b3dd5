"""The simulated shop's credibility checks, on a tiny shop through the real in-process flow: one run of
four arms (the trained version twice, the same reversed, popularity in a random order)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from hyperrec.experiment.analyze import analyze
from hyperrec.experiment.records import log_files, read_log
from hyperrec.sim.run import simulate
from tests.sim.conftest import tiny_config

ARMS = [
    {"name": "control", "share": 0.25},
    {"name": "same", "share": 0.25},
    {"name": "reversed", "share": 0.25, "display": "reversed"},
    {"name": "shuffled", "share": 0.25, "popularity": True, "display": "shuffled"},
]


@pytest.fixture(scope="module")
def run(exported, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sim")
    config = tiny_config(exported, tmp / "logs", ARMS)
    result = simulate(config, show_progress=False)
    analysis = analyze(config.logs, config.name, tmp / "results", pre_days=config.pre_days)
    return config, result, analysis


def test_clicks_by_rank_follow_the_configured_examination_curve(run):
    _, result, _ = run
    ranks = result.ranks
    print(ranks.to_string())
    # clicks / (sum of the shown items' click chances) estimates the examination of each rank
    estimate = ranks["shuffled: clicks / attraction"]
    clicks = ranks["shuffled: ctr"] * result.arms.loc["shuffled", "sessions"]
    se = estimate / np.sqrt(clicks)
    assert (np.abs(estimate - ranks["examination"]) < 4 * se).all()
    # a served slate puts its best items first: its CTR falls faster than the examination alone
    assert ranks["control: ctr / ctr@1"].iloc[-1] < ranks["examination"].iloc[-1]


def test_an_a_a_comparison_finds_no_difference(run):
    _, _, analysis = run
    cuped = analysis.summary.loc["same"]
    print(analysis.summary.to_string())
    assert cuped["cuped_lo"] < 0 < cuped["cuped_hi"]
    assert (analysis.differences.loc["same"]["p"] > 0.05).all()  # no metric differs
    assert cuped["srm"] == "ok"


def test_the_measured_value_of_each_arm_matches_the_simulators_truth(run):
    _, result, _ = run
    values = result.values
    print(values.to_string())
    gap = (values["measured_revenue_per_slate"] - values["true_revenue_per_slate"]).abs()
    assert (gap < 4 * values["measured_se"]).all()
    # the served order is worth more than its reverse or a shuffled popular list, in truth and as measured
    assert values["true_revenue_per_slate"].idxmax() in ("control", "same")
    assert values.loc["control", "measured_revenue_per_slate"] > values.loc["reversed", "measured_revenue_per_slate"]


def test_the_injected_effect_is_recovered_by_analyze(run):
    _, result, analysis = run
    values = result.values
    # clicks per slate (analyze's ctr: clicks on slates per exposure): detected, and the interval holds the truth
    truth = values.loc["reversed", "true_clicks_per_slate"] - values.loc["control", "true_clicks_per_slate"]
    ctr = analysis.differences.loc[("reversed", "ctr")]
    print(truth, ctr.to_dict())
    assert ctr["ci_lo"] < truth < ctr["ci_hi"] < 0
    # revenue per shopper: organic shopping makes it noisy at this size, but the interval holds the truth
    truth = values.loc["reversed", "true_revenue_per_user"] - values.loc["control", "true_revenue_per_user"]
    cuped = analysis.summary.loc["reversed"]
    assert truth < 0 and cuped["cuped_lo"] < truth < cuped["cuped_hi"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"days": 8}, r"must equal history_days \+ pre_days \+ days"),
        ({"arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "must sum to 1"),
        ({"arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "unique"),
        ({"mode": "http"}, "need a url"),
    ],
)
def test_bad_configs_say_what_is_wrong(exported, tmp_path, change, message):
    arms = change.pop("arms", [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5}])
    with pytest.raises(ValueError, match=message):
        tiny_config(exported, tmp_path, arms, **change)


def test_logs_are_the_experiment_records_with_a_pre_period(run):
    config, result, _ = run
    exposures, outcomes = (read_log(files, kind) for files, kind in zip(log_files(config.logs, config.name), ["exposures", "outcomes"]))
    start = exposures["timestamp"].min()
    assert start.normalize() == pd.Timestamp("2024-01-01", tz="UTC") + pd.Timedelta(days=config.start_day)
    assert (outcomes["timestamp"] < start).any() and outcomes.loc[outcomes["timestamp"] < start, "trace_id"].isna().all()
    assert set(exposures["arm"]) == {arm["name"] for arm in ARMS}
    assert exposures.groupby("unit_id")["arm"].nunique().max() == 1  # sticky
    assert exposures["slate"].map(len).eq(config.k).all()
    assert (config.logs / config.name / "experiment.yaml").is_file()
    assert exposures["session_id"].is_unique and result.sessions > len(exposures)  # one slate a session; pre-period sessions have none


def test_what_a_shopper_buys_reaches_the_next_slate(run):
    """The loop is closed: for shoppers the version never saw (ids past its 150 training users), what they
    buy in the simulation goes through ingestion into the online state, and later slates hold it."""
    config, _, _ = run
    exposures, outcomes = (read_log(files, kind) for files, kind in zip(log_files(config.logs, config.name), ["exposures", "outcomes"]))
    control = exposures[(exposures["arm"] == "control") & (exposures["unit_id"].str[1:].astype(int) >= 150)]
    purchases = outcomes[outcomes["event"] == "purchase"]
    first_buy = purchases.groupby("unit_id")["timestamp"].min()
    slates = control.assign(items=control["slate"].map(lambda slate: tuple(s["item_id"] for s in slate)))
    popular = {s["item_id"] for slate in exposures.loc[exposures["arm"] == "shuffled", "slate"] for s in slate}  # the popularity arm's
    rebought = 0
    for row in slates[slates["timestamp"] > slates["unit_id"].map(first_buy)].itertuples():
        mine = purchases[(purchases["unit_id"] == row.unit_id) & (purchases["timestamp"] < row.timestamp)]["item_id"]
        rebought += bool((set(mine) - popular) & set(row.items))
    assert rebought > 10


def test_a_replication_from_the_command_line_has_its_own_seed_name_and_logs():
    from pathlib import Path

    from hyperrec.config import ConfigError
    from hyperrec.sim.config import load_sim_config

    path = Path(__file__).parents[2] / "configs" / "sim" / "taste_shop_behaviour.yaml"
    committed, replication = load_sim_config(path), load_sim_config(path, ["seed=1"])
    assert (committed.seed, replication.seed) == (0, 1)
    assert replication.name == f"{committed.name}.seed-1" and replication.salt is None  # so the assignment salt is new too
    assert load_sim_config(path, ["seed=1", "name=again"]).name == "again"
    long = load_sim_config(path, ["seed=1", "shop.n_items=3000", "days=20", "shop.days=80"]).name  # 70 characters spelt out
    assert re.fullmatch(rf"{committed.name}\.[0-9a-f]{{12}}", long)
    with pytest.raises(ConfigError, match="sed"):
        load_sim_config(path, ["sed=1"])
