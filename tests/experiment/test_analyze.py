"""`hyperrec experiment analyze` end to end on a Parquet log this test writes: a shop where the
treatment arm's purchases are worth 20% more, a per-user spend level that makes the pre-period
predictive (so CUPED helps), and the errors a user can hit."""

import numpy as np
import pandas as pd
import pytest
import yaml

from hyperrec.cli import main
from hyperrec.experiment.assignment import ExperimentSpec, assign_many
from hyperrec.experiment.records import write_frame

NAME, USERS, DAYS, LIFT = "margin_test", 10_000, 14, 1.2
START = pd.Timestamp("2024-06-01", tz="UTC")
SPEC = {
    "name": NAME,
    "salt": "s1",
    "arms": [
        {"name": "control", "model_version": "v0001", "share": 0.5},
        {"name": "treatment", "overrides": {"policy.margin_weight": 0.3}, "share": 0.5},
    ],
    "sequential": {"max_units": USERS},  # the pre-registered horizon: every user of the shop
}
PURCHASE_P, SESSIONS_MEAN, LEVEL_MEAN = 0.4, 2.5, 20.0
TRUE_DIFF = SESSIONS_MEAN * PURCHASE_P * LEVEL_MEAN * (LIFT - 1)  # revenue per user, treatment - control


def write_shop(logs, spec=SPEC, seed=0):
    rng = np.random.default_rng(seed)
    users = np.array([f"user:{i}" for i in range(USERS)])
    arm = assign_many(ExperimentSpec.model_validate(spec), users)
    level = rng.gamma(1.0, LEVEL_MEAN, USERS)  # spend levels differ a lot between users
    n_sessions = rng.poisson(SESSIONS_MEAN - 1, USERS) + 1
    first = rng.uniform(0, DAYS - 1, USERS)
    owner = np.repeat(np.arange(USERS), n_sessions)
    is_first = np.r_[True, owner[1:] != owner[:-1]]
    day = np.where(is_first, first[owner], rng.uniform(first[owner], DAYS))
    sessions = pd.DataFrame(
        {"unit_id": users[owner], "session_id": [f"s{i}" for i in range(len(owner))], "trace_id": [f"t{i}" for i in range(len(owner))]}
    )
    sessions["timestamp"] = START + pd.to_timedelta(day, unit="D")
    exposures = sessions.assign(experiment=NAME, arm=arm[owner], placement="home", model_version=None)
    exposures["slate"] = [[{"item_id": f"i{j}", "position": j, "score": 1.0 - j / 10} for j in range(3)]] * len(exposures)
    exposures = exposures.assign(explore_item=None, explore_propensity=np.nan)

    def events(kind, p, value):
        happened = rng.random(len(owner)) < p
        part = sessions[happened].assign(event=kind, item_id="i0", value=value[happened], margin=0.2 * value[happened])
        return part.assign(timestamp=part["timestamp"] + pd.Timedelta(minutes=5))

    purchase_value = level[owner] * rng.gamma(4.0, 0.25, len(owner)) * np.where(arm[owner] == "treatment", LIFT, 1.0)
    zero = np.zeros(len(owner))
    outcomes = pd.concat([events("click", 0.3, zero), events("add_to_cart", 0.2, zero), events("purchase", PURCHASE_P, purchase_value)])
    pre_owner = np.repeat(np.arange(USERS), rng.poisson(6, USERS))
    pre = pd.DataFrame({"unit_id": users[pre_owner], "session_id": "pre", "trace_id": None, "event": "purchase", "item_id": "i9"})
    pre["value"] = level[pre_owner] * rng.gamma(4.0, 0.25, len(pre_owner))
    pre = pre.assign(margin=0.2 * pre["value"], timestamp=START - pd.to_timedelta(rng.uniform(0.1, 13, len(pre_owner)), unit="D"))
    folder = logs / NAME
    write_frame(folder / "exposures.parquet", exposures, "exposures")
    write_frame(folder / "outcomes-0.parquet", pd.concat([outcomes, pre], ignore_index=True), "outcomes")
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec))
    return folder


def test_analyze_recovers_the_injected_effect(tmp_path, capsys):
    logs, out = tmp_path / "logs", tmp_path / "results"
    write_shop(logs)
    assert main(["experiment", "analyze", NAME, "--logs", str(logs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    folder = out / NAME
    arms = pd.read_csv(folder / "arms.csv", index_col="arm")
    differences = pd.read_csv(folder / "differences.csv", index_col=["arm", "metric"])
    summary = pd.read_csv(folder / "summary.csv", index_col="arm").loc["treatment"]
    revenue = differences.loc[("treatment", "revenue_per_unit")]
    print(
        f"analyze: revenue/unit diff {revenue['diff']:.3f} [{revenue['ci_lo']:.3f}, {revenue['ci_hi']:.3f}] (true {TRUE_DIFF:.3f}); "
        f"CUPED {summary['cuped_diff']:.3f} [{summary['cuped_lo']:.3f}, {summary['cuped_hi']:.3f}], variance reduction "
        f"{summary['variance_reduction']:.3f}; SRM p {summary['srm_p']:.3f}; {summary['sequential']}"
    )
    assert arms["units"].sum() == USERS and abs(arms.loc["treatment", "units"] / USERS - 0.5) < 0.03
    assert revenue["ci_lo"] < TRUE_DIFF < revenue["ci_hi"]
    assert summary["cuped_lo"] < TRUE_DIFF < summary["cuped_hi"]
    assert summary["cuped_hi"] - summary["cuped_lo"] < revenue["ci_hi"] - revenue["ci_lo"]
    assert summary["variance_reduction"] > 0.1 and summary["srm"] == "ok"
    assert summary["sequential"].startswith("stop: treatment better than control")
    ctr, conversion = differences.loc[("treatment", "ctr")], differences.loc[("treatment", "conversion")]
    assert ctr["ci_lo"] < 0 < ctr["ci_hi"] and conversion["ci_lo"] < 0 < conversion["ci_hi"]  # the injected effect is on order value
    assert abs(arms.loc["control", "ctr"] - 0.3) < 0.02 and abs(arms.loc["control", "conversion"] - PURCHASE_P) < 0.02
    aov = differences.loc[("treatment", "average_order_value")]
    assert aov["ci_lo"] > 0
    running = pd.read_csv(folder / "running.csv")
    assert running["day"].max() == DAYS and (running["cs_lo"] <= running["ci_lo"]).all()
    assert (folder / "running.png").stat().st_size > 10_000 and "revenue_per_unit" in (folder / "differences.md").read_text()
    assert "revenue_per_unit" in printed and "stop: treatment better" in printed


def test_unknown_experiment_says_where_it_looked_and_what_exists(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_shop(logs)
    assert main(["experiment", "analyze", "nope", "--logs", str(logs), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"no exposure log (exposures*.parquet) in {logs / 'nope'}" in err and f"['{NAME}']" in err


def test_arms_missing_from_the_log(tmp_path, capsys):
    logs = tmp_path / "logs"
    folder = write_shop(logs)
    three = SPEC | {
        "arms": [
            dict(SPEC["arms"][0], share=0.4),
            dict(SPEC["arms"][1], share=0.4),
            {"name": "explore", "model_version": "v2", "share": 0.2},
        ]
    }
    (folder / "experiment.yaml").write_text(yaml.safe_dump(three))
    assert main(["experiment", "analyze", NAME, "--logs", str(logs), "--out", str(tmp_path / "r")]) == 2
    assert "arm(s) ['explore'] of experiment 'margin_test' are missing from the exposure log" in capsys.readouterr().err


@pytest.mark.parametrize("drop, message", [("arm", "missing field(s) ['arm']"), (None, "field 'event' has ['refund']")])
def test_bad_logs_name_the_file_and_field(tmp_path, capsys, drop, message):
    logs = tmp_path / "logs"
    folder = write_shop(logs)
    if drop:
        pd.read_parquet(folder / "exposures.parquet").drop(columns=drop).to_parquet(folder / "exposures.parquet")
        where = "exposures.parquet"
    else:
        frame = pd.read_parquet(folder / "outcomes-0.parquet")
        frame.loc[0, "event"] = "refund"
        frame.to_parquet(folder / "outcomes-0.parquet")
        where = "outcomes-0.parquet"
    assert main(["experiment", "analyze", NAME, "--logs", str(logs), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert where in err and message in err
