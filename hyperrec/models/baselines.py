"""Baselines every model is judged against, all full-ranking over the catalogue.

- `Popularity`: items in the most baskets.
- `TopFrequency`: the user's own most frequently bought items (repeat buying), then popularity.
- `ItemKNN`: item-item cosine over co-occurrence in user histories, scored from the user's items.
- `TIFUKNN`: Hu et al., "Modeling Personalized Item Frequency Information for Next-basket
  Recommendation", SIGIR 2020: a user vector of time-decayed, group-decayed basket vectors,
  blended with the mean vector of the user's nearest-neighbour users.
- `SessionKNN`, `VSKNN` (session_knn.py): S-KNN and V-SKNN, a user's latest basket against all
  past baskets (sessions).
- `LastBasketCooccurrence` (cooccurrence.py): items bought together with the last basket's.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from hyperrec.config import BaselineKind
from hyperrec.data.sequences import Interactions
from hyperrec.models.base import Params, Recommender
from hyperrec.models.cooccurrence import LastBasketCooccurrence
from hyperrec.models.session_knn import VSKNN, SessionKNN


class Popularity(Recommender):
    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        pass

    def score(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity, (len(users), len(self.popularity))).astype(np.float32)


class TopFrequency(Recommender):
    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.counts = counts

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.counts[users].toarray()


class ItemKNNParams(Params):
    neighbors: int = Field(100, ge=1, description="similar items kept per item")
    shrink: float = Field(10.0, ge=0, description="added to the cosine denominator; damps rare pairs")


class ItemKNN(Recommender):
    Params = ItemKNNParams
    params: ItemKNNParams

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.counts = counts
        binary = (counts > 0).astype(np.float32)
        co = (binary.T @ binary).tocsr()
        norms = np.sqrt(co.diagonal())
        co = co.tocoo()
        sims = co.data / (norms[co.row] * norms[co.col] + self.params.shrink)
        self.similarity = _keep_top_per_row(sp.csr_matrix((sims, (co.row, co.col)), shape=co.shape), self.params.neighbors)

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self.counts[users] @ self.similarity).toarray()


def _keep_top_per_row(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Keep the n largest entries of each row."""
    matrix = matrix.tocsr()
    data, indices, indptr = matrix.data, matrix.indices, matrix.indptr
    keep = np.zeros(len(data), dtype=bool)
    for row in range(matrix.shape[0]):
        start, end = indptr[row], indptr[row + 1]
        if end - start <= n:
            keep[start:end] = True
        else:
            keep[start + np.argpartition(-data[start:end], n - 1)[:n]] = True
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(indptr))
    return sp.csr_matrix((data[keep], (rows[keep], indices[keep])), shape=matrix.shape)


class TIFUKNNParams(Params):
    group_count: int = Field(3, ge=1, description="the history is cut into this many groups of consecutive baskets")
    within_decay: float = Field(0.9, gt=0, le=1, description="decay per basket inside a group (r_b)")
    group_decay: float = Field(0.7, gt=0, le=1, description="decay per group (r_g)")
    neighbors: int = Field(300, ge=1, description="nearest-neighbour users (Euclidean)")
    alpha: float = Field(0.9, ge=0, le=1, description="weight of the user's own vector vs its neighbours'")


class TIFUKNN(Recommender):
    Params = TIFUKNNParams
    params: TIFUKNNParams

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.user_vectors = sp.vstack([self._user_vector(baskets, data.n_items) for baskets in data.baskets]).tocsr()
        self.neighbors = self._nearest_users(self.user_vectors, self.params.neighbors)

    def _user_vector(self, baskets: list[np.ndarray], n_items: int) -> sp.csr_matrix:
        """Mean over groups (decayed by r_g towards the past) of the mean over the group's baskets
        (decayed by r_b towards the past); with fewer baskets than groups, one basket per group."""
        p = self.params
        vector = np.zeros(n_items)
        if not baskets:
            return sp.csr_matrix(vector)
        groups = np.array_split(np.arange(len(baskets)), min(p.group_count, len(baskets)))
        # array_split puts the larger groups first; the oldest groups should be the smaller ones.
        groups = [len(g) for g in reversed(groups)]
        bounds = np.r_[0, np.cumsum(groups)]
        for g, (start, end) in enumerate(zip(bounds[:-1], bounds[1:])):
            size = end - start
            group_weight = p.group_decay ** (len(groups) - 1 - g) / len(groups)
            for j in range(start, end):
                vector[baskets[j]] += group_weight * p.within_decay ** (end - 1 - j) / size
        return sp.csr_matrix(vector)

    @staticmethod
    def _nearest_users(vectors: sp.csr_matrix, k: int, batch_size: int = 512) -> np.ndarray:
        """(n_users, k) indices of each user's nearest other users by Euclidean distance."""
        n = vectors.shape[0]
        k = min(k, n - 1)
        if k < 1:
            return np.empty((n, 0), dtype=np.int64)
        sq_norms = np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel()
        neighbors = np.empty((n, k), dtype=np.int64)
        for start in range(0, n, batch_size):
            rows = np.arange(start, min(start + batch_size, n))
            dist = sq_norms[rows, None] + sq_norms[None, :] - 2 * (vectors[rows] @ vectors.T).toarray()
            dist[np.arange(len(rows)), rows] = np.inf  # not your own neighbour
            top = np.argpartition(dist, k - 1, axis=1)[:, :k]
            neighbors[rows] = np.take_along_axis(top, np.argsort(np.take_along_axis(dist, top, axis=1), axis=1), axis=1)
        return neighbors

    def score(self, users: np.ndarray) -> np.ndarray:
        own = self.user_vectors[users].toarray()
        if self.neighbors.shape[1] == 0:
            return own
        neighbor_mean = np.stack([np.asarray(self.user_vectors[self.neighbors[u]].mean(axis=0)).ravel() for u in users])
        return self.params.alpha * own + (1 - self.params.alpha) * neighbor_mean


BASELINES: dict[BaselineKind, type[Recommender]] = {
    "popularity": Popularity,
    "top_frequency": TopFrequency,
    "item_knn": ItemKNN,
    "tifu_knn": TIFUKNN,
    "sknn": SessionKNN,
    "vsknn": VSKNN,
    "cooccurrence": LastBasketCooccurrence,
}


def make_baseline(kind: str, params: dict | None = None) -> Recommender:
    """A baseline by name, its params validated (an unknown or wrong-typed key names itself)."""
    if kind not in BASELINES:
        raise ValueError(f"unknown baseline '{kind}'; choose one of {sorted(BASELINES)}")
    cls = BASELINES[kind]
    return cls(cls.Params.model_validate(params or {}))
