"""The business policy on a hand-made catalogue: margin weight, frequency cap, MMR diversity,
per-category cap, exploration slots and reasons, each with the list it must produce."""

import numpy as np
import pytest

from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.placements import POPULARITY
from hyperrec.bundle.retrieval import Candidates, unit_rows
from hyperrec.bundle.user_state import UserState
from hyperrec.serve.config import PolicyConfig
from hyperrec.serve.policy import Policy, pair_cosine_quantile, popular_picks

# Eight items. The four most relevant are all of category 1; 2 and 3 are the other known
# categories, 0 is unknown. Item vectors: one axis per category, with a little spread inside one.
CATEGORY = np.array([1, 1, 1, 1, 2, 3, 2, 0])
MARGIN = np.array([0.0, 0.1, 0.0, 0.0, 0.3, 0.0, np.nan, 0.0])
SCORES = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3])
VECTORS = np.array(
    [
        [1.0, 0.0, 0.0, 0.0],
        [1.0, 0.0, 0.1, 0.0],
        [1.0, 0.0, 0.1, 0.0],
        [1.0, 0.0, 0.0, 0.1],
        [0.0, 2.0, 0.0, 0.0],
        [0.0, 0.0, 3.0, 0.0],
        [0.1, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ],
    np.float32,
)


def table() -> ItemTable:
    n = len(CATEGORY)
    return ItemTable(
        item_ids=np.array([f"i{i}" for i in range(n)]),
        popularity=np.array([5.0, 9.0, 1.0, 7.0, 3.0, 8.0, 2.0, 6.0]),
        trend=np.zeros(n),
        repeat_rate=np.zeros(n),
        category=CATEGORY,
        price=np.ones(n),
        margin=MARGIN,
        in_stock=np.array([True, True, True, False, True, True, True, True]),
    )


def candidates(repeat=None) -> Candidates:
    n = len(CATEGORY)
    repeat = np.zeros(n, bool) if repeat is None else np.asarray(repeat, bool)
    return Candidates(np.arange(n), SCORES.copy(), repeat, np.zeros((n, len(FEATURE_NAMES)), np.float32))


def select(k: int, state: UserState | None = None, repeat=None, **settings) -> list[int]:
    config = PolicyConfig(**({"diversity": 0.0, "frequency_cap": None} | settings))
    picks = Policy(config, table(), VECTORS).select(candidates(repeat), SCORES, state or UserState(), k)
    return [p.item for p in picks]


def test_no_policy_is_the_relevance_order():
    assert select(8) == list(range(8))
    assert select(3) == [0, 1, 2]


@pytest.mark.parametrize("by", ["category", "embedding"])
def test_diversity_spreads_a_list_whose_relevance_order_is_one_category(by):
    assert select(4, diversity_by=by) == [0, 1, 2, 3]  # diversity 0: relevance only, all category 1
    # 0.8: after item 0 every category-1 item is worth -0.8 + 0.2 * relevance < 0, so the best of
    # each other category comes next (4: category 2, 5: category 3), then the unknown-category 7
    # before 6, which is like 4. By embedding the same: each category is one direction.
    assert select(4, diversity=0.8, diversity_by=by) == [0, 4, 5, 7]
    assert select(8, diversity=0.8, diversity_by=by)[:4] == [0, 4, 5, 7]


def test_a_little_diversity_keeps_relevance_first():
    # 0.05: a category-1 item loses 0.05 for being like item 0 but keeps 0.95 * its relevance (0.86 for item 1),
    # while the best other one (item 4) has 0.95 * 0.43: relevance still wins.
    assert select(3, diversity=0.05, diversity_by="category") == [0, 1, 2]


def test_per_category_cap():
    assert select(5, max_per_category=2) == [0, 1, 4, 5, 6]
    # all eight: once every known category is full, the unknown one (never capped) comes first,
    # then the capped category's items as a last resort, best first
    assert select(8, max_per_category=2) == [0, 1, 4, 5, 6, 7, 2, 3]
    assert select(4, max_per_category=1) == [0, 4, 5, 7]


def test_frequency_cap_holds_back_items_shown_too_often_without_a_click():
    state = UserState(shown={0: 5, 1: 4})
    assert select(3, state) == [0, 1, 2]  # no cap
    assert select(3, state, frequency_cap=5) == [1, 2, 3]  # shown 5 times: held back; 4 times: still in
    assert select(8, state, frequency_cap=5) == [1, 2, 3, 4, 5, 6, 7, 0]  # used only when nothing else is left
    assert select(3, state, frequency_cap=4) == [2, 3, 4]


def test_margin_weight_moves_an_item_up_by_weight_times_margin():
    # item 1 is 0.1 below item 0 and has 0.1 more margin: it passes item 0 exactly when the weight exceeds 1
    assert select(2, margin_weight=0.9) == [0, 1]
    assert select(2, margin_weight=1.1) == [1, 0]
    # item 4 (0.6, margin 0.3) passes items 2 and 3 (0.8, 0.7) at weight 0.9: 0.6 + 0.27 = 0.87
    assert select(8, margin_weight=0.9) == [0, 1, 4, 2, 3, 5, 6, 7]
    config = PolicyConfig(diversity=0.0, frequency_cap=None, margin_weight=1.1)
    picks = Policy(config, table(), VECTORS).select(candidates(), SCORES, UserState(), 8)
    expected = SCORES + 1.1 * np.nan_to_num(MARGIN)  # unknown margin counts as 0
    np.testing.assert_allclose([p.score for p in sorted(picks, key=lambda p: p.item)], expected)


def test_exploration_slots_take_the_best_new_items_into_the_list():
    repeat = [True, True, True, True, False, False, False, False]
    assert select(3, repeat=repeat) == [0, 1, 2]
    assert select(3, repeat=repeat, explore_slots=1) == [0, 1, 4]
    assert select(3, repeat=repeat, explore_slots=2) == [0, 4, 5]
    # a new item shown too often is no exploration candidate
    assert select(3, UserState(shown={4: 5}), repeat=repeat, explore_slots=1, frequency_cap=5) == [0, 1, 5]
    # enough new items already in the list: nothing changes
    assert select(3, repeat=[False] * 8, explore_slots=2) == [0, 1, 2]


def test_exploration_slot_respects_the_per_category_cap():
    # Under max_per_category=1 the list is 0 (category 1), 4 (2), 5 (3), all bought before. The new
    # items are 1 (category 1, full) and 7 (unknown category): the slot must take 7, not a second
    # category-1 item.
    repeat = [True, False, True, True, True, True, True, False]
    assert select(3, repeat=repeat, max_per_category=1) == [0, 4, 5]
    assert select(3, repeat=repeat, max_per_category=1, explore_slots=1) == [0, 4, 7]
    # the only new item is of a full category: no exploration rather than a broken cap
    only_full = [True, False, True, True, True, True, True, True]
    assert select(3, repeat=only_full, max_per_category=1, explore_slots=1) == [0, 4, 5]


def test_reasons_say_why_each_item_is_there():
    state = UserState([np.array([0, 2]), np.array([0, 5])])
    config = PolicyConfig(diversity=0.0, frequency_cap=None, similar_quantile=0.5)
    repeat = np.isin(np.arange(8), [0, 2, 5])
    picks = Policy(config, table(), VECTORS).select(candidates(repeat), SCORES, state, 8)
    reasons = {p.item: p.reason for p in picks}
    assert reasons[0] == "you buy this often"  # two baskets
    assert reasons[2] == reasons[5] == "you bought this before"
    # the recent item whose vector is closest: 1 points where 2 does, 6 and 3 lean towards 0 (closer than half of all pairs)
    assert (reasons[1], reasons[6], reasons[3]) == ("similar to i2", "similar to i0", "similar to i0")
    # by default only an item closer than 99% of pairs is "similar": 1 (the same direction as 2); the others the
    # encoder picked, or, when popularity brought them, are popular
    strict = Policy(PolicyConfig(diversity=0.0, frequency_cap=None), table(), VECTORS)
    brought = candidates(repeat)
    brought.sources[[3]] = POPULARITY
    reasons = {p.item: p.reason for p in strict.select(brought, SCORES, state, 8)}
    expected = ("similar to i2", "picked for you", "popular right now", "you buy this often")
    assert (reasons[1], reasons[6], reasons[3], reasons[0]) == expected
    no_history = Policy(config, table(), VECTORS).select(candidates(), SCORES, UserState(), 2)
    assert [p.reason for p in no_history] == ["popular right now"] * 2


def test_the_similarity_bar_is_a_quantile_of_item_pairs():
    vectors = unit_rows(np.random.default_rng(0).normal(size=(300, 8)))  # 44,850 pairs: sampled
    first, second = np.triu_indices(300, k=1)
    exact = np.quantile(np.einsum("ij,ij->i", vectors[first], vectors[second]), 0.99)
    assert abs(pair_cosine_quantile(vectors, 0.99) - exact) < 0.02
    assert pair_cosine_quantile(vectors, 0.99) == pair_cosine_quantile(vectors, 0.99)  # seeded
    small = vectors[:20]
    i, j = np.triu_indices(20, k=1)
    assert pair_cosine_quantile(small, 0.5) == np.quantile(np.einsum("ij,ij->i", small[i], small[j]), 0.5)  # every pair
    assert pair_cosine_quantile(vectors[:1], 0.5) == float("inf")


def test_popular_picks_skip_blocked_items():
    t = table()
    order = t.popular_in_stock()
    assert order.tolist() == [1, 5, 7, 0, 4, 6, 2]  # by popularity, item 3 out of stock
    picks = popular_picks(t, order, np.array([5, 0]), 3)
    assert [p.item for p in picks] == [1, 7, 4] and [p.score for p in picks] == [9.0, 6.0, 3.0]
    assert {p.reason for p in picks} == {"popular right now"}
