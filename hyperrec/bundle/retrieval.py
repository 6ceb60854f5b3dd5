"""The served recommender, without the HTTP around it: encode the user, retrieve, rank.

    user state + context -> encoder (ONNX) -> user vector -> FAISS top-N over item vectors
      + the user's repeat items (most bought, then most recent) + the most popular items
      - items out of stock or excluded -> features (features.py) -> ranker (ONNX) -> scores

Used three ways with the same code: by export, to train the ranker on the candidates retrieval
really hands it and to evaluate the bundle offline; by the Ray Serve deployments, one stage each;
and in process by the load benchmark, as the baseline the HTTP path is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from hyperrec.bundle.features import FEATURE_NAMES, ItemColumns, ItemTable, candidate_features
from hyperrec.bundle.onnx_models import Encoder
from hyperrec.bundle.user_state import UserState
from hyperrec.config import StrictModel
from hyperrec.data.basket_examples import hour_and_weekday
from hyperrec.models.item_index import IndexKind, build_index

LOG_PRICE = FEATURE_NAMES.index("log_price")
DEVICE_CODES = {"web": 1, "ios": 2, "android": 3}  # 0 = unknown or other, as the two-tower model learned them


class RetrievalConfig(StrictModel):
    ann_top_n: int = Field(100, ge=1, description="candidates from the ANN index")
    repeat_top_n: int = Field(50, ge=0, description="the user's own items (most bought, then most recent)")
    popular_top_n: int = Field(20, ge=0, description="most popular items added to every user's candidates")
    index: IndexKind = "auto"
    ann_threshold: int = Field(100_000, ge=1, description="`auto` index: exact below this many items, HNSW above")
    use_gpu: bool = Field(True, description="FAISS index on the GPU when this FAISS build sees one (faiss-gpu); HNSW stays on the CPU")
    encoder_len: int | None = Field(
        50,
        ge=1,
        description="served window: the encoder reads the user's last this-many items (null: the model's max_len). Chosen by "
        "benchmarks/encoder_window.py on the Instacart SASRec (max_len 200): recall@10 of the served path the same at 200, 100, 50 "
        "and 20, the encoder 3.6 ms at 200 and 0.3 ms at 50",
    )


def context_arrays(contexts: list[dict], times: np.ndarray) -> dict[str, np.ndarray]:
    """Encoder context inputs of a batch: device code, hour of day and weekday (UTC) of `times` (epoch seconds)."""
    hour, weekday = hour_and_weekday(times)
    device = np.array([DEVICE_CODES.get(str(c.get("device")), 0) for c in contexts], np.int64)
    return {"device": device, "hour": hour, "weekday": weekday}


@dataclass
class Candidates:
    """One user's candidates and their ranking features."""

    items: np.ndarray
    ann_score: np.ndarray
    repeat: np.ndarray  # bool: the user bought it before (any of their kept baskets)
    features: np.ndarray
    stage_ms: dict[str, float] = field(default_factory=dict)  # encoder, ann, features: how long retrieval took for them


class Retrieval:
    """Per request, only work in the size of the candidates: everything that depends on the
    catalogue size (stock mask, popular order, the index) is prepared once here."""

    def __init__(self, encoder: Encoder, item_vectors: np.ndarray, table: ItemTable, config: RetrievalConfig | None = None, index=None):
        self.encoder = encoder
        self.item_vectors = np.ascontiguousarray(item_vectors, np.float32)
        self.table = table
        self.config = config or RetrievalConfig()
        self.columns = ItemColumns(table)
        self.unavailable = ~table.in_stock  # out of stock in the catalogue
        self.popular_in_stock = table.popular_in_stock()
        c = self.config
        self.index = index if index is not None else build_index(self.item_vectors, c.ann_threshold, kind=c.index, use_gpu=c.use_gpu)

    @property
    def window(self) -> int:
        """Items the encoder reads per user."""
        return min(self.encoder.max_len, self.config.encoder_len or self.encoder.max_len)

    def user_vectors(self, states: list[UserState], context: dict[str, np.ndarray]) -> np.ndarray:
        window = self.window
        sequences = np.stack([s.sequence(window) for s in states]) if states else np.zeros((0, window), np.int64)
        return np.ascontiguousarray(self.encoder(sequences, context), np.float32)

    def available(self, items: np.ndarray, blocked: np.ndarray) -> np.ndarray:
        """`items` that are in stock and not blocked, in their order."""
        keep = ~self.unavailable[items]
        if len(blocked):
            keep &= ~np.isin(items, blocked)
        return items[keep]

    def candidates(
        self,
        states: list[UserState],
        context: dict[str, np.ndarray],
        blocked: np.ndarray | None = None,
        prices: dict[int, float] | None = None,
    ) -> list[Candidates]:
        """Candidates of each user. `blocked`: item indices nobody may get now (out of stock by
        events), on top of the table's own stock flags; `prices`: current prices set by events."""
        c = self.config
        blocked = np.asarray(blocked if blocked is not None else [], np.int64)
        started = time.perf_counter()
        vectors = self.user_vectors(states, context)
        encoded = time.perf_counter()
        ann_k = min(len(self.table), 2 * c.ann_top_n)  # head room for blocked items
        _, ann = self.index.search(vectors, ann_k) if len(states) else (None, np.zeros((0, ann_k), np.int64))
        searched = time.perf_counter()
        popular = self.available(self.popular_in_stock[: c.popular_top_n + len(blocked)], blocked)[: c.popular_top_n]
        priced = np.fromiter(prices, np.int64, len(prices)) if prices else np.empty(0, np.int64)
        out = []
        for row, state in enumerate(states):
            begun = time.perf_counter()
            found = self.available(ann[row][ann[row] >= 0], blocked)[: c.ann_top_n]
            bought, counts, ago = state.item_counts()
            own = bought[np.lexsort((ago, -counts))][: c.repeat_top_n]
            items = np.unique(np.concatenate([found, self.available(own, blocked), popular]))
            score = self.item_vectors[items] @ vectors[row]
            features = candidate_features(state, items, score, ann_ranks(found, items), self.table, self.columns)
            for position in np.flatnonzero(np.isin(items, priced)):
                features[position, LOG_PRICE] = np.log1p(prices[int(items[position])])
            stage_ms = {"encoder": encoded - started, "ann": searched - encoded, "features": time.perf_counter() - begun}
            out.append(Candidates(items, score, np.isin(items, bought), features, {k: 1000 * v for k, v in stage_ms.items()}))
        return out


def ann_ranks(found: np.ndarray, items: np.ndarray) -> np.ndarray:
    """For each of `items`: its rank in `found` (distinct items, best first), -1 if not there."""
    order = np.argsort(found, kind="stable")
    at = np.minimum(np.searchsorted(found[order], items), max(len(found) - 1, 0))
    hit = found[order][at] == items if len(found) else np.zeros(len(items), bool)
    return np.where(hit, order[at] if len(found) else 0, -1).astype(np.float64)
