"""The served recommender, without the HTTP around it: encode the user, retrieve, rank.

    user state + context -> encoder (ONNX) -> user vector -> FAISS top-N over item vectors
      + the user's repeat items (most bought, then most recent) + the most popular items
      - items out of stock or excluded -> features (features.py) -> ranker (ONNX) -> scores

That is the home placement; the others (placements.py) draw from other sources as well (items bought
with the page's items, the page item's neighbours, title matches), ranked by the same features and ranker.

Used three ways with the same code: by export, to train the ranker on the candidates retrieval
really hands it and to evaluate the bundle offline; by the Ray Serve deployments, one stage each;
and in process by the load benchmark, as the baseline the HTTP path is compared with.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from pydantic import Field

from hyperrec.bundle.bought_together import BoughtTogether, Related
from hyperrec.bundle.features import FEATURE_NAMES, ItemColumns, ItemTable, candidate_features
from hyperrec.bundle.onnx_models import Encoder
from hyperrec.bundle.placements import ANN, BOUGHT_WITH, HOME, POPULARITY, REPEAT, SEARCH, SIMILAR, Placement, Pool, scaled
from hyperrec.bundle.title_search import TitleSearch
from hyperrec.bundle.user_state import UserState
from hyperrec.config import StrictModel
from hyperrec.data.basket_examples import hour_and_weekday
from hyperrec.models.item_index import IndexKind, build_index

LOG_PRICE = FEATURE_NAMES.index("log_price")
DISCOVER_SEEDS = 20  # the shopper's own items whose bought-together rows the discover placement draws on
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
    live_intent: bool = Field(
        True,
        description="the encoder reads the live intent (items viewed, clicked or carted since the last purchase) after the "
        "purchases; false: the purchases only, as the model was trained",
    )


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32; an all-zero row stays zero): cosine similarity as a dot product."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


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
    sources: np.ndarray | None = None  # uint8 bits of placements.SOURCES: what brought each item (None: none said)
    affinity: np.ndarray | None = None  # the placement's own 0..1 score of each item (0 on home; None: all 0)
    via: np.ndarray | None = None  # the page item (product page's, cart's) each came through, -1 if none
    note: str | None = None  # what the placement could not do (a search with no match), said in the answer
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # version -> its ranker's scores of these, once scored

    def __post_init__(self) -> None:
        n = len(self.items)
        self.sources = np.zeros(n, np.uint8) if self.sources is None else self.sources
        self.affinity = np.zeros(n) if self.affinity is None else self.affinity
        self.via = np.full(n, -1, np.int64) if self.via is None else self.via

    def take(self, keep: np.ndarray) -> Candidates:
        """The candidates where `keep` (bool) holds."""
        return Candidates(
            self.items[keep],
            self.ann_score[keep],
            self.repeat[keep],
            self.features[keep],
            self.stage_ms,
            self.sources[keep],
            self.affinity[keep],
            self.via[keep],
            self.note,
        )


class Retrieval:
    """Per request, only work in the size of the candidates: everything that depends on the
    catalogue size (stock mask, popular order, the index) is prepared once here."""

    def __init__(
        self,
        encoder: Encoder,
        item_vectors: np.ndarray,
        table: ItemTable,
        config: RetrievalConfig | None = None,
        index=None,
        bought_together: BoughtTogether | None = None,
    ):
        self.encoder = encoder
        self.bought_together = bought_together  # None: a version exported before it was kept (no "bought with")
        self.item_vectors = np.ascontiguousarray(item_vectors, np.float32)
        self.table = table
        self.config = config or RetrievalConfig()
        self.columns = ItemColumns(table)
        self.unavailable = ~table.in_stock  # out of stock in the catalogue
        self.popular_in_stock = table.popular_in_stock()
        c = self.config
        self.index = index if index is not None else build_index(self.item_vectors, c.ann_threshold, kind=c.index, use_gpu=c.use_gpu)
        self.title_search = TitleSearch(table.title)
        self.unit_vectors = unit_rows(self.item_vectors)  # "like" the product page's item

    @property
    def window(self) -> int:
        """Items the encoder reads per user."""
        return min(self.encoder.max_len, self.config.encoder_len or self.encoder.max_len)

    def user_vectors(self, states: list[UserState], context: dict[str, np.ndarray]) -> np.ndarray:
        window, live = self.window, self.config.live_intent
        if self.encoder.behaviour:
            sequences = np.stack([s.behaviour_sequence(window) for s in states]) if states else np.zeros((0, 3, window), np.int64)
        else:
            sequences = np.stack([s.sequence(window, live) for s in states]) if states else np.zeros((0, window), np.int64)
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
        placements: list[Placement] | None = None,
    ) -> list[Candidates]:
        """Candidates of each user. `blocked`: item indices nobody may get now (out of stock by
        events), on top of the table's own stock flags; `prices`: current prices set by events;
        `placements`: each user's (None: home for all)."""
        c = self.config
        blocked = np.asarray(blocked if blocked is not None else [], np.int64)
        placements = placements or [HOME] * len(states)
        started = time.perf_counter()
        vectors = self.user_vectors(states, context)
        encoded = time.perf_counter()
        own_room = max((len(s.item_counts()[0]) for s, p in zip(states, placements) if p.page == "discover"), default=0)
        ann_k = min(len(self.table), 2 * c.ann_top_n + own_room)  # head room for blocked items (and, discover, the user's own)
        _, ann = self.index.search(vectors, ann_k) if len(states) else (None, np.zeros((0, ann_k), np.int64))
        searched = time.perf_counter()
        popular = self.available(self.popular_in_stock[: c.popular_top_n + len(blocked)], blocked)[: c.popular_top_n]
        priced = np.fromiter(prices, np.int64, len(prices)) if prices else np.empty(0, np.int64)
        out = []
        for row, (state, placement) in enumerate(zip(states, placements)):
            begun = time.perf_counter()
            pool, note = self._pool(state, placement, ann[row][ann[row] >= 0], popular, blocked)
            items, sources, affinity, via = pool.gather()
            score = self.item_vectors[items] @ vectors[row]
            found = pool.ann  # the ANN's items among the candidates, in its order
            features = candidate_features(state, items, score, ann_ranks(found, items), self.table, self.columns)
            for position in np.flatnonzero(np.isin(items, priced)):
                features[position, LOG_PRICE] = np.log1p(prices[int(items[position])])
            stage_ms = {"encoder": encoded - started, "ann": searched - encoded, "features": time.perf_counter() - begun}
            bought = state.item_counts()[0]
            ms = {k: 1000 * v for k, v in stage_ms.items()}
            out.append(Candidates(items, score, np.isin(items, bought), features, ms, sources, affinity, via, note))
        return out

    def _pool(
        self, state: UserState, placement: Placement, ann: np.ndarray, popular: np.ndarray, blocked: np.ndarray
    ) -> tuple[Pool, str | None]:
        """The placement's candidate sources for one user (see placements.py), and what it could not do."""
        c, pool, page = self.config, Pool(), placement.page
        if page == "search":
            found, bm25 = self.title_search.search(placement.query, 2 * c.ann_top_n)
            keep = ~self.unavailable[found] & ~np.isin(found, blocked)
            if keep.any():
                pool.add(found[keep][: c.ann_top_n], SEARCH, scaled(bm25[keep][: c.ann_top_n]))
                return pool, None
            page = "home"
            why = "no title in the catalogue matches the query" if self.title_search.n_titled else "the catalogue has no titles"
            note = f"search: {why}; the home list"
        else:
            note = None
        if page == "product":
            anchor = np.array([placement.anchor], np.int64)
            blocked = np.concatenate([blocked, anchor])  # not the item the page shows
            self._add_related(pool, anchor, blocked)
            _, like = self.index.search(self.item_vectors[anchor], min(len(self.table), c.ann_top_n + len(blocked) + 1))
            like = self.available(like[0][like[0] >= 0], blocked)[: c.ann_top_n // 2]
            similarity = np.clip(self.unit_vectors[like] @ self.unit_vectors[placement.anchor], 0.0, 1.0)
            pool.add(like, SIMILAR, similarity, np.full(len(like), placement.anchor))
            return pool, note
        bought, counts, ago = state.item_counts()
        if page == "discover":  # nothing the shopper bought or is looking at now
            blocked = np.concatenate([blocked, bought, state.live_items()])
        pool.ann = self.available(ann, blocked)[: c.ann_top_n]
        pool.add(pool.ann, ANN)
        pool.add(self.available(popular, blocked), POPULARITY)
        if page == "discover":  # items bought with what they buy most and lately: new to them, close to their baskets
            self._add_related(pool, np.r_[bought[np.lexsort((ago, -counts))][:DISCOVER_SEEDS], state.live_items()], blocked)
        else:
            pool.add(self.available(bought[np.lexsort((ago, -counts))][: c.repeat_top_n], blocked), REPEAT)
        if page == "cart" and state.cart:
            cart = np.fromiter(state.cart, np.int64, len(state.cart))
            self._add_related(pool, cart, np.concatenate([blocked, cart]))
        return pool, note

    def _add_related(self, pool: Pool, seeds: np.ndarray, blocked: np.ndarray) -> None:
        related = self.bought_together.of(seeds) if self.bought_together is not None else Related.empty()
        keep = ~self.unavailable[related.items] & ~np.isin(related.items, blocked)
        top = np.flatnonzero(keep)[: self.config.ann_top_n]
        pool.add(related.items[top], BOUGHT_WITH, scaled(related.weight[top]), related.via[top])


def ann_ranks(found: np.ndarray, items: np.ndarray) -> np.ndarray:
    """For each of `items`: its rank in `found` (distinct items, best first), -1 if not there."""
    order = np.argsort(found, kind="stable")
    at = np.minimum(np.searchsorted(found[order], items), max(len(found) - 1, 0))
    hit = found[order][at] == items if len(found) else np.zeros(len(items), bool)
    return np.where(hit, order[at] if len(found) else 0, -1).astype(np.float64)
