"""The vectorized request path gives exactly the answers of the per-item code it replaced.

REFERENCE below is a copy of the functions as they were before the request path was
vectorized (renamed ref_*, bodies unchanged: UserState counts, decayed counts and sequence; candidate_features; the
Retrieval.candidates loop; Policy.select with its per-basket `_reason`). The tests run both on
many requests over the exported tiny version and on hand-made long histories, and compare
items, ANN scores, repeat flags, features, scores and reasons for equality, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest

from hyperrec.bundle.features import FEATURE_NAMES, ItemColumns, ItemTable, candidate_features
from hyperrec.bundle.placements import POPULARITY
from hyperrec.bundle.retrieval import Candidates, Retrieval, RetrievalConfig, context_arrays
from hyperrec.bundle.slate import reserve_explore_slots
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.data.windows import pad_left
from hyperrec.serve.config import PolicyConfig
from hyperrec.serve.policy import RECENT_FOR_REASONS, Pick, Policy

# ---- REFERENCE: the code before vectorization, kept unchanged to compare with -----------------


def ref_flat(state: UserState) -> tuple[np.ndarray, np.ndarray]:
    items = np.concatenate(state.baskets)
    age = np.concatenate([np.full(len(b), state.n_baskets - 1 - i) for i, b in enumerate(state.baskets)])
    return items, age


def ref_item_counts(state: UserState) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not state.baskets:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    items, age = ref_flat(state)
    unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
    last = np.full(len(unique), np.iinfo(np.int64).max)
    np.minimum.at(last, inverse, age)
    return unique, counts, last


def ref_decayed_counts(state: UserState, items: np.ndarray, decay: float) -> np.ndarray:
    out = np.zeros(len(items))
    if not state.baskets or not len(items):
        return out
    bought, age = ref_flat(state)
    order = np.argsort(items)
    at = np.minimum(np.searchsorted(items[order], bought), len(items) - 1)
    hit = items[order][at] == bought
    np.add.at(out, order[at[hit]], decay ** age[hit].astype(np.float64))
    return out


def ref_sequence(state: UserState, max_len: int) -> np.ndarray:
    return pad_left(np.concatenate(state.baskets) + 1 if state.baskets else np.empty(0, np.int64), max_len)


def ref_candidate_features(
    state: UserState, items: np.ndarray, ann_score: np.ndarray, ann_rank: np.ndarray, table: ItemTable, columns: ItemColumns
) -> np.ndarray:
    n = len(items)
    bought, counts, ago = ref_item_counts(state)
    count = np.zeros(n)
    last_ago = np.full(n, np.inf)
    if len(bought):
        at = np.minimum(np.searchsorted(bought, items), len(bought) - 1)
        hit = bought[at] == items
        count[hit] = counts[at[hit]]
        last_ago[hit] = ago[at[hit]]
    n_baskets = max(state.n_baskets, 1)
    category_share = np.zeros(n)
    if len(bought) and columns.has_categories:
        user_categories = np.bincount(table.category[bought], weights=counts, minlength=columns.n_categories)
        user_categories[0] = 0.0
        category_share = user_categories[table.category[items]] / max(counts.sum(), 1)
    columns = (
        ann_score,
        np.where(ann_rank >= 0, 1.0 / (1.0 + np.maximum(ann_rank, 0)), 0.0),
        np.log1p(count),
        count / n_baskets,
        np.where(np.isfinite(last_ago), 1.0 / (1.0 + last_ago), 0.0),
        (last_ago == 0).astype(np.float64),
        ref_decayed_counts(state, items, 0.8),
        ref_decayed_counts(state, items, 0.5),
        columns.log_popularity[items],
        columns.inv_rank[items],
        table.trend[items],
        table.repeat_rate[items],
        np.full(n, np.log1p(state.n_baskets)),
        category_share,
        columns.log_price[items],
        columns.margin[items],
        (count > 0).astype(np.float64),
    )
    return np.stack(columns, axis=1).astype(np.float32)


def ref_candidates(r: Retrieval, states: list[UserState], context: dict, blocked: np.ndarray, prices: dict[int, float]) -> list[Candidates]:
    c = r.config
    sequences = np.stack([ref_sequence(s, r.encoder.max_len) for s in states])
    vectors = np.ascontiguousarray(r.encoder(sequences, context), np.float32)
    ann_k = min(len(r.table), 2 * c.ann_top_n)
    _, ann = r.index.search(vectors, ann_k)
    popular = r.available(r.popular_in_stock[: c.popular_top_n + len(blocked)], blocked)[: c.popular_top_n]
    out = []
    for row, state in enumerate(states):
        found = r.available(ann[row][ann[row] >= 0], blocked)[: c.ann_top_n]
        bought, counts, ago = ref_item_counts(state)
        own = bought[np.lexsort((ago, -counts))][: c.repeat_top_n]
        items = np.unique(np.concatenate([found, r.available(own, blocked), popular]))
        rank_of = {int(item): rank for rank, item in enumerate(found)}
        ann_rank = np.array([rank_of.get(int(i), -1) for i in items], np.float64)
        score = r.item_vectors[items] @ vectors[row]
        features = ref_candidate_features(state, items, score, ann_rank, r.table, r.columns)
        if prices:
            for position, item in enumerate(items):
                if int(item) in prices:
                    features[position, FEATURE_NAMES.index("log_price")] = np.log1p(prices[int(item)])
        out.append(Candidates(items, score, np.isin(items, bought), features))
    return out


class RefPolicy(Policy):
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
            rest = [int(i) for i in np.lexsort((-adjusted, capped)) if i not in picked]
            explorable = ~candidates.repeat & ~capped
            if c.max_per_category is not None:
                categories = self.table.category[items]
                room = {int(g): c.max_per_category - int(n) for g, n in zip(*np.unique(categories[order], return_counts=True))}
                for i in rest:
                    category = int(categories[i])
                    if explorable[i] and category > 0:
                        explorable[i] = room.get(category, c.max_per_category) > 0
                        room[category] = room.get(category, c.max_per_category) - 1
            order = list(reserve_explore_slots(np.array(order + rest), explorable, c.explore_slots, k)[:k])
        recent = self.ref_recent_items(state)
        repeat, popular = candidates.repeat, (candidates.sources & POPULARITY) > 0
        return [
            Pick(int(items[i]), float(adjusted[i]), self.ref_reason(int(items[i]), bool(repeat[i]), bool(popular[i]), state, recent))
            for i in order
        ]

    def _mmr(self, items: np.ndarray, scores: np.ndarray, capped: np.ndarray, k: int) -> list[int]:
        c = self.config
        span = scores.max() - scores.min() if len(scores) else 0.0
        relevance = (scores - scores.min()) / span if span > 0 else np.zeros(len(scores))
        max_similarity = np.zeros(len(items))
        available = np.ones(len(items), bool)
        per_category: dict[int, int] = {}
        full = np.zeros(len(items), bool)
        categories = self.table.category[items]
        vectors = self.unit_vectors[items] if c.diversity > 0 and c.diversity_by == "embedding" else None
        picked: list[int] = []
        while len(picked) < min(k, len(items)):
            value = (1 - c.diversity) * relevance - c.diversity * max_similarity - 2.0 * capped - 4.0 * full
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
    def ref_recent_items(state: UserState) -> np.ndarray:
        if not state.baskets:
            return np.empty(0, np.int64)
        recent = np.concatenate(state.baskets)[::-1]
        _, first = np.unique(recent, return_index=True)
        return recent[np.sort(first)][:RECENT_FOR_REASONS]

    def ref_reason(self, item: int, repeat: bool, popular: bool, state: UserState, recent: np.ndarray) -> str:
        if repeat:
            times = sum(int(item in basket) for basket in state.baskets)
            return "you buy this often" if times >= 2 else "you bought this before"
        if len(recent):
            cosines = self.unit_vectors[recent] @ self.unit_vectors[item]
            if cosines.max() >= self.similar_cosine:
                return f"similar to {self.table.item_ids[recent[int(np.argmax(cosines))]]}"
            if not popular:
                return "picked for you"
        return "popular right now"


# ---- END OF REFERENCE ---------------------------------------------------------------------------

POLICIES = [
    PolicyConfig(),
    PolicyConfig(diversity=0.5, diversity_by="category", max_per_category=2, frequency_cap=2),
    PolicyConfig(diversity=0.0, margin_weight=0.5, explore_slots=2, max_per_category=3, frequency_cap=1),
]


@pytest.fixture(scope="module")
def served(exported):
    from hyperrec.bundle.store import load

    bundle = load(exported.path)
    retrieval = bundle.retrieval(RetrievalConfig(), ModelRuntime())
    return bundle, retrieval, bundle.scorer(ModelRuntime())


def long_histories(n_items: int, rng: np.random.Generator) -> list[UserState]:
    """Hand-made shoppers: up to 100 baskets of ~10 items, heavy repeats, one basket listing an item twice, empty baskets."""
    states = []
    for n_baskets in (1, 3, 40, 100, 100):
        staples = rng.choice(n_items, 8, replace=False)
        baskets = [
            np.unique(np.concatenate([rng.choice(staples, rng.integers(1, 6)), rng.choice(n_items, rng.integers(0, 10))]))
            for _ in range(n_baskets)
        ]
        states.append(UserState(baskets))
    states.append(UserState([np.array([5, 5, 7], np.int64), np.empty(0, np.int64), np.array([5, 9], np.int64)]))
    return states


def shown(state: UserState, rng: np.random.Generator) -> dict[int, int]:
    items = np.unique(np.concatenate(state.baskets)) if state.baskets else np.empty(0, np.int64)
    return {int(i): int(rng.integers(0, 4)) for i in rng.choice(items, min(len(items), 6), replace=False)} | {0: 3, 1: 1}


def assert_same_answers(bundle, retrieval: Retrieval, scorer, states: list[UserState], rng: np.random.Generator) -> int:
    table = bundle.item_table()
    new_policies = [Policy(c, table, bundle.item_vectors) for c in POLICIES]
    ref_policies = [RefPolicy(c, table, bundle.item_vectors) for c in POLICIES]
    compared = 0
    for step, state in enumerate(states):
        context = context_arrays([{"device": ["web", "ios", None][step % 3]}], np.array([1.7e9 + 3600.0 * step]))
        blocked = rng.choice(len(table), 3, replace=False) if step % 2 else np.empty(0, np.int64)
        prices = {int(i): float(rng.uniform(0.5, 20)) for i in rng.choice(len(table), 20, replace=False)} if step % 3 == 0 else {}
        fresh = UserState([b.copy() for b in state.baskets], shown(state, rng))
        old = ref_candidates(retrieval, [UserState(fresh.baskets, fresh.shown)], context, blocked, prices)[0]
        new = retrieval.candidates([fresh], context, blocked, prices)[0]
        np.testing.assert_array_equal(new.items, old.items)
        np.testing.assert_array_equal(new.ann_score, old.ann_score)
        np.testing.assert_array_equal(new.repeat, old.repeat)
        np.testing.assert_array_equal(new.features, old.features)  # bit for bit: the ranker was trained on these
        assert np.all(new.sources > 0)  # every candidate says which source brought it
        old.sources = new.sources  # the reference predates sources; the reasons read whether popularity brought an item
        scores = scorer(new.features)
        for new_policy, ref_policy in zip(new_policies, ref_policies, strict=True):
            for k in (1, 5, 10):
                picked = new_policy.select(new, scores, fresh, k)
                before = ref_policy.select(old, scores, UserState(fresh.baskets, fresh.shown), k)
                assert [(p.item, p.score, p.reason) for p in picked] == [(p.item, p.score, p.reason) for p in before]  # sources are new
                compared += 1
    return compared


def test_vectorized_path_answers_exactly_as_before_on_the_exported_users(served):
    bundle, retrieval, scorer = served
    users = bundle.user_baskets()
    states = [UserState(users[u]) for u in sorted(users)]
    rng = np.random.default_rng(0)
    assert len(states) >= 100
    assert assert_same_answers(bundle, retrieval, scorer, states, rng) == 9 * len(states)


def test_vectorized_path_answers_exactly_as_before_on_long_histories(served):
    bundle, retrieval, scorer = served
    rng = np.random.default_rng(1)
    states = long_histories(len(bundle.item_table()), rng)
    assert max(s.n_baskets for s in states) == 100
    assert assert_same_answers(bundle, retrieval, scorer, states * 3, rng) == 9 * len(states) * 3


def test_user_state_summary_equals_the_reference_on_long_histories():
    rng = np.random.default_rng(2)
    for state in long_histories(300, rng):
        for new, old in zip(state.item_counts(), ref_item_counts(state), strict=True):
            np.testing.assert_array_equal(new, old)
        items = np.arange(300)
        for decay in (0.8, 0.5, 0.3):
            np.testing.assert_array_equal(state.decayed_counts(items, decay), ref_decayed_counts(state, items, decay))
        for max_len in (1, 16, 200):
            np.testing.assert_array_equal(state.sequence(max_len), ref_sequence(state, max_len))
        times = [sum(int(i in basket) for basket in state.baskets) for i in state.history().items]
        assert state.history().baskets.tolist() == times


def test_candidate_features_equal_the_reference_on_a_hand_made_catalogue():
    rng = np.random.default_rng(3)
    n = 300
    table = ItemTable(
        item_ids=np.array([f"i{i}" for i in range(n)]),
        popularity=rng.integers(0, 50, n).astype(np.float64),
        trend=rng.normal(size=n),
        repeat_rate=rng.uniform(size=n),
        category=rng.integers(0, 6, n),
        price=np.where(rng.uniform(size=n) < 0.2, np.nan, rng.uniform(1, 10, n)),
        margin=rng.uniform(0, 0.4, n),
        in_stock=np.ones(n, bool),
    )
    columns = ItemColumns(table)
    for state in long_histories(n, rng):
        items = np.unique(rng.choice(n, 150))
        score, rank = rng.normal(size=len(items)), np.where(rng.uniform(size=len(items)) < 0.5, -1, rng.integers(0, 100, len(items)))
        new = candidate_features(state, items, score, rank.astype(np.float64), table, columns)
        np.testing.assert_array_equal(new, ref_candidate_features(state, items, score, rank.astype(np.float64), table, columns))
