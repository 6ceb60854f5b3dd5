"""Off-policy evaluation: the value a target policy would have had, from a log of another policy's
decisions (context, action, the logging policy's propensity of that action, reward).

`target` is always the target policy's probabilities of every action per logged context, shape
(n, n_actions); a deterministic policy is one-hot. The estimators are unbiased when the logging
propensities are right and positive wherever the target acts (IPS, DR) or consistent (SNIPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _weights(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """Importance weights pi(a_i | x_i) / mu(a_i | x_i) of the logged actions."""
    return target[np.arange(len(actions)), actions] / propensity


def ips_terms(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> np.ndarray:
    """Each logged decision's term w_i r_i of the IPS estimate (their spread gives its standard error)."""
    return _weights(target, actions, propensity) * reward


def ips(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> float:
    """Inverse propensity scoring: mean of w_i r_i. Unbiased; its variance grows with the weights."""
    return float(np.mean(ips_terms(target, actions, propensity, reward)))


def snips(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray, reward: np.ndarray) -> float:
    """Self-normalised IPS: sum(w r) / sum(w). Slightly biased for small logs, much less variable."""
    w = _weights(target, actions, propensity)
    return float(np.sum(w * reward) / np.sum(w))


def dr_terms(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray, reward: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each logged decision's term of the doubly robust estimate."""
    rows = np.arange(len(actions))
    direct = (target * predicted).sum(1)
    return direct + _weights(target, actions, propensity) * (reward - predicted[rows, actions])


def doubly_robust(target: np.ndarray, actions: np.ndarray, propensity: np.ndarray, reward: np.ndarray, predicted: np.ndarray) -> float:
    """Doubly robust (Dudik et al. 2011): the reward model's value of the target policy plus the
    importance-weighted residual of the logged action. Unbiased if either the propensities or the
    reward model are right; `predicted` is the model's reward of every action, shape (n, n_actions)."""
    return float(np.mean(dr_terms(target, actions, propensity, reward, predicted)))


@dataclass(frozen=True)
class RidgeRewardModel:
    """A linear reward model per action (ridge on the context features plus an intercept)."""

    coef: np.ndarray  # (n_actions, n_features + 1)

    @classmethod
    def fit(cls, contexts: np.ndarray, actions: np.ndarray, reward: np.ndarray, n_actions: int, l2: float = 1.0) -> RidgeRewardModel:
        x = np.hstack([contexts, np.ones((len(contexts), 1))])
        penalty = l2 * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # the intercept is not shrunk: an action seen rarely falls back to its mean
        coef = np.zeros((n_actions, x.shape[1]))
        for a in range(n_actions):
            xa, ra = x[actions == a], reward[actions == a]
            coef[a] = np.linalg.solve(xa.T @ xa + penalty + 1e-9 * np.eye(x.shape[1]), xa.T @ ra)
        return cls(coef)

    def predict(self, contexts: np.ndarray) -> np.ndarray:
        return np.hstack([contexts, np.ones((len(contexts), 1))]) @ self.coef.T
