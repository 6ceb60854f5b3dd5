"""The per-user candidate cache: hits, misses, invalidation by item, least-recently-used eviction;
and, through the request flow, invalidation by stock and price events."""

import numpy as np

from hyperrec.bundle.features import FEATURE_NAMES
from hyperrec.bundle.retrieval import Candidates
from hyperrec.bundle.user_state import UserState
from hyperrec.serve.candidate_cache import CandidateCache


def held(*items: int) -> Candidates:
    n = len(items)
    return Candidates(np.array(items, np.int64), np.zeros(n), np.zeros(n, bool), np.zeros((n, len(FEATURE_NAMES)), np.float32))


def test_a_hit_needs_the_same_user_and_key():
    cache = CandidateCache(4)
    entry = held(1, 2, 3)
    assert cache.get("u", ("v1", 2)) is None  # empty: a miss
    cache.put("u", ("v1", 2), entry)
    assert cache.get("u", ("v1", 2)) is entry
    assert cache.get("u", ("v1", 3)) is None  # the user's state moved on: a miss
    assert cache.get("w", ("v1", 2)) is None  # another user
    assert len(cache) == 1
    newer = held(4)
    cache.put("u", ("v1", 3), newer)  # replaces the user's entry and what it held
    assert cache.get("u", ("v1", 3)) is newer and cache.get("u", ("v1", 2)) is None and len(cache) == 1
    assert cache.invalidate_item(1) == 0  # the old entry no longer holds item 1


def test_a_hit_hands_the_request_the_history_summary_computed_at_retrieval():
    cache = CandidateCache(4)
    retrieved = UserState([np.array([1, 2]), np.array([2])])
    summary = retrieved.history()
    cache.put("u", ("v1", 2), held(1, 2), retrieved)
    request = UserState([np.array([1, 2]), np.array([2])])  # the same baskets, read again from the store
    assert cache.get("u", ("v1", 2), request) is not None and request.history() is summary
    missed = UserState([np.array([1, 2])])
    assert cache.get("u", ("v1", 1), missed) is None and missed.history() is not summary


def test_an_item_event_drops_exactly_the_entries_holding_the_item():
    cache = CandidateCache(10)
    cache.put("a", ("k",), held(1, 2))
    cache.put("b", ("k",), held(2, 3))
    cache.put("c", ("k",), held(4))
    assert cache.invalidate_item(2) == 2
    assert cache.get("a", ("k",)) is None and cache.get("b", ("k",)) is None and cache.get("c", ("k",)) is not None
    assert cache.invalidate_item(3) == 0  # b's other items went with it
    assert cache.invalidate_item(99) == 0 and len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.get("c", ("k",)) is None and cache.invalidate_item(4) == 0


def test_capacity_evicts_the_least_recently_used_user():
    cache = CandidateCache(2)
    cache.put("a", ("k",), held(1))
    cache.put("b", ("k",), held(2))
    assert cache.get("a", ("k",)) is not None  # a is now the most recently used
    cache.put("c", ("k",), held(3))
    assert len(cache) == 2 and cache.get("b", ("k",)) is None
    assert cache.get("a", ("k",)) is not None and cache.get("c", ("k",)) is not None
    assert cache.invalidate_item(2) == 0  # the evicted entry's items are forgotten too
    disabled = CandidateCache(0)
    disabled.put("a", ("k",), held(1))
    assert len(disabled) == 0 and disabled.get("a", ("k",)) is None


def test_stock_and_price_events_invalidate_the_flows_cached_candidates(exported, tmp_path):
    from hyperrec.bundle.retrieval import LOG_PRICE, context_arrays
    from tests.serve.test_flow import NOW, ask, make_flow

    flow = make_flow(exported, tmp_path, policy={"frequency_cap": None})
    user = sorted(flow.registry.bundle(flow.current).user_baskets())[0]
    shown = [i.item_id for i in ask(flow, user, k=5).items]
    assert len(flow.cache) == 1
    assert [i.item_id for i in ask(flow, user, k=5).items] == shown and len(flow.cache) == 1  # a hit

    table = flow.items[flow.current].table
    never_a_candidate = table.item_ids[~table.in_stock][0]  # out of stock in the catalogue: no entry holds it
    flow.ingest([{"event_type": "price_change", "item_id": never_a_candidate, "price": 1.0, "timestamp": NOW}])
    assert len(flow.cache) == 1
    flow.ingest([{"event_type": "price_change", "item_id": shown[0], "price": 123.0, "timestamp": NOW}])
    assert len(flow.cache) == 0
    # what the next retrieval computes carries the new price
    retrieval = flow.stages.retrieval.get(flow.current)
    state = flow.store.users([user])[0]
    candidates = retrieval.candidates([state], context_arrays([{}], np.array([0.0])), prices=flow.store.prices())[0]
    row = list(table.item_ids[candidates.items]).index(shown[0])
    assert candidates.features[row, LOG_PRICE] == np.float32(np.log1p(123.0))

    ask(flow, user, k=5)
    assert len(flow.cache) == 1
    flow.ingest([{"event_type": "stock_change", "item_id": shown[1], "stock": 0, "timestamp": NOW}])
    assert len(flow.cache) == 0 and shown[1] not in [i.item_id for i in ask(flow, user, k=5).items]
    flow.ingest([{"event_type": "stock_change", "item_id": shown[1], "stock": 4, "timestamp": NOW}])
    assert len(flow.cache) == 0  # back in stock: any entry may now lack it, all are dropped


def test_a_hit_reuses_the_rankers_scores_and_still_filters_by_the_request(exported, tmp_path):
    from tests.serve.test_flow import ask, make_flow

    flow = make_flow(exported, tmp_path, policy={"frequency_cap": None})
    user = sorted(flow.registry.bundle(flow.current).user_baskets())[0]
    scored: list[int] = []
    score = flow.stages.score

    async def counted(version: str, features: np.ndarray) -> np.ndarray:
        scored.append(len(features))
        return await score(version, features)

    flow.stages.score = counted
    first = ask(flow, user, k=5)
    assert len(scored) == 1 and first.served_by == "ranker"
    again = ask(flow, user, k=5)
    assert len(scored) == 1, "a hit ran the ranker again"
    assert [(i.item_id, i.score) for i in again.items] == [(i.item_id, i.score) for i in first.items]
    held_back = ask(flow, user, k=5, exclude=[first.items[0].item_id])  # the same entry, one item excluded
    assert len(scored) == 1 and first.items[0].item_id not in [i.item_id for i in held_back.items]
    before = {i.item_id: i.score for i in first.items}
    assert all(before[i.item_id] == i.score for i in held_back.items if i.item_id in before)  # the cached scores, subset
