"""The business policy between the ranker's scores and the list a shopper sees.

In order: business weights (margin) adjust the scores; items shown `frequency_cap` times without
a click are held back (used only if nothing else is left); MMR picks the list greedily, trading
relevance against similarity to what is already picked (by category or item embedding), with an
optional per-category cap; every item gets a short reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.retrieval import Candidates
from hyperrec.bundle.slate import reserve_explore_slots
from hyperrec.bundle.user_state import UserState
from hyperrec.serve.config import PolicyConfig

RECENT_FOR_REASONS = 20  # "similar to X" looks for X among the user's last this-many items


@dataclass(frozen=True)
class Pick:
    item: int
    score: float
    reason: str


class Policy:
    def __init__(self, config: PolicyConfig, table: ItemTable, item_vectors: np.ndarray):
        self.config = config
        self.table = table
        norms = np.linalg.norm(item_vectors, axis=1, keepdims=True)
        self.unit_vectors = (item_vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        self.margin = np.nan_to_num(table.margin, nan=0.0)

    def select(self, candidates: Candidates, scores: np.ndarray, state: UserState, k: int) -> list[Pick]:
        c = self.config
        items = candidates.items
        adjusted = np.asarray(scores, np.float64) + c.margin_weight * self.margin[items]
        capped = np.zeros(len(items), bool)
        if c.frequency_cap is not None and state.shown:
            capped = np.array([state.shown.get(int(i), 0) >= c.frequency_cap for i in items])
        order = self._mmr(items, adjusted, capped, k)
        if c.explore_slots:
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
        recent = self._recent_items(state)
        return [
            Pick(int(items[i]), float(adjusted[i]), self._reason(int(items[i]), bool(candidates.repeat[i]), state, recent)) for i in order
        ]

    def _mmr(self, items: np.ndarray, scores: np.ndarray, capped: np.ndarray, k: int) -> list[int]:
        """Greedy MMR over candidate positions; capped candidates come only after all others."""
        c = self.config
        span = scores.max() - scores.min() if len(scores) else 0.0
        relevance = (scores - scores.min()) / span if span > 0 else np.zeros(len(scores))
        max_similarity = np.zeros(len(items))
        available = np.ones(len(items), bool)
        per_category: dict[int, int] = {}
        full = np.zeros(len(items), bool)  # candidates whose (known) category reached max_per_category
        categories = self.table.category[items]
        vectors = self.unit_vectors[items] if c.diversity > 0 and c.diversity_by == "embedding" else None
        picked: list[int] = []
        while len(picked) < min(k, len(items)):
            value = (1 - c.diversity) * relevance - c.diversity * max_similarity - 2.0 * capped - 4.0 * full  # full: last resort only
            value[~available] = -np.inf
            best = int(np.argmax(value))
            picked.append(best)
            available[best] = False
            category = int(categories[best])
            per_category[category] = per_category.get(category, 0) + 1
            if c.max_per_category is not None and category > 0 and per_category[category] >= c.max_per_category:
                full |= categories == category
            if vectors is not None:
                max_similarity = np.maximum(max_similarity, vectors @ vectors[best])
            elif c.diversity > 0:
                max_similarity = np.maximum(max_similarity, ((categories == category) & (categories > 0)).astype(np.float64))
        return picked

    @staticmethod
    def _recent_items(state: UserState) -> np.ndarray:
        if not state.baskets:
            return np.empty(0, np.int64)
        recent = np.concatenate(state.baskets)[::-1]
        _, first = np.unique(recent, return_index=True)
        return recent[np.sort(first)][:RECENT_FOR_REASONS]

    def _reason(self, item: int, repeat: bool, state: UserState, recent: np.ndarray) -> str:
        if repeat:
            times = sum(int(item in basket) for basket in state.baskets)
            return "you buy this often" if times >= 2 else "you bought this before"
        if len(recent):
            anchor = recent[int(np.argmax(self.unit_vectors[recent] @ self.unit_vectors[item]))]
            return f"similar to {self.table.item_ids[anchor]}"
        return "popular right now"


def popular_picks(table: ItemTable, popular_in_stock: np.ndarray, blocked: np.ndarray, k: int) -> list[Pick]:
    """The non-personalized answer: the most popular items in stock that are not `blocked` (item indices)."""
    head = popular_in_stock[: k + len(blocked)]
    chosen = head[~np.isin(head, blocked)][:k]
    return [Pick(int(i), float(table.popularity[i]), "popular right now") for i in chosen]
