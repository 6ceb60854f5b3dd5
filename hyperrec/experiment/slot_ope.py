"""Off-policy evaluation of the exploration slot from its decision log: what another slot policy would have earned.

Each logged decision (the response's `exploration`, or the audit record's) holds the pool the slot chose
from, every pool item's features and logging probability, and the item chosen; the reward is what the
shopper did with that item (a click, by default). Pools differ in size: the arrays are padded, and a
padded place has probability 0 under every policy.

The target policies: `logging` (the log's own policy: its estimate should equal the log's mean reward),
`uniform` (a random slot), `best-scored` (the pool's first item: the old `explore_slots`), and `greedy`
(the arg-max of a ridge reward model, which is also the doubly robust estimate's model). The model is
cross-fitted: the log's first half in time predicts for the second and the other way round, so that
neither the greedy target nor DR's correction scores a decision with a model that saw its reward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hyperrec.experiment.ope import dr_terms, ips_terms, snips


@dataclass(frozen=True)
class SlotLog:
    probabilities: np.ndarray  # (n, m): the logging policy's probability of each pool place, 0 on padding
    features: np.ndarray  # (n, m, d)
    chosen: np.ndarray  # (n,) pool place shown
    reward: np.ndarray  # (n,)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, reward: str = "clicked") -> SlotLog:
        """Rows with list columns `probabilities`, `features` (the pool's rows, flattened) and `n_features`, and `chosen`."""
        n, m, d = len(frame), int(frame["probabilities"].map(len).max()), int(frame["n_features"].iloc[0])
        probabilities, features = np.zeros((n, m)), np.zeros((n, m, d))
        for row, (p, x) in enumerate(zip(frame["probabilities"], frame["features"], strict=True)):
            probabilities[row, : len(p)] = p
            features[row, : len(p)] = np.asarray(x, np.float64).reshape(len(p), d)
        return cls(probabilities, features, frame["chosen"].to_numpy(np.int64), frame[reward].to_numpy(np.float64))

    @property
    def mask(self) -> np.ndarray:
        return self.probabilities > 0

    @property
    def propensity(self) -> np.ndarray:
        return self.probabilities[np.arange(len(self.chosen)), self.chosen]


def ridge_predictions(log: SlotLog, l2: float = 1.0) -> np.ndarray:
    """A linear reward model of the features fit on the logged (shown item, reward) pairs, cross-fitted over the
    log's two halves: every pool place's prediction by the model of the other half."""
    x = log.features[np.arange(len(log.chosen)), log.chosen]
    half = np.arange(len(x)) < len(x) // 2
    predicted = np.zeros_like(log.probabilities)
    for fit in (half, ~half):
        theta = np.linalg.solve(x[fit].T @ x[fit] + l2 * np.eye(x.shape[1]), x[fit].T @ log.reward[fit])
        predicted[~fit] = log.features[~fit] @ theta
    return predicted * log.mask


def _one_hot(log: SlotLog, places: np.ndarray) -> np.ndarray:
    target = np.zeros_like(log.probabilities)
    target[np.arange(len(places)), places] = 1.0
    return target


def target_policies(log: SlotLog, predicted: np.ndarray) -> dict[str, np.ndarray]:
    """Each target policy's probability of every pool place in every logged context."""
    return {
        "logging": log.probabilities,
        "uniform": log.mask / log.mask.sum(1, keepdims=True),
        "best-scored": _one_hot(log, np.zeros(len(log.chosen), np.int64)),
        "greedy": _one_hot(log, np.argmax(np.where(log.mask, predicted, -np.inf), axis=1)),
    }


def estimates(log: SlotLog, target: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """IPS, SNIPS and doubly robust estimates of a target's mean reward per decision (IPS and DR with standard errors)."""
    args = (target, log.chosen, log.propensity, log.reward)
    ips, dr = ips_terms(*args), dr_terms(*args, predicted)
    root = np.sqrt(len(ips))
    return {
        "ips": float(ips.mean()),
        "ips_se": float(ips.std(ddof=1) / root),
        "snips": snips(*args),
        "dr": float(dr.mean()),
        "dr_se": float(dr.std(ddof=1) / root),
    }


def true_value(target: np.ndarray, truth: np.ndarray) -> float:
    """A target policy's true mean reward per logged context, given every pool place's true expected reward."""
    return float((target * truth).sum(1).mean())


def ope_table(log: SlotLog, truth: np.ndarray | None = None) -> pd.DataFrame:
    """One row per target policy: the estimates and, given every pool place's true expected reward (n, m;
    a simulator's), the target's true value and each estimator's error."""
    predicted = ridge_predictions(log)
    rows = {}
    for name, target in target_policies(log, predicted).items():
        row = {"decisions": len(log.chosen)} | estimates(log, target, predicted)
        if truth is not None:
            row["truth"] = true_value(target, truth)
            row |= {f"{key}_error": row[key] - row["truth"] for key in ("ips", "snips", "dr")}
        rows[name] = row
    return pd.DataFrame(rows).T.rename_axis("target")


def resampled_errors(log: SlotLog, truth: np.ndarray, replicates: int, seed: int = 0) -> pd.DataFrame:
    """Each estimator's bias and RMSE against the truth over `replicates` logs drawn anew on the logged contexts: the
    shown place from the logged probabilities, its reward from the true chance (truth: (n, m) expected rewards in
    0..1). The logged contexts, pools and features stay as they were; only the draws are repeated."""
    rng = np.random.default_rng(seed)
    cumulative = log.probabilities.cumsum(1)
    errors: dict[tuple[str, str], list[float]] = {}
    for _ in range(replicates):
        chosen = np.minimum((cumulative < rng.random((len(cumulative), 1))).sum(1), log.probabilities.shape[1] - 1)
        reward = (rng.random(len(chosen)) < truth[np.arange(len(chosen)), chosen]).astype(np.float64)
        draw = SlotLog(log.probabilities, log.features, chosen, reward)
        predicted = ridge_predictions(draw)
        for name, target in target_policies(draw, predicted).items():
            truth_of_target = true_value(target, truth)
            found = estimates(draw, target, predicted)
            for estimator in ("ips", "snips", "dr"):
                errors.setdefault((name, estimator), []).append(found[estimator] - truth_of_target)
    rows = [
        {"target": name, "estimator": estimator, "bias": float(np.mean(e)), "rmse": float(np.sqrt(np.mean(np.square(e))))}
        for (name, estimator), e in errors.items()
    ]
    return pd.DataFrame(rows).set_index("target")
