"""Full-ranking top-K metrics, per user, as pure functions.

`recs` is an (n_users, L) array of item indices ranked best first over the whole catalogue
(padded with -1 where a method has fewer than L items); `targets[i]` holds user i's
held-out items. Definitions:
- Recall@K = |top-K ∩ T| / |T|
- NDCG@K = DCG@K / IDCG@K with binary gains and IDCG over min(|T|, K) positions
- HitRate@K = 1 if top-K ∩ T is non-empty
- MRR@L = 1 / rank of the first hit in the list (0 without one)
- coverage@K = distinct items in all top-K lists / catalogue size
- repeat / explore Recall@K: recall over the target items the user had (not) bought before,
  defined only for users who have such target items (NaN otherwise)
- repeat share@K = share of the top-K list that the user had bought before
"""

from __future__ import annotations

import numpy as np


def hit_matrix(recs: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """(n_users, L) booleans: is recs[i, j] one of user i's target items."""
    return np.stack([np.isin(row, target) for row, target in zip(recs, targets)]) if len(recs) else np.zeros(recs.shape, bool)


def recall_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].sum(axis=1) / np.maximum(n_targets, 1)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    return hits[:, :k].any(axis=1).astype(float)


def ndcg_at_k(hits: np.ndarray, n_targets: np.ndarray, k: int) -> np.ndarray:
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hits[:, :k] * discounts[: hits[:, :k].shape[1]]).sum(axis=1)
    ideal_discounts = np.cumsum(discounts)
    idcg = ideal_discounts[np.clip(np.minimum(n_targets, k), 1, None) - 1]
    return dcg / idcg


def mrr(hits: np.ndarray) -> np.ndarray:
    first = hits.argmax(axis=1)
    return np.where(hits.any(axis=1), 1.0 / (first + 1), 0.0)


def coverage_at_k(recs: np.ndarray, k: int, n_items: int) -> float:
    top = recs[:, :k]
    return len(np.unique(top[top >= 0])) / n_items


def split_recall_at_k(recs: np.ndarray, targets: list[np.ndarray], seen: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall@K over repeat target items (seen before) and over explore items (new to the user)."""
    repeat, explore = np.full(len(recs), np.nan), np.full(len(recs), np.nan)
    for i, (row, target, history) in enumerate(zip(recs[:, :k], targets, seen)):
        is_repeat = np.isin(target, history)
        if is_repeat.any():
            repeat[i] = np.isin(target[is_repeat], row).mean()
        if (~is_repeat).any():
            explore[i] = np.isin(target[~is_repeat], row).mean()
    return repeat, explore


def repeat_share_at_k(recs: np.ndarray, seen: list[np.ndarray], k: int) -> np.ndarray:
    return np.array([np.isin(row[:k], history).mean() for row, history in zip(recs, seen)]) if len(recs) else np.empty(0)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 1_000, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """Mean of a - b over users with a percentile bootstrap confidence interval (users resampled)."""
    keep = ~(np.isnan(a) | np.isnan(b))
    diff = a[keep] - b[keep]
    if len(diff) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(diff.mean()), float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))
