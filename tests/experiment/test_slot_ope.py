"""Off-policy evaluation of the exploration slot on simulated logs with a known truth: every estimate within its
own error of the target's true value, IPS and DR unbiased over redrawn logs, DR no worse than IPS."""

import numpy as np
import pytest

from hyperrec.experiment.slot_ope import SlotLog, ope_table, resampled_errors

N, M, D = 3000, 8, 4


@pytest.fixture(scope="module")
def logged():
    """Pools of 6-8 items; true click chance linear in the features; an epsilon-greedy logging policy on a noisy score."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(6, M + 1, N)
    mask = np.arange(M)[None, :] < sizes[:, None]
    features = rng.normal(size=(N, M, D)) * mask[..., None]
    features[..., 0] = mask
    truth = np.clip(0.1 + features[..., 1:] @ np.array([0.05, -0.03, 0.02]), 0.01, 0.5) * mask
    noisy = features[..., 1] + rng.normal(size=(N, M))
    best = np.argmax(np.where(mask, noisy, -np.inf), axis=1)
    probabilities = 0.2 * mask / sizes[:, None]
    probabilities[np.arange(N), best] += 0.8
    chosen = (probabilities.cumsum(1) < rng.random((N, 1))).sum(1)
    reward = (rng.random(N) < truth[np.arange(N), chosen]).astype(float)
    return SlotLog(probabilities, features, chosen, reward), truth


def test_every_estimate_is_within_its_error_of_the_truth(logged):
    log, truth = logged
    table = ope_table(log, truth)
    assert set(table.index) == {"logging", "uniform", "best-scored", "greedy"}
    assert table.loc["logging", "ips"] == pytest.approx(log.reward.mean())  # on-policy: weights are 1
    for target, row in table.iterrows():
        assert abs(row["ips_error"]) < 4 * row["ips_se"] + 1e-9, target
        assert abs(row["dr_error"]) < 4 * row["dr_se"] + 1e-9, target
    assert table.loc["greedy", "truth"] > table.loc["uniform", "truth"]  # the cross-fitted model finds the better items


def test_ips_and_dr_are_unbiased_and_dr_is_the_steadier_one(logged):
    log, truth = logged
    errors = resampled_errors(log, truth, replicates=100)
    for (target, estimator), row in errors.reset_index().set_index(["target", "estimator"]).iterrows():
        if estimator in ("ips", "dr"):
            assert abs(row["bias"]) < 3 * row["rmse"] / np.sqrt(100) + 1e-4, (target, estimator, row.to_dict())
    rmse = errors.reset_index().pivot(index="target", columns="estimator", values="rmse")
    for target in ("best-scored", "greedy"):  # deterministic targets: the reward model takes out some of IPS's variance
        assert rmse.loc[target, "dr"] <= rmse.loc[target, "ips"], rmse
    assert rmse.loc["uniform", "dr"] <= 1.1 * rmse.loc["uniform", "ips"], rmse  # small weights: little for DR to take out
