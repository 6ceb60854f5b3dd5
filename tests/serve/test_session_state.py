"""Every event a shopper makes changes the online state and the next answer, in both stores.

The store suite (recent events, cart, queries, caps, anonymous sessions, the identity merge,
atomicity) runs on MemoryStore and on RedisStore against the real server; the flow suite sends
contract events through `RecommendFlow.ingest` and asks `recommend` in process, over the
exported test version.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from pydantic import ValidationError

from hyperrec.bundle.user_state import Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS
from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.sequences import build_interactions
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import Action, MemoryStore, OnlineStore, StateCaps
from hyperrec.serve.redis_store import RedisStore
from hyperrec.serve.schemas import RecommendRequest

CAPS = StateCaps(events=5, cart=3, queries=2, baskets=4)


def make_store(kind: str, request: pytest.FixtureRequest, caps: StateCaps) -> OnlineStore:
    if kind == "memory":
        return MemoryStore(caps)
    return RedisStore(request.getfixturevalue("redis_url"), namespace=f"test-{uuid.uuid4().hex}", caps=caps)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    s = make_store(request.param, request, CAPS)
    yield s
    s.close()


def ev(kind: str, t: int, item: int = -1, user: str | None = "u", session: str | None = "s", **more) -> Action:
    return Action(kind, t, user, session, item, **more)


def events_of(state: UserState) -> list[tuple[int, str, int]]:
    e = state.events
    return [(int(t), BEHAVIOURS[k], int(i)) for t, k, i in zip(e.times, e.kinds, e.items, strict=True)]


def user(store: OnlineStore, name: str = "u") -> UserState:
    [state] = store.users([name])
    assert state is not None
    return state


def session(store: OnlineStore, name: str = "s") -> UserState:
    [state] = store.states([("session", name)])
    assert state is not None
    return state


# -- the store ----------------------------------------------------------------------------------


def test_item_events_are_kept_in_time_order_for_the_user_and_the_session(store: OnlineStore) -> None:
    store.apply([ev("click", 30, 2), ev("view", 10, 1), ev("add_to_cart", 20, 3), ev("remove_from_cart", 40, 3)])
    store.apply([ev("view", 5, 7), ev("view", 10, 1)])  # late, and a duplicate of one already there
    expected = [(5, "view", 7), (10, "view", 1), (20, "add_to_cart", 3), (30, "click", 2), (40, "remove_from_cart", 3)]
    assert events_of(user(store)) == events_of(session(store)) == expected
    assert user(store).baskets == [] and user(store).live_items().tolist() == [7, 1, 2]  # 3 left the cart: no intent


def test_the_cart_is_adds_minus_removes_and_a_purchase_empties_what_it_bought(store: OnlineStore) -> None:
    store.apply([ev("add_to_cart", 1, 4, quantity=2), ev("add_to_cart", 2, 5), ev("add_to_cart", 3, 4)])
    assert user(store).cart == session(store).cart == {4: 3, 5: 1}
    store.apply([ev("remove_from_cart", 4, 4), ev("remove_from_cart", 5, 5, quantity=9), ev("remove_from_cart", 6, 8)])
    assert user(store).cart == {4: 2}
    store.apply([ev("add_to_cart", 7, 6), ev("purchase", 8, 4, order_id="o1")])
    assert user(store).cart == {6: 1} and [b.tolist() for b in user(store).baskets] == [[4]]
    assert user(store).live_items().tolist() == []  # a purchase ends the live intent; the basket carries it


def test_caps_bound_events_cart_queries_and_baskets(store: OnlineStore) -> None:
    store.apply([ev("view", t, 100 + t) for t in range(1, 9)])
    assert [i for _, _, i in events_of(user(store))] == [104, 105, 106, 107, 108]  # the last 5 by time
    store.apply([ev("view", 0, 99)])  # older than every kept event: gone at once
    assert len(user(store).events) == CAPS.events and 99 not in user(store).events.items
    store.apply([ev("add_to_cart", 10 + i, i) for i in range(5)] + [ev("add_to_cart", 20, 1)])
    assert user(store).cart == {0: 1, 1: 2, 2: 1}  # full at 3 items: new items ignored, known ones still counted
    store.apply(
        [ev("search", 30, query="milk"), ev("search", 31, query="oat"), ev("search", 32, query="milk"), ev("search", 33, query="tea")]
    )
    assert user(store).queries == session(store).queries == ["milk", "tea"]  # distinct, by last time, the last 2
    store.apply([ev("purchase", 40 + i, i, order_id=f"o{i}") for i in range(6)])
    assert [b.tolist() for b in user(store).baskets] == [[2], [3], [4], [5]]


def test_an_anonymous_session_has_its_own_state(store: OnlineStore) -> None:
    store.apply([ev("view", 1, 3, user=None, session="anon"), ev("add_to_cart", 2, 4, user=None, session="anon")])
    assert store.users(["u"]) == [None] and store.states([("session", "anon"), ("session", "other")])[1] is None
    state = session(store, "anon")
    assert events_of(state) == [(1, "view", 3), (2, "add_to_cart", 4)] and state.cart == {4: 1}
    assert state.has_signal and state.live_items().tolist() == [3, 4]
    store.add_shown(("session", "anon"), [9])
    assert session(store, "anon").shown == {9: 1} and store.users(["anon"]) == [None]  # sessions and users never mix


def test_identify_merges_the_session_into_the_user_once(store: OnlineStore) -> None:
    store.apply(
        [ev("purchase", 1, 1, session="old", order_id="o1"), ev("view", 2, 2, session="old"), ev("add_to_cart", 3, 5, session="old")]
    )
    anonymous = [
        ev("view", 10, 3, user=None, session="new"),
        ev("add_to_cart", 11, 4, user=None, session="new", quantity=2),
        ev("search", 12, user=None, session="new", query="oat milk"),
        ev("purchase", 13, 6, user=None, session="new", order_id="guest"),
    ]
    store.apply(anonymous)
    store.add_shown(("session", "new"), [8, 8])
    store.apply([Action("identify", 14, "u", "new")])
    merged = user(store)
    assert events_of(merged) == [(2, "view", 2), (3, "add_to_cart", 5), (10, "view", 3), (11, "add_to_cart", 4), (13, "purchase", 6)]
    assert merged.cart == {5: 1, 4: 2} and merged.queries == ["oat milk"] and merged.shown == {8: 2}
    assert [b.tolist() for b in merged.baskets] == [[1], [6]]
    store.apply([ev("view", 15, 7, session="new"), Action("identify", 16, "u", "new")])  # named both, then merged again
    again = user(store)
    assert events_of(again)[-1] == (15, "view", 7) and len(again.events) == CAPS.events
    assert again.cart == merged.cart and again.shown == merged.shown and len(again.baskets) == 2  # nothing counted twice
    store.apply([Action("identify", 17, "x", "unknown-session")])
    assert user(store, "x").baskets == [] and len(user(store, "x").events) == 0


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_concurrent_writers_lose_no_update(kind: str, request: pytest.FixtureRequest) -> None:
    store = make_store(kind, request, StateCaps(events=1000))
    threads, per_thread = 8, 20

    def shop(t: int) -> None:
        for i in range(per_thread):
            store.apply([ev("add_to_cart", 1 + t * per_thread + i, 1), ev("view", 1 + t * per_thread + i, 2 + t)])

    workers = [threading.Thread(target=shop, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    state = user(store)
    assert state.cart == {1: threads * per_thread} and len(state.events) == 2 * threads * per_thread
    store.close()


def test_a_request_needs_a_user_or_a_session() -> None:
    assert RecommendRequest(session_id="s").user_id is None and RecommendRequest(user_id="u").session_id is None
    with pytest.raises(ValidationError) as error:
        RecommendRequest()
    [problem] = error.value.errors()
    assert problem["loc"] == ("session_id",) and "user_id" in problem["msg"]
    with pytest.raises(ValidationError) as error:
        RecommendRequest(user_id="")
    assert [e["loc"] for e in error.value.errors()] == [("user_id",)]  # the bad field only, not a second complaint


def test_union_of_recent_events_is_ordered_and_distinct() -> None:
    a = Recent(np.array([1, 2]), np.array([0, 1]), np.array([10, 20]))
    b = Recent(np.array([2, 3]), np.array([1, 0]), np.array([20, 15]))
    both = a.union(b)
    assert both.times.tolist() == [10, 15, 20] and both.items.tolist() == [1, 3, 2]
    assert a.union(Recent()) is a and Recent().union(b) is b


# -- the flow: events in, answers out ---------------------------------------------------------------

START = datetime(2026, 3, 2, 9, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def flow(request: pytest.FixtureRequest, exported, tmp_path) -> Iterator[RecommendFlow]:
    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=tmp_path / "log", store={"seed_users": False})
    store = make_store(request.param, request, StateCaps())
    f = RecommendFlow(config, store, LocalStages(Registry(config.registry), config))
    asyncio.run(f.start())
    yield f
    f.stages.close()
    store.close()


def catalogue(flow: RecommendFlow) -> list[str]:
    table = flow.items[flow.current].table
    return [str(i) for i in table.item_ids[table.in_stock]]


def event(kind: str, minute: int, user: str | None = "shopper", session: str = "visit", **fields) -> dict:
    record = {"event_type": kind, "session_id": session, "timestamp": (START + timedelta(minutes=minute)).isoformat(), **fields}
    return record | ({"user_id": user} if user is not None else {})


def answer(flow: RecommendFlow, **shopper) -> tuple[str, list[tuple[str, float]]]:
    response = asyncio.run(flow.recommend(RecommendRequest(k=10, **shopper)))
    return response.served_by, [(i.item_id, i.score) for i in response.items]


def send(flow: RecommendFlow, *records: dict) -> None:
    result = flow.ingest(list(records))
    assert result.rejected == [] and result.accepted == len(records) and result.unknown_items == 0


def test_each_event_kind_changes_the_state_and_the_next_answer(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    send(flow, event("purchase", 0, item_id=items[0], order_id="o1"), event("purchase", 0, item_id=items[1], order_id="o1"))
    served_by, before = answer(flow, user_id="shopper")
    assert served_by == "ranker"
    steps = [
        ("view", {"item_id": items[5]}),
        ("click", {"item_id": items[6]}),
        ("add_to_cart", {"item_id": items[7]}),
        ("remove_from_cart", {"item_id": items[7]}),
        ("purchase", {"item_id": items[8], "order_id": "o2"}),
    ]
    for minute, (kind, fields) in enumerate(steps, start=1):
        state_before = flow.store.users(["shopper"])[0]
        send(flow, event(kind, minute, **fields))
        state = flow.store.users(["shopper"])[0]
        assert len(state.events) == len(state_before.events) + 1 and state.events.kinds[-1] == BEHAVIOURS.index(kind)
        served_by, after = answer(flow, user_id="shopper")
        assert served_by == "ranker" and after != before, kind
        if kind == "add_to_cart":
            assert state.cart == {flow.items[flow.current].index[items[7]]: 1}
            assert items[7] not in [i for i, _ in after]  # what is in the cart is no recommendation
        before = after
    send(flow, event("search", 9, query="oat milk"))
    assert flow.store.users(["shopper"])[0].queries == ["oat milk"]  # searches are kept; the search placement reads them


def test_an_anonymous_session_is_personalized_from_its_first_view(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    assert answer(flow, session_id="anon")[0] == "popularity"  # nothing yet
    send(flow, event("view", 1, user=None, session="anon", item_id=items[3]))
    served_by, first = answer(flow, session_id="anon")
    assert served_by == "ranker"
    send(flow, event("click", 2, user=None, session="anon", item_id=items[40]))
    served_by, second = answer(flow, session_id="anon")
    assert served_by == "ranker" and second != first
    assert flow.store.users(["anon"]) == [None]


def test_identify_merges_the_session_and_the_next_answer_uses_both(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    send(flow, event("purchase", 0, item_id=items[0], order_id="o1", session="earlier"))
    _, history_only = answer(flow, user_id="shopper")
    send(
        flow,
        event("view", 1, user=None, session="anon", item_id=items[20]),
        event("add_to_cart", 2, user=None, session="anon", item_id=items[21]),
    )
    _, both_named = answer(flow, user_id="shopper", session_id="anon")  # named together, read together
    assert both_named != history_only
    assert answer(flow, user_id="shopper")[1] == history_only  # not merged yet
    send(flow, {"event_type": "identify", "schema_version": 2, "session_id": "anon", "user_id": "shopper", "timestamp": START.isoformat()})
    state = flow.store.users(["shopper"])[0]
    index = flow.items[flow.current].index
    assert [b.tolist() for b in state.baskets] == [[index[items[0]]]]
    assert state.live_items().tolist() == [index[items[20]], index[items[21]]] and state.cart == {index[items[21]]: 1}
    _, merged = answer(flow, user_id="shopper")
    assert merged != history_only and [i for i, _ in merged] == [i for i, _ in both_named]


def test_out_of_order_purchases_are_baskets_in_time_order_as_export_builds_them(flow: RecommendFlow, tmp_path) -> None:
    items = catalogue(flow)
    orders = [("late", 3, [items[9], items[2]]), ("first", 1, [items[4]]), ("middle", 2, [items[2], items[7]])]
    for order, day, bought in orders:  # the newest order arrives first
        send(flow, *[event("purchase", day * 1440 + line, item_id=i, order_id=order) for line, i in enumerate(bought)])
    logged = OfflineStore(tmp_path / "log").read()
    history, user_ids = build_interactions(
        Dataset("served", logged, catalog_from_items(flow.items[flow.current].table.item_ids)), ["purchase"]
    )
    offline = UserState.from_history(history, list(user_ids).index("shopper"))
    online = flow.store.users(["shopper"])[0]
    assert [b.tolist() for b in online.baskets] == [b.tolist() for b in offline.baskets]
    index = flow.items[flow.current].index
    assert [b.tolist() for b in online.baskets][-1] == [index[items[9]], index[items[2]]]


def test_version_1_and_2_events_are_accepted_and_bad_ones_rejected_with_the_field(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    batch = [
        event("view", 1, item_id=items[1], schema_version=1),
        event("view", 2, item_id=items[2], schema_version=2),
        event("view", 3, user=None, item_id=items[3]),  # anonymous, version 2 by default
        {"event_type": "identify", "user_id": "shopper", "session_id": "visit", "timestamp": (START + timedelta(minutes=5)).isoformat()},
        {"event_type": "identify", "user_id": "shopper", "timestamp": START.isoformat()},
        {"event_type": "identify", "user_id": "shopper", "session_id": "visit", "timestamp": START.isoformat(), "schema_version": 1},
        event("teleport", 4, item_id=items[4]),
    ]
    result = flow.ingest(batch)
    assert result.accepted == 4
    reasons = {r.index: r.reason for r in result.rejected}
    assert sorted(reasons) == [4, 5, 6]
    assert reasons[4].startswith("session_id: Field required")
    assert reasons[5].startswith("schema_version:")
    assert reasons[6].startswith("event_type:") and "teleport" in reasons[6]
    assert (
        len(flow.store.users(["shopper"])[0].events) == 3
    )  # both versions' views, and the anonymous one (the batch applies in time order: identify last)


def test_values_past_the_contracts_bounds_are_rejected_and_the_rest_kept(flow: RecommendFlow) -> None:
    """The batch schemathesis found: a stock past int64's reach and timestamps in year 358 once broke the event log (500)."""
    items = catalogue(flow)
    batch = [
        {"event_type": "search", "timestamp": "0486-07-05T21:30:01.9Z", "query": "oats", "session_id": "visit"},
        {"event_type": "stock_change", "item_id": items[1], "timestamp": START.isoformat(), "stock": 9223372036854775807},
        event("add_to_cart", 1, item_id=items[2], quantity=10_001),
        event("view", 2, item_id=items[3]),
    ]
    result = flow.ingest(batch)
    assert result.accepted == 1
    reasons = {r.index: r.reason for r in result.rejected}
    assert reasons[0].startswith("timestamp: Value error, the year must be 2000 to 2099")
    assert reasons[1].startswith("stock: Input should be less than or equal to 1000000000")
    assert reasons[2].startswith("quantity: Input should be less than or equal to 10000")
    assert int(flow.store.users(["shopper"])[0].events.items[-1]) == flow.items[flow.current].index[items[3]]
