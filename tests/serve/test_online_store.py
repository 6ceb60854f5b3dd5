"""One behavioural suite for every `OnlineStore`: MemoryStore and RedisStore must answer alike.

Baskets, impressions, stock and prices here; the recent events, cart, queries, anonymous sessions
and the identity merge in tests/serve/test_session_state.py.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from hyperrec.bundle.user_state import MAX_BASKETS
from hyperrec.serve.online_store import Action, MemoryStore, OnlineStore
from hyperrec.serve.redis_store import RedisStore

CLOCK = iter(range(1_000_000, 10**9, 1_000))  # microseconds: each action after the one before


def buy(store: OnlineStore, user: str, order: str, items: list[int], time_us: int | None = None) -> None:
    """Purchase lines of one order, a moment apart (or all at `time_us`)."""
    store.apply([Action("purchase", time_us or next(CLOCK), user, f"s-{user}", item, order_id=order) for item in items])


def act(store: OnlineStore, kind: str, user: str, item: int) -> None:
    store.apply([Action(kind, next(CLOCK), user, f"s-{user}", item)])


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    if request.param == "memory":
        s: OnlineStore = MemoryStore()
    else:  # a fresh namespace: each test sees an empty store on the shared server
        s = RedisStore(request.getfixturevalue("redis_url"), namespace=f"test-{uuid.uuid4().hex}")
    yield s
    s.close()


def baskets_of(store: OnlineStore, user: str) -> list[list[int]]:
    state = store.users([user])[0]
    assert state is not None
    assert all(b.dtype == np.int64 for b in state.baskets)
    return [b.tolist() for b in state.baskets]


def test_unknown_user_is_none(store: OnlineStore) -> None:
    assert store.users(["nobody"]) == [None]
    assert store.users([]) == []


def test_same_order_appends_new_order_starts_a_basket(store: OnlineStore) -> None:
    buy(store, "u", "o1", [5, 3])
    buy(store, "u", "o1", [7])
    buy(store, "u", "o2", [3])
    buy(store, "u", "o2", [9, 1])
    assert baskets_of(store, "u") == [[5, 3, 7], [3, 9, 1]]


def test_a_late_line_joins_its_order(store: OnlineStore) -> None:
    buy(store, "u", "o1", [1])
    buy(store, "u", "o2", [2])
    buy(store, "u", "o1", [3])  # one order, one basket, as export's build_interactions groups them
    assert baskets_of(store, "u") == [[1, 3], [2]]


def test_baskets_in_order_time_whatever_the_arrival(store: OnlineStore) -> None:
    """A late-arriving older order goes before the newer ones (export sorts baskets by time): not the newest basket."""
    buy(store, "u", "o3", [3], time_us=3_000)
    buy(store, "u", "o1", [1], time_us=1_000)
    buy(store, "u", "o2", [2], time_us=2_000)
    buy(store, "u", "o2", [5], time_us=500)  # an order's time is its first line's
    assert baskets_of(store, "u") == [[2, 5], [1], [3]]
    buy(store, "u", "o0", [9], time_us=100)
    assert baskets_of(store, "u") == [[9], [2, 5], [1], [3]]
    store.seed({"v": [np.array([7])]})
    buy(store, "v", "o1", [8], time_us=1)  # a seeded history stays older than every live order
    assert baskets_of(store, "v") == [[7], [8]]


def test_items_unique_within_a_basket_in_first_seen_order(store: OnlineStore) -> None:
    buy(store, "u", "o1", [4, 2, 4, 8, 2])
    buy(store, "u", "o1", [8, 0, 4, 6])
    buy(store, "u", "o2", [4])  # unique within a basket, not across baskets
    assert baskets_of(store, "u") == [[4, 2, 8, 0, 6], [4]]


def test_keeps_the_last_max_baskets_by_time(store: OnlineStore) -> None:
    for i in range(MAX_BASKETS + 5):
        buy(store, "u", f"o{i}", [i, i + 1], time_us=10 * (i + 1))
    baskets = baskets_of(store, "u")
    assert len(baskets) == MAX_BASKETS
    assert baskets[0] == [5, 6] and baskets[-1] == [MAX_BASKETS + 4, MAX_BASKETS + 5]
    buy(store, "u", "late", [999], time_us=1)  # older than all it keeps: forgotten at once
    assert baskets_of(store, "u") == baskets


def test_users_batch_in_order(store: OnlineStore) -> None:
    buy(store, "a", "o1", [1])
    buy(store, "b", "o2", [2, 3])
    states = store.users(["b", "nobody", "a"])
    assert states[1] is None
    assert [b.tolist() for b in states[0].baskets] == [[2, 3]]
    assert [b.tolist() for b in states[2].baskets] == [[1]]


def test_shown_counts_and_engagement_resets_them(store: OnlineStore) -> None:
    buy(store, "u", "o1", [1])
    store.add_shown(("user", "u"), [10, 11, 10, 12, 13])
    store.add_shown(("user", "u"), [10])
    assert store.users(["u"])[0].shown == {10: 3, 11: 1, 12: 1, 13: 1}
    act(store, "view", "u", 11)  # a view is no engagement
    act(store, "click", "u", 10)
    act(store, "add_to_cart", "u", 12)
    buy(store, "u", "o2", [13])
    assert store.users(["u"])[0].shown == {11: 1}


def test_user_with_only_impressions_is_seen(store: OnlineStore) -> None:
    store.add_shown(("user", "v"), [7])
    [state] = store.users(["v"])
    assert state is not None and state.baskets == [] and state.shown == {7: 1}
    act(store, "click", "v", 7)  # still a known user, with nothing shown
    [state] = store.users(["v"])
    assert state is not None and state.shown == {}
    buy(store, "v", "o1", [3])
    assert baskets_of(store, "v") == [[3]]


def test_stock_and_prices(store: OnlineStore) -> None:
    assert store.out_of_stock() == set() and store.prices() == {}
    store.set_stock(1, 0)
    store.set_stock(2, -3)
    store.set_stock(3, 5)
    store.set_stock(2, 4)  # back in stock: the last event wins
    assert store.out_of_stock() == {1}
    store.set_price(1, 9.99)
    store.set_price(2, 0.1 + 0.2)
    store.set_price(1, 12.5)
    assert store.prices() == {1: 12.5, 2: 0.1 + 0.2}


def test_seed_keeps_users_already_present(store: OnlineStore) -> None:
    buy(store, "old", "o1", [1])
    store.add_shown(("user", "impressions-only"), [5])
    history = [np.array([i, i + 1]) for i in range(MAX_BASKETS + 3)]
    added = store.seed({"old": [np.array([42])], "new": history, "impressions-only": [np.array([6, 6])]})
    assert added == 2
    assert baskets_of(store, "old") == [[1]]
    assert baskets_of(store, "new") == [[i, i + 1] for i in range(3, MAX_BASKETS + 3)]
    assert baskets_of(store, "impressions-only") == [[6, 6]]  # seeded as given: no dedup
    assert store.users(["impressions-only"])[0].shown == {5: 1}
    assert store.seed({"new": [np.array([0])]}) == 0
    buy(store, "new", "o9", [7])  # a live order after the seed starts a new basket
    assert baskets_of(store, "new")[-2:] == [[MAX_BASKETS + 2, MAX_BASKETS + 3], [7]]


def test_concurrent_purchases_lose_no_item(store: OnlineStore) -> None:
    threads, per_thread = 8, 25

    def lines(t: int) -> None:
        for i in range(per_thread):
            buy(store, "u", "o1", [t * per_thread + i], time_us=1_000 + t)

    workers = [threading.Thread(target=lines, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    [basket] = baskets_of(store, "u")
    assert sorted(basket) == list(range(threads * per_thread))


def test_replicas_share_state_and_it_survives_reconnecting(redis_url: str) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    a, b = RedisStore(redis_url, namespace), RedisStore(redis_url, namespace)
    buy(a, "u", "o1", [1, 2])
    buy(b, "u", "o1", [3])  # replica b appends to the order replica a started
    a.add_shown(("user", "u"), [9])
    b.set_stock(4, 0)
    a.set_price(4, 2.5)
    assert baskets_of(b, "u") == [[1, 2, 3]] and b.users(["u"])[0].shown == {9: 1}
    assert a.out_of_stock() == {4} and b.prices() == {4: 2.5}
    assert b.seed({"u": [np.array([7])]}) == 0
    a.close()
    b.close()

    other = RedisStore(redis_url, f"test-{uuid.uuid4().hex}")
    assert other.users(["u"]) == [None] and other.out_of_stock() == set()  # namespaces don't mix
    other.close()

    again = RedisStore(redis_url, namespace)
    assert baskets_of(again, "u") == [[1, 2, 3]] and again.users(["u"])[0].shown == {9: 1}
    assert again.out_of_stock() == {4} and again.prices() == {4: 2.5}
    again.close()
