"""Two-stage recommender: candidate generation, then a learned ranker, behind `Recommender`.

Candidates of a user = the union of
  (a) the user's repeat items (everything they bought, or their top `repeat_top_n` by count),
  (b) the top `retriever_top_n` items of each retriever (any fitted `Recommender`: item_knn,
      tifu_knn, a two-tower ANN, a SASRec run, ...),
  (c) the `popular_top_n` most popular items.
The ranker (hyperrec/models/ranker.py) scores each candidate from the features of
hyperrec/models/features.py; every other item scores `NOT_A_CANDIDATE`, so `recommend` is still a
full-ranking top-k over the catalogue.

Honest training. `fit(history)` builds the ranker's training lists by holding out, for each of
`label_baskets` cut-offs j = 1..J, basket n_u - j of every user u as the label and computing the
candidates and features from the baskets before it: the retrievers are refitted on that truncated
history and every aggregate (popularity, repeat rates, ...) is recomputed from it, so nothing of a
label basket, or of anything after it, reaches its features. With `history` = the test task's
history, cut-off 1's label is the validation basket. Then the retrievers are refitted on all of
`history`, and serving features come from all of it.

A trained run as a retriever is the exception: "refitting" it only hands it the truncated history;
its weights were learned from every basket before the validation basket, so on the earlier
cut-offs it has seen the labels and the ranker sees it at its best. The test basket stays unseen
by everything, so test metrics remain honest; the ranker may merely trust the run too much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from pydantic import Field

from hyperrec.config import StrictModel
from hyperrec.data.sequences import Interactions
from hyperrec.models import collaborative_features as C
from hyperrec.models import features as F
from hyperrec.models.base import Recommender, popularity_tiebreak
from hyperrec.models.ranker import Ranker, RankerConfig

NOT_A_CANDIDATE = -1e6  # score of items the candidate stage did not propose


class PipelineConfig(StrictModel):
    repeat_top_n: int | None = Field(None, ge=1, description="repeat candidates per user; None = every item the user bought")
    retriever_top_n: int = Field(50, ge=1, description="candidates taken from each retriever")
    explore_top_n: int = Field(0, ge=0, description="extra candidates from each retriever among items new to the user")
    popular_top_n: int = Field(50, ge=0, description="most popular items added to every user's candidates")
    label_baskets: int = Field(
        20, ge=1, description="training cut-offs per user: the last J baskets of the history each serve once as a label"
    )
    min_history: int = Field(1, ge=1, description="baskets a user needs before a label basket to give a training list")
    decays: tuple[float, ...] = (0.5, 0.8, 0.95)
    neighbors: int = Field(100, ge=0, description="nearest users behind the collaborative features; 0 = none")
    cooccurrence: bool = Field(True, description="features of the candidate's co-occurrence with the user's last basket")
    trend_fraction: float = Field(0.2, gt=0, lt=1)
    refit_retrievers: bool = Field(
        True, description="refit the retrievers at every cut-off (honest); False only for retrievers that cannot be refitted"
    )
    explore_bonus: float = Field(
        0.0, ge=0, description="added at serving to the score of candidates new to the user: trades repeat recall for exploration"
    )
    batch_users: int = Field(512, ge=1, description="users per batch when building features")
    ranker: RankerConfig = RankerConfig()


@dataclass
class CandidateSet:
    """Flat (user, item) candidate pairs of a batch of users and their feature matrix."""

    users: np.ndarray  # user index of each pair
    rows: np.ndarray  # position of the pair's user in the batch
    items: np.ndarray
    features: np.ndarray  # (pairs, n_features) float32
    names: list[str]


@dataclass
class TrainingSet:
    """The ranker's training lists: candidates of each (cut-off, user) with a positive among them."""

    features: np.ndarray
    labels: np.ndarray
    groups: np.ndarray  # list id per row: one list per (cut-off, user)
    weights: np.ndarray
    users: np.ndarray
    items: np.ndarray
    cutoff: np.ndarray  # j of the row's list (1 = the history's last basket is the label)
    names: list[str]


class Pipeline(Recommender):
    def __init__(
        self,
        retrievers: dict[str, Recommender] | list[Recommender] | None = None,
        config: PipelineConfig | None = None,
        catalog: pd.DataFrame | None = None,
    ):
        super().__init__()
        if isinstance(retrievers, list):
            retrievers = {f"retriever{i}": r for i, r in enumerate(retrievers)}
        self.retrievers: dict[str, Recommender] = dict(retrievers or {})
        self.config = config if config is not None else PipelineConfig()
        self.catalog = catalog if F.catalog_has_signal(catalog) else None
        self.ranker: Ranker | None = None
        self.feature_names: list[str] = []
        self._vector_cache: tuple = (None, None)  # (summary, user vectors) of the last summary used
        self._cooc_cache: tuple = (None, None)  # (summary, item-item similarities)

    # ----------------------------------------------------------------------------------------
    # candidates and features from one history
    # ----------------------------------------------------------------------------------------

    def _fit_retrievers(self, history: Interactions) -> None:
        if self.config.refit_retrievers:
            for retriever in self.retrievers.values():
                retriever.fit(history)

    def candidates(self, history: Interactions, summary: F.HistorySummary, users: np.ndarray) -> CandidateSet:
        """Candidates and features of `users`, everything read from `history` and the retrievers
        as they are now fitted (the caller fits them on `history`)."""
        c = self.config
        users = np.asarray(users, np.int64)
        n_items = history.n_items
        popularity = summary.popularity
        tiebreak = popularity_tiebreak(popularity)
        popular = np.argsort(-popularity, kind="stable")[: c.popular_top_n]
        source_scores = {}
        pieces_rows, pieces_items = [], []
        for name, retriever in self.retrievers.items():
            scores = np.asarray(retriever.score(users), dtype=np.float64) + tiebreak
            rank = F.ranks(scores)
            source_scores[name] = (scores, rank)
            rows, items = np.nonzero(rank < c.retriever_top_n)
            pieces_rows.append(rows)
            pieces_items.append(items)
            if c.explore_top_n > 0:
                new_scores = scores.copy()
                for row, user in enumerate(users):
                    new_scores[row, summary.user_items(user)] = -np.inf
                k = min(c.explore_top_n, n_items)
                top = np.argpartition(-new_scores, k - 1, axis=1)[:, :k]
                ok = np.isfinite(np.take_along_axis(new_scores, top, axis=1))
                pieces_rows.append(np.nonzero(ok)[0])
                pieces_items.append(top[ok])
        for row, user in enumerate(users):
            own = summary.user_items(user)
            if c.repeat_top_n is not None and len(own) > c.repeat_top_n:
                count = F.pair_features(summary, np.full(len(own), user), own)
                order = np.lexsort((count["recency"], -count["count"]))  # most bought, then most recent
                own = own[order[: c.repeat_top_n]]
            pieces_rows.append(np.full(len(own), row))
            pieces_items.append(own)
        pieces_rows.append(np.repeat(np.arange(len(users)), len(popular)))
        pieces_items.append(np.tile(popular, len(users)))
        key = np.unique(np.concatenate(pieces_rows).astype(np.int64) * n_items + np.concatenate(pieces_items))
        rows, items = key // n_items, key % n_items
        pair_users = users[rows]

        columns = F.pair_features(summary, pair_users, items)
        pop_rank = np.empty(n_items, np.int64)
        pop_rank[np.argsort(-popularity, kind="stable")] = np.arange(n_items)
        columns["popular_inv_rank"] = 1.0 / (1.0 + pop_rank[items])
        columns["popular_proposed"] = (pop_rank[items] < c.popular_top_n).astype(np.float64)
        # collaborative and basket-context features (user-user neighbours, item-item co-occurrence)
        if c.neighbors > 0:
            columns.update(C.neighbor_features(self._vectors(summary), users, rows, items, c.neighbors))
        if c.cooccurrence:
            columns.update(C.last_basket_features(summary, self._cooccurrence(summary), users, rows, items))
        for name, (scores, rank) in source_scores.items():
            columns.update(F.retriever_features(name, scores, rank, rows, items, c.retriever_top_n))
        if self.catalog is not None:
            columns.update(F.catalog_features(self.catalog, summary, pair_users, items))
        names = list(columns)
        matrix = np.stack([columns[n] for n in names], axis=1).astype(np.float32) if len(items) else np.empty((0, len(names)), np.float32)
        return CandidateSet(pair_users, rows, items, matrix, names)

    def _vectors(self, summary: F.HistorySummary) -> sp.csr_matrix:
        if self._vector_cache[0] is not summary:
            self._vector_cache = (summary, C.user_vectors(summary, decay_index=1 if len(summary.decays) > 1 else 0))
        return self._vector_cache[1]

    def _cooccurrence(self, summary: F.HistorySummary) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        if self._cooc_cache[0] is not summary:
            self._cooc_cache = (summary, C.cooccurrence(summary))
        return self._cooc_cache[1]

    def _summarize(self, history: Interactions) -> F.HistorySummary:
        return F.summarize(history, self.config.decays, self.config.trend_fraction)

    def _all_candidates(self, history: Interactions, summary: F.HistorySummary, users: np.ndarray) -> CandidateSet:
        """`candidates` in batches of `batch_users` users; `rows` index into `users`."""
        step = self.config.batch_users
        batches = [self.candidates(history, summary, users[i : i + step]) for i in range(0, len(users), step)]
        if len(batches) == 1:
            return batches[0]
        return CandidateSet(
            np.concatenate([b.users for b in batches]),
            np.concatenate([b.rows + i * step for i, b in enumerate(batches)]),
            np.concatenate([b.items for b in batches]),
            np.concatenate([b.features for b in batches]),
            batches[0].names,
        )

    # ----------------------------------------------------------------------------------------
    # training set: features before each held-out basket, labels from it
    # ----------------------------------------------------------------------------------------

    def training_set(self, history: Interactions) -> TrainingSet:
        """Lists for cut-offs j = 1..label_baskets: features from each user's baskets before
        basket n_u - j (retrievers refitted on exactly that), labels from basket n_u - j. Lists
        without a positive candidate teach nothing and are left out."""
        c = self.config
        n_baskets = np.array([len(b) for b in history.baskets])
        value = F.item_value(self.catalog, history.n_items)
        value = value / max(float(np.abs(value).mean()), 1e-12) if value is not None else None
        parts = []
        group_offset = 0
        for j in range(1, c.label_baskets + 1):
            users = np.flatnonzero(n_baskets - j >= c.min_history)
            if len(users) == 0:
                break
            before = history.truncate(np.maximum(n_baskets - j, 0))
            self._fit_retrievers(before)
            cands = self._all_candidates(before, self._summarize(before), users)
            # labels: is the candidate in the user's basket n_u - j
            label_keys = np.unique(np.concatenate([u * history.n_items + history.baskets[u][n_baskets[u] - j] for u in users]))
            pair_keys = cands.users * history.n_items + cands.items
            pos = np.minimum(np.searchsorted(label_keys, pair_keys), len(label_keys) - 1)
            labels = (label_keys[pos] == pair_keys).astype(np.float32)
            has_positive = np.bincount(cands.rows, weights=labels, minlength=len(users)) > 0
            keep = has_positive[cands.rows]
            weights = np.ones(len(labels), np.float32)
            if value is not None and c.ranker.value_weight > 0:
                weights = (1.0 + c.ranker.value_weight * np.maximum(value[cands.items], 0.0)).astype(np.float32)
            parts.append(
                (
                    cands.features[keep],
                    labels[keep],
                    cands.rows[keep] + group_offset,
                    weights[keep],
                    cands.users[keep],
                    cands.items[keep],
                    np.full(keep.sum(), j),
                    cands.names,
                )
            )
            group_offset += len(users)
        if not parts:
            raise ValueError("no user has enough baskets to hold one out as a training label; lower min_history or pass more history")
        _, inverse = np.unique(np.concatenate([p[2] for p in parts]), return_inverse=True)
        return TrainingSet(
            features=np.concatenate([p[0] for p in parts]),
            labels=np.concatenate([p[1] for p in parts]),
            groups=inverse,
            weights=np.concatenate([p[3] for p in parts]),
            users=np.concatenate([p[4] for p in parts]),
            items=np.concatenate([p[5] for p in parts]),
            cutoff=np.concatenate([p[6] for p in parts]),
            names=parts[0][7],
        )

    # ----------------------------------------------------------------------------------------
    # Recommender
    # ----------------------------------------------------------------------------------------

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        train = self.training_set(data)
        if not len(train.labels):
            raise ValueError("no held-out basket has an item among its candidates: nothing to train the ranker on")
        self.feature_names = train.names
        self.ranker = Ranker(len(train.names), self.config.ranker).fit(train.features, train.labels, train.groups, train.weights)
        self._fit_retrievers(data)
        self.history = data
        self.summary = self._summarize(data)

    def score(self, users: np.ndarray) -> np.ndarray:
        if self.ranker is None:
            raise RuntimeError("Pipeline must be fitted before it scores")
        users = np.asarray(users, np.int64)
        out = np.full((len(users), self.history.n_items), NOT_A_CANDIDATE, dtype=np.float32)
        cands = self._all_candidates(self.history, self.summary, users)
        scores = self.ranker.predict(cands.features)
        if self.config.explore_bonus:
            scores = scores + self.config.explore_bonus * cands.features[:, cands.names.index("new_to_user")]
        out[cands.rows, cands.items] = scores
        return out
