"""The business policy between the ranker's scores and the list a shopper sees.

In order: business weights (margin) and the placement's own affinity (bought with the page's items,
the search match) adjust the scores; items shown `frequency_cap` times without a click are held back
(used only if nothing else is left); MMR picks the list greedily, trading relevance against
similarity to what is already picked (by category or item embedding), with an optional per-category
cap; every item gets a short reason and the candidate sources that brought it. With `explore_slots`,
one place goes to a candidate new to the shopper: the best one (`explore.kind: best`), or the
exploration slot's draw (bandit.py) with its probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.placements import BOUGHT_WITH, POPULARITY, SEARCH, SIMILAR, source_names
from hyperrec.bundle.retrieval import Candidates, unit_rows
from hyperrec.bundle.slate import reserve_explore_slots
from hyperrec.bundle.user_state import UserState
from hyperrec.serve.bandit import Explorer, slot_features
from hyperrec.serve.config import PolicyConfig

RECENT_FOR_REASONS = 20  # "similar to X" looks for X among the user's last this-many items
SIMILARITY_PAIRS = 20_000  # random item pairs whose cosines set the bar for "similar to X"


def pair_cosine_quantile(unit_vectors: np.ndarray, quantile: float, pairs: int = SIMILARITY_PAIRS) -> float:
    """The `quantile` of the cosine between two distinct items: every pair of a small catalogue, else `pairs` random
    ones (seeded, so the same catalogue gives the same bar). +inf with fewer than two items."""
    n = len(unit_vectors)
    if n < 2:
        return float("inf")
    if n * (n - 1) // 2 <= pairs:
        first, second = np.triu_indices(n, k=1)
    else:
        rng = np.random.default_rng(0)
        first = rng.integers(0, n, pairs)
        second = (first + rng.integers(1, n, pairs)) % n  # never the same item
    return float(np.quantile(np.einsum("ij,ij->i", unit_vectors[first], unit_vectors[second]), quantile))


@dataclass(frozen=True)
class SlotDraw:
    """The exploration slot's decision: its pool (item indices, best first), their features and probabilities."""

    position: int
    pool: np.ndarray
    features: np.ndarray
    probabilities: np.ndarray
    chosen: int  # position in the pool

    @property
    def propensity(self) -> float:
        return float(self.probabilities[self.chosen])


@dataclass(frozen=True)
class Pick:
    item: int
    score: float
    reason: str
    sources: tuple[str, ...] = ("popularity",)
    slot: SlotDraw | None = None  # the exploration slot's pick: how it was drawn


class Policy:
    def __init__(self, config: PolicyConfig, table: ItemTable, item_vectors: np.ndarray, explorer: Explorer | None = None):
        self.config = config
        self.table = table
        self.unit_vectors = unit_rows(item_vectors)
        self.similar_cosine = pair_cosine_quantile(self.unit_vectors, config.similar_quantile)
        self.margin = np.nan_to_num(table.margin, nan=0.0)
        self.explorer = explorer if explorer is not None else Explorer(config.explore)
        self.log_popularity = np.log1p(table.popularity) / np.log1p(max(float(table.popularity.max(initial=0.0)), 1.0))
        self.price = np.nan_to_num(table.price, nan=1.0)

    def select(self, candidates: Candidates, scores: np.ndarray, state: UserState, k: int) -> list[Pick]:
        c = self.config
        items = candidates.items
        adjusted = np.asarray(scores, np.float64) + c.margin_weight * self.margin[items] + c.placement_weight * candidates.affinity
        capped = np.zeros(len(items), bool)
        if c.frequency_cap is not None and state.shown:
            held = [item for item, times in state.shown.items() if times >= c.frequency_cap]  # the user's impressions, not the history
            capped = np.isin(items, np.array(held, np.int64))
        order = self._mmr(items, adjusted, capped, k)
        draw = None
        if c.explore_slots and c.explore.kind != "best":
            order, draw = self._draw_slot(order, adjusted, candidates, capped, state, k)
        elif c.explore_slots:
            picked = set(order)
            rest = [int(i) for i in np.lexsort((-adjusted, capped)) if i not in picked]  # uncapped first, best first
            explorable = ~candidates.repeat & ~capped
            if c.max_per_category is not None:  # a promoted item must not take its category over the cap
                categories = self.table.category[items]
                room = {int(g): c.max_per_category - int(n) for g, n in zip(*np.unique(categories[order], return_counts=True))}
                for i in rest:
                    category = int(categories[i])
                    if explorable[i] and category > 0:
                        explorable[i] = room.get(category, c.max_per_category) > 0
                        room[category] = room.get(category, c.max_per_category) - 1
            order = list(reserve_explore_slots(np.array(order + rest), explorable, c.explore_slots, k)[:k])
        reasons = self._reasons(items[order], candidates.repeat[order], candidates.sources[order], candidates.via[order], state)
        picks = [
            Pick(int(items[i]), float(adjusted[i]), reason, tuple(source_names(int(candidates.sources[i]))))
            for i, reason in zip(order, reasons, strict=True)
        ]
        if draw is not None:
            slot = picks[draw.position]
            picks[draw.position] = Pick(slot.item, slot.score, slot.reason, slot.sources, draw)
        return picks

    def _draw_slot(
        self, order: list[int], adjusted: np.ndarray, candidates: Candidates, capped: np.ndarray, state: UserState, k: int
    ) -> tuple[list[int], SlotDraw | None]:
        """The list's first k - 1 picks, with the exploration slot's draw from the best `explore.pool` candidates new to the
        shopper (not capped, not in the list, not over a category cap) put at `explore.position` (default: the last place)."""
        c = self.config
        head = order[: k - 1]
        new = ~candidates.repeat & ~capped
        new[head] = False
        categories = self.table.category[candidates.items]
        if c.max_per_category is not None:
            known, counts = np.unique(categories[head], return_counts=True)
            full = known[(counts >= c.max_per_category) & (known > 0)]
            new &= ~np.isin(categories, full)
        ranked = np.lexsort((np.arange(len(adjusted)), -adjusted))
        pool = ranked[new[ranked]][: c.explore.pool]
        if not len(pool):  # nothing new to offer: the list stands as the MMR picked it
            return order, None
        items = candidates.items[pool]
        recent = self._recent_items(state)
        similarity = (self.unit_vectors[items] @ self.unit_vectors[recent].T).max(axis=1) if len(recent) else np.zeros(len(pool))
        history = state.history().flat
        bought = self.table.category[history]
        share = np.array([np.count_nonzero(bought == g) / len(history) if g > 0 and len(history) else 0.0 for g in categories[pool]])
        features = slot_features(adjusted, pool, self.log_popularity[items], self.margin[items], self.price[items], similarity, share)
        choice = self.explorer.choose(features)
        position = min(len(head), k - 1 if c.explore.position is None else c.explore.position)
        order = [*head[:position], int(pool[choice.index]), *head[position:]]
        return order, SlotDraw(position, items, features, choice.probabilities, choice.index)

    def _mmr(self, items: np.ndarray, scores: np.ndarray, capped: np.ndarray, k: int) -> list[int]:
        """Greedy MMR over candidate positions; capped candidates come only after all others. Each step's value is
        ((1 - d) relevance - d max_similarity - 2 capped) - 4 full, in that order (a term that is all zeros is left out:
        x - 0 is x), so the same floats, and the same picks on near ties, with half the array operations."""
        c = self.config
        span = scores.max() - scores.min() if len(scores) else 0.0
        relevance = (scores - scores.min()) / span if span > 0 else np.zeros(len(scores))
        base = (1 - c.diversity) * relevance
        cap_penalty = 2.0 * capped if capped.any() else None
        max_similarity = np.zeros(len(items))
        per_category: dict[int, int] = {}
        full = np.zeros(len(items), bool)  # candidates whose (known) category reached max_per_category
        categories = self.table.category[items]
        vectors = self.unit_vectors[items] if c.diversity > 0 and c.diversity_by == "embedding" else None
        picked: list[int] = []
        while len(picked) < min(k, len(items)):
            value = base - c.diversity * max_similarity
            if cap_penalty is not None:
                value -= cap_penalty
            if c.max_per_category is not None and full.any():
                value -= 4.0 * full  # full: last resort only
            value[picked] = -np.inf
            best = int(np.argmax(value))
            picked.append(best)
            category = int(categories[best])
            per_category[category] = per_category.get(category, 0) + 1
            if c.max_per_category is not None and category > 0 and per_category[category] >= c.max_per_category:
                full |= categories == category
            if vectors is not None:
                np.maximum(max_similarity, vectors @ vectors[best], out=max_similarity)
            elif c.diversity > 0:
                np.maximum(max_similarity, (categories == category) & (categories > 0), out=max_similarity)
        return picked

    @staticmethod
    def _recent_items(state: UserState) -> np.ndarray:
        """The user's last RECENT_FOR_REASONS distinct items, most recent first: what they are looking at now (viewed,
        clicked or carted since their last purchase), then what they bought."""
        recent = np.concatenate([state.history().flat, state.live_items()])[::-1]
        _, first = np.unique(recent, return_index=True)
        return recent[np.sort(first)][:RECENT_FOR_REASONS]

    def _reasons(self, items: np.ndarray, repeat: np.ndarray, sources: np.ndarray, via: np.ndarray, state: UserState) -> list[str]:
        """Why each of `items` is in the list: bought in two baskets or more, bought once, bought with or like the page's
        item, a match of the search, like a recent item (when the embedding puts it close: `similar_cosine`), popular, or
        else picked by the encoder from the shopper's history as a whole."""
        history = state.history()
        at, hit = history.lookup(items)
        baskets = np.where(hit, history.baskets[at] if len(history.items) else 0, 0)
        recent = self._recent_items(state)
        explained = ~repeat & ((sources & (BOUGHT_WITH | SIMILAR | SEARCH)) == 0)  # those a recent item may explain
        anchors: dict[int, int] = {}  # item -> the recent item it is similar to
        if len(recent):
            vectors = self.unit_vectors[recent]
            # one product per explained item, as vectors @ item: the same float32 sums, so the same argmax on near ties
            for i in items[explained]:
                cosines = vectors @ self.unit_vectors[i]
                best = int(np.argmax(cosines))
                if cosines[best] >= self.similar_cosine:
                    anchors[int(i)] = recent[best]
        ids = self.table.item_ids
        reasons = []
        for item, bought, times, bits, page_item in zip(items.tolist(), repeat.tolist(), baskets.tolist(), sources.tolist(), via.tolist()):
            if bought:
                reasons.append("you buy this often" if times >= 2 else "you bought this before")
            elif bits & BOUGHT_WITH:
                reasons.append(f"bought with {ids[page_item]}")
            elif bits & SIMILAR:
                reasons.append(f"like {ids[page_item]}")
            elif bits & SEARCH:
                reasons.append("matches your search")
            elif item in anchors:
                reasons.append(f"similar to {ids[anchors[item]]}")
            elif len(recent) and not bits & POPULARITY:
                reasons.append("picked for you")
            else:
                reasons.append("popular right now")
        return reasons


def popular_picks(table: ItemTable, ranked: np.ndarray, blocked: np.ndarray, k: int, reason: str = "popular right now") -> list[Pick]:
    """The non-personalized answer: the first `k` of `ranked` (item indices in stock, most popular first: the global list
    or a cohort's) that are not `blocked`."""
    head = ranked[: k + len(blocked)]
    chosen = head[~np.isin(head, blocked)][:k]
    return [Pick(int(i), float(table.popularity[i]), reason) for i in chosen]
