"""The exploration slot and the placements in the closed loop, through the real in-process flow: a bandit arm and a
random arm on the tiny shop, shoppers asking on the home, product and cart pages. Each decision's logged propensity
is its pool's probability; the off-policy table and the simulator's truth agree; cart pages come after a cart add;
the per-day, per-placement and per-arm interval tables and their plots are written."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hyperrec.experiment.records import log_files, read_log
from hyperrec.sim.run import simulate
from tests.sim.conftest import tiny_config

SLOT = {"policy.explore_slots": 1, "policy.explore.pool": 10}
ARMS = [
    {"name": "bandit", "share": 0.5, "serve": SLOT | {"policy.explore.kind": "bandit"}},
    {"name": "random", "share": 0.5, "serve": SLOT | {"policy.explore.kind": "random"}},
]


@pytest.fixture(scope="module")
def run(exported, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slot")
    config = tiny_config(exported, tmp / "logs", ARMS, name="tiny_slot", sessions_per_day=150, placements=["home", "product", "cart"])
    return config, simulate(config, show_progress=False)


def test_every_slate_logs_its_slots_draw(run):
    config, result = run
    exposures = read_log(log_files(config.logs, config.name)[0], "exposures")
    slots = pd.read_parquet(config.logs / config.name / "slots.parquet")
    slotted = exposures[exposures["explore_item"].notna()]  # shoppers with nothing to go on get the cold list, no slot
    assert set(slots["trace_id"]) == set(slotted["trace_id"]) and len(slotted) > 0.3 * len(exposures)
    joined = slotted.merge(slots, on="trace_id", suffixes=("", "_slot"))
    for row in joined.itertuples():
        assert sum(row.probabilities) == pytest.approx(1.0)
        assert row.pool[row.chosen] == row.explore_item and row.probabilities[row.chosen] == pytest.approx(row.explore_propensity)
        assert [s["item_id"] for s in row.slate][row.position] == row.explore_item
    assert np.allclose(slots.loc[slots["kind"] == "random", "probabilities"].map(np.ptp).to_numpy(float), 0)


def test_off_policy_estimates_and_the_truth(run):
    _, result = run
    table, errors = result.slots, result.slot_errors
    assert table is not None and errors is not None
    assert set(table["log"]) == {"bandit", "random"}
    uniform = table[table["log"] == "random"]  # a uniform log: IPS is unbiased for every target
    for target, row in uniform.iterrows():
        assert abs(row["ips_error"]) < 4 * row["ips_se"] + 1e-9, target
    assert uniform.loc["uniform", "ips"] == pytest.approx(uniform.loc["uniform", "online"])
    random_errors = errors[(errors["log"] == "random") & (errors["estimator"] == "ips")]
    assert (random_errors["bias"].abs() < 3 * random_errors["rmse"] / np.sqrt(200) + 1e-4).all(), random_errors


def test_days_and_intervals(run):
    config, result = run
    days = result.days
    assert set(days.index) == {"bandit", "random"} and sorted(set(days["day"])) == list(range(1, config.days + 1))
    for _, part in days.groupby(level=0):
        assert part["coverage"].is_monotonic_increasing and part["slot_true_clicks"].between(0, 1).all()
    intervals = result.intervals
    for name in ("conversion", "revenue_per_session", "margin_per_session"):
        assert (intervals[f"{name}_lo"] <= intervals[name]).all() and (intervals[name] <= intervals[f"{name}_hi"]).all()
    assert {p.name for p in result.files} >= {"frontier.png", "days.png", "slots.md", "slot_errors.md", "intervals.md"}


def test_shoppers_ask_on_every_page_and_the_cart_page_follows_a_cart_add(run):
    config, result = run
    exposures, outcomes = (read_log(files, kind) for files, kind in zip(log_files(config.logs, config.name), ["exposures", "outcomes"]))
    assert set(exposures["placement"]) == {"home", "product", "cart"}
    assert set(result.placements.reset_index()[["arm", "placement"]].itertuples(index=False, name=None)) == {
        (arm, page) for arm in ("bandit", "random") for page in ("home", "product", "cart")
    }
    carts = outcomes[(outcomes["event"] == "add_to_cart") & outcomes["trace_id"].isna()].groupby("session_id")["timestamp"].min()
    cart_pages = exposures[exposures["placement"] == "cart"]
    assert (cart_pages["timestamp"] >= cart_pages["session_id"].map(carts)).all()  # right after the session's first organic add
    home = exposures[exposures["placement"] == "home"].set_index("session_id")["timestamp"]
    later = exposures[exposures["placement"] != "home"]
    assert (later["timestamp"] >= later["session_id"].map(home)).all()
