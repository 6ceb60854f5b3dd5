"""A trained two-tower model behind the fit / score interface, with FAISS retrieval.

`fit` records each user's history and the hour and weekday of their last basket (the context
the user tower is given: the time of the next visit is unknown offline). Item vectors are
computed once and indexed with FAISS: exact inner product for small catalogues, HNSW above
`ann_threshold` items. `recommend` retrieves through the index; `score` is the exact dot product
over the whole catalogue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from hyperrec.data.basket_examples import hour_and_weekday
from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import recent_items
from hyperrec.models.base import Recommender
from hyperrec.models.item_index import build_index
from hyperrec.models.two_tower import TwoTower


class TwoTowerRecommender(Recommender):
    def __init__(self, model: TwoTower, ann_threshold: int = 100_000, batch_size: int = 512, device: torch.device | str = "cpu"):
        super().__init__()
        self.model = model.eval()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.item_matrix = model.item_vectors().cpu().numpy()
        self.index = build_index(self.item_matrix, ann_threshold)

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.history = data
        last_times = np.array([t[-1] if len(t) else 0 for t in data.times])
        self.hour, self.weekday = hour_and_weekday(last_times)

    @torch.no_grad()
    def user_matrix(self, users: np.ndarray) -> np.ndarray:
        items = recent_items(self.history, users, self.model.config.max_len)
        out = []
        for start in range(0, len(users), self.batch_size):
            batch = slice(start, start + self.batch_size)
            u = users[batch]
            inputs = (items[batch], np.zeros(len(u), np.int64), self.hour[u], self.weekday[u])
            out.append(self.model.user_vectors(*(torch.from_numpy(x).to(self.device) for x in inputs)).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.item_matrix.shape[1]), np.float32)

    def score(self, users: np.ndarray) -> np.ndarray:
        return self.user_matrix(users) @ self.item_matrix.T

    def recommend(
        self, users: np.ndarray, k: int, exclude: list[np.ndarray] | None = None, batch_size: int = 1024
    ) -> tuple[np.ndarray, np.ndarray]:
        if exclude is not None or self.popularity is None:
            return super().recommend(users, k, exclude, batch_size)  # exclusions need dense scores; unfitted raises
        scores, items = self.index.search(
            np.ascontiguousarray(self.user_matrix(np.asarray(users, dtype=np.int64))), min(k, len(self.item_matrix))
        )
        return items.astype(np.int64), scores.astype(np.float64)
