"""The interface every recommender implements: fit on interactions, score the whole catalogue."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict

from hyperrec.data.sequences import Interactions

SCORE_CELLS_PER_BATCH = 2**25  # 256 MiB of float64 scores per batch


class Params(BaseModel):
    """Hyper-parameters of a recommender; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Recommender(ABC):
    """Full-ranking recommender: `score` returns a score for every catalogue item.

    `recommend` ranks by score and breaks ties (including items a method does not score at all)
    by training popularity, so every method fills its list the same, deterministic way.
    """

    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params | None = None):
        self.params = params if params is not None else self.Params()
        self.popularity: np.ndarray | None = None

    def fit(self, data: Interactions) -> Self:
        counts = data.basket_counts()
        self.popularity = np.asarray(counts.sum(axis=0)).ravel()
        self._fit(data, counts)
        return self

    @abstractmethod
    def _fit(self, data: Interactions, counts) -> None:
        """Learn from `data`; `counts` is its users x items basket-count matrix (CSR)."""

    @abstractmethod
    def score(self, users: np.ndarray) -> np.ndarray:
        """(len(users), n_items) scores, higher is better."""

    def recommend(
        self, users: np.ndarray, k: int, exclude: list[np.ndarray] | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item indices and their scores for each user, best first."""
        if self.popularity is None:
            raise RuntimeError(f"{type(self).__name__} must be fitted before it recommends")
        users = np.asarray(users, dtype=np.int64)
        tiebreak = popularity_tiebreak(self.popularity)
        k = min(k, len(self.popularity))
        # A batch's score matrix is rows x catalogue (float64): bounded in cells, or 1,024 users of a
        # 1M-item catalogue would take 8 GiB (the training-at-scale table found it).
        batch_size = max(1, min(batch_size, SCORE_CELLS_PER_BATCH // len(self.popularity)))
        items = np.empty((len(users), k), dtype=np.int64)
        scores = np.empty((len(users), k), dtype=np.float64)
        for start in range(0, len(users), batch_size):
            batch = slice(start, start + batch_size)
            items[batch], scores[batch] = best_items(self.score(users[batch]), k, tiebreak, exclude[batch] if exclude is not None else None)
        return items, scores


def popularity_tiebreak(popularity: np.ndarray) -> np.ndarray:
    """Added to scores so that equal scores go to the more popular item, too small to reorder unequal ones."""
    return 1e-9 * popularity / max(popularity.max(), 1.0)


def best_items(scores: np.ndarray, k: int, tiebreak: np.ndarray, exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` best items and their scores (plus `tiebreak`), best first; `exclude[row]`: items that row never gets."""
    s = scores.astype(np.float64) + tiebreak
    if exclude is not None:
        for row, banned in enumerate(exclude):
            s[row, banned] = -np.inf
    top = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(s, top, axis=1), axis=1, kind="stable")
    items = np.take_along_axis(top, order, axis=1)
    return items, np.take_along_axis(s, items, axis=1)
