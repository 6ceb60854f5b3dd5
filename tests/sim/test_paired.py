"""A paired run: every arm follows every shopper and answers every visit, only the assigned arm's slate is shown,
and the simulator scores all of them with its truth. On the tiny shop through the real in-process flow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyperrec.sim.run import simulate
from tests.sim.conftest import tiny_config

ARMS = [
    {"name": "control", "share": 0.34},
    {"name": "same", "share": 0.33},
    {"name": "reversed", "share": 0.33, "display": "reversed"},
]


@pytest.fixture(scope="module")
def run(exported, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paired")
    shop = {"n_users": 1500, "n_items": 200, "n_categories": 5, "sessions_per_user": 10, "days": 90, "seed": 0}
    config = tiny_config(exported, tmp / "logs", ARMS, paired=True, name="tiny_paired", shop=shop)
    return config, simulate(config, show_progress=False)


def test_every_arm_answers_every_visit_and_only_the_assigned_one_is_shown(run):
    config, result = run
    rows = pd.read_parquet(config.logs / config.name / "paired.parquet")
    per_visit = rows.groupby(["session_id", "page"])["arm"].agg(sorted)
    assert all(arms == ["control", "reversed", "same"] for arms in per_visit)
    assert len(per_visit) == result.values["slates"].sum()  # one shown slate per visit, in the exposures
    shown = rows[rows["arm"] == rows["shown_arm"]]
    assert len(shown) == len(per_visit)
    table = result.paired[result.paired["page"] == "all"]
    print(table.to_string())
    assert np.allclose(table["shown_share"], [arm["share"] for arm in ARMS], atol=0.05)


def test_an_identical_arm_answers_exactly_the_same(run):
    """Both arms ingested the same events (the shown arm's shoppers' too), so their online states and answers agree:
    on every visit but those whose two calls fell either side of a wall-clock hour (the served context's `hour`)."""
    config, result = run
    rows = pd.read_parquet(config.logs / config.name / "paired.parquet")
    wide = rows.pivot_table(index=["session_id", "page"], columns="arm", values="true_revenue")
    assert (wide["same"] != wide["control"]).mean() < 0.005
    same = result.paired.loc["same"]
    for metric in ("revenue", "clicks", "margin"):
        assert ((same[f"{metric}_diff_lo"] <= 0) & (same[f"{metric}_diff_hi"] >= 0)).all()


def test_the_injected_effect_is_measured_far_more_precisely_than_unpaired(run):
    _, result = run
    paired = result.paired[result.paired["page"] == "all"].loc["reversed"]
    assert paired["clicks_diff_hi"] < 0 and paired["revenue_diff_hi"] < 0
    # the same difference from the shown slates alone: each arm's own shoppers (placements table, errors over shoppers)
    shown = result.placements
    unpaired_se = float(np.hypot(shown.loc["control", "true_revenue_se"], shown.loc["reversed", "true_revenue_se"]))
    paired_se = (paired["revenue_diff_hi"] - paired["revenue_diff_lo"]) / (2 * 1.96)
    print(f"paired se {paired_se:.4f}, unpaired se {unpaired_se:.4f}")
    assert paired_se < 0.6 * unpaired_se  # measured 0.29: every shopper counts for every arm, and no between-shopper spread


def test_a_paired_run_refuses_a_learning_bandit_arm(exported, tmp_path):
    arms = [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.5, "serve": {"policy.explore_slots": 1, "policy.explore.kind": "bandit"}}]
    with pytest.raises(ValueError, match=r"paired: arm\(s\) \['b'\] run a bandit slot"):
        tiny_config(exported, tmp_path, arms, paired=True)
