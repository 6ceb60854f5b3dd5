"""Consent by purpose and erasure, in MemoryStore and in RedisStore against the real server, and through the flow.

Personalization withdrawn: the next answer is popularity and says so, the shopper's online state is dropped
and their later behaviour is not stored (the event log keeps it); granted again, it starts from empty.
Analytics and email are held and read as the consent snapshot. Erasure leaves nothing of the shopper in the
online store or the event log, through the flow's parts and through `hyperrec erase`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from hyperrec.cli import main
from hyperrec.data.offline_store import OfflineStore
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.erasure import erase_user
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import Action, MemoryStore, OnlineStore, StateCaps
from hyperrec.serve.privacy import ConsentConfig
from hyperrec.serve.redis_store import RedisStore
from hyperrec.serve.schemas import RecommendRequest
from tests.serve.test_session_state import catalogue, event

OPT_IN = ConsentConfig(personalization=False)


def make_store(kind: str, request: pytest.FixtureRequest, consent: ConsentConfig, namespace: str) -> OnlineStore:
    if kind == "memory":
        return MemoryStore(StateCaps(), consent)
    return RedisStore(request.getfixturevalue("redis_url"), namespace, StateCaps(), consent)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[OnlineStore]:
    s = make_store(request.param, request, ConsentConfig(), f"consent-{uuid.uuid4().hex}")
    yield s
    s.close()


def consent(purpose: str, granted: bool, t: int, user: str | None = "u", session: str | None = "s") -> Action:
    return Action("consent", t, user, session, purpose=purpose, granted=granted)


def act(kind: str, t: int, item: int = -1, user: str | None = "u", session: str | None = "s", **more) -> Action:
    return Action(kind, t, user, session, item, **more)


def behaviour(t: int, user: str | None = "u", session: str | None = "s") -> list[Action]:
    """One of each kind of behaviour the store keeps."""
    return [
        act("view", t, 1, user, session),
        act("add_to_cart", t + 1, 2, user, session),
        act("purchase", t + 2, 3, user, session, order_id=f"o{t}"),
        act("search", t + 3, user=user, session=session, query="oat milk"),
    ]


def is_empty(state) -> bool:
    return not (state.baskets or len(state.events) or state.cart or state.queries or state.shown)


# -- the store --------------------------------------------------------------------------------------


def test_the_latest_consent_by_event_time_counts_per_purpose_for_the_user_and_the_session(store: OnlineStore) -> None:
    store.apply([consent("email", True, 10), consent("email", False, 5)])  # the withdrawal is older: the grant stays
    store.apply([consent("analytics", True, 20), consent("analytics", False, 20)])  # same time: the withdrawal wins
    store.apply([consent("analytics", True, 20)])
    [user, session] = store.states([("user", "u"), ("session", "s")])
    assert user.consent == session.consent == {"email": (10, True), "analytics": (20, False)}
    store.apply([consent("email", False, 30, user=None, session="anon")])  # anonymous: the session's only
    assert store.states([("session", "anon")])[0].consent == {"email": (30, False)}
    assert store.users(["u"])[0].consent["email"] == (10, True)


def test_withdrawing_personalization_drops_the_behaviour_and_stores_none_until_granted_again(store: OnlineStore) -> None:
    store.apply(behaviour(1))
    store.add_shown(("user", "u"), [7, 7])
    assert not is_empty(store.users(["u"])[0])
    store.apply([consent("personalization", False, 10)])
    for state in store.states([("user", "u"), ("session", "s")]):
        assert is_empty(state) and state.consent == {"personalization": (10, False)}
    store.apply(behaviour(11))
    store.add_shown(("user", "u"), [7])
    assert store.seed({"u": [np.array([4])]}) == 0  # nor is the bundle's history loaded back
    assert all(is_empty(s) for s in store.states([("user", "u"), ("session", "s")]))
    store.apply([consent("personalization", True, 20), act("view", 21, 9)])
    again = store.users(["u"])[0]
    assert again.events.items.tolist() == [9] and not again.baskets and not again.cart  # from empty
    assert store.states([("session", "s")])[0].events.items.tolist() == [9]


def test_identify_takes_the_sessions_consent_and_a_withdrawn_user_merges_no_behaviour(store: OnlineStore) -> None:
    store.apply([act("view", 1, 5, user=None, session="anon"), consent("personalization", False, 2, user="u", session="other")])
    store.apply([Action("identify", 3, "u", "anon")])
    assert is_empty(store.users(["u"])[0])  # the user withdrew: the session's views are not merged
    store.apply([consent("personalization", True, 4, user=None, session="anon"), Action("identify", 5, "u", "anon")])
    merged = store.users(["u"])[0]
    assert merged.consent["personalization"] == (4, True)  # the session's newer grant joined the user, then its views
    assert merged.events.items.tolist() == [5]
    store.apply([consent("email", True, 6, user=None, session="anon"), Action("identify", 7, "u", "anon")])
    assert store.users(["u"])[0].consent["email"] == (6, True)


def test_an_opt_in_default_stores_nothing_until_personalization_is_granted(request: pytest.FixtureRequest) -> None:
    for kind in ("memory", "redis"):
        store = make_store(kind, request, OPT_IN, f"opt-in-{uuid.uuid4().hex}")
        store.apply(behaviour(1))
        store.add_shown(("user", "u"), [1])
        assert store.seed({"u": [np.array([4])]}) == 0
        assert store.states([("user", "u"), ("session", "s")]) == [None, None], kind
        store.apply([consent("personalization", True, 5), *behaviour(6)])
        assert len(store.users(["u"])[0].events) == 3 and store.users(["u"])[0].queries == ["oat milk"], kind
        store.close()


def test_erasing_a_user_deletes_them_and_the_sessions_linked_to_them_only(store: OnlineStore) -> None:
    store.apply([*behaviour(1, session="s1"), *behaviour(10, user=None, session="s2"), Action("identify", 20, "u", "s2")])
    store.apply([consent("email", True, 21, session="s3"), *behaviour(30, user="other", session="s4")])
    store.add_shown(("user", "u"), [1])
    assert store.linked_sessions("u") == {"s1", "s2", "s3"}
    subjects = [("user", "u"), *(("session", s) for s in sorted(store.linked_sessions("u")))]
    assert store.erase(subjects) == 4
    assert store.states(subjects) == [None] * 4 and store.linked_sessions("u") == set()
    assert store.users(["other"])[0] is not None and store.states([("session", "s4")])[0] is not None
    assert store.erase(subjects) == 0


# -- the flow ---------------------------------------------------------------------------------------


def make_flow(kind: str, request: pytest.FixtureRequest, exported, tmp_path, defaults: ConsentConfig) -> RecommendFlow:
    config = ServeConfig(
        registry=exported.path.parent,
        version=exported.version,
        event_log=tmp_path / "log",
        store={"seed_users": False, "namespace": f"flow-{uuid.uuid4().hex}"},
        privacy={"consent": defaults.model_dump()},
    )
    store = make_store(kind, request, defaults, config.store.namespace)
    flow = RecommendFlow(config, store, LocalStages(Registry(config.registry), config))
    asyncio.run(flow.start())
    return flow


@pytest.fixture(params=["memory", "redis"])
def flow(request: pytest.FixtureRequest, exported, tmp_path) -> Iterator[RecommendFlow]:
    f = make_flow(request.param, request, exported, tmp_path, ConsentConfig())
    yield f
    f.stages.close()
    f.store.close()


def give(purpose: str, granted: bool, minute: int, **shopper) -> dict:
    return event("consent", minute, purpose=purpose, granted=granted, **shopper)


def send(flow: RecommendFlow, *records: dict) -> None:
    result = flow.ingest(list(records))
    assert result.rejected == [] and result.accepted == len(records)


def ask(flow: RecommendFlow, **shopper):
    return asyncio.run(flow.recommend(RecommendRequest(k=10, **shopper)))


def test_withdrawn_personalization_makes_the_next_answer_popular_and_says_so(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    send(flow, event("purchase", 0, item_id=items[0], order_id="o1"), event("view", 1, item_id=items[5]))
    assert ask(flow, user_id="shopper").served_by == "ranker"
    send(flow, give("personalization", False, 2))
    answer = ask(flow, user_id="shopper")
    assert answer.served_by == "popularity" and answer.degraded == ["consent: personalization withdrawn"]
    assert [i.item_id for i in answer.items] == [i.item_id for i in ask(flow, session_id="a-stranger").items]
    assert all(is_empty(s) for s in flow.store.states([("user", "shopper"), ("session", "visit")]))
    send(flow, event("view", 3, item_id=items[6]), event("add_to_cart", 4, item_id=items[7]))
    assert is_empty(flow.store.users(["shopper"])[0]) and ask(flow, user_id="shopper").served_by == "popularity"
    logged = OfflineStore(flow.config.event_log).read()
    assert logged["event_type"].tolist() == ["purchase", "view", "consent", "view", "add_to_cart"]  # the shop's record
    send(flow, give("personalization", True, 5))
    again = ask(flow, user_id="shopper")
    assert again.served_by == "popularity" and again.degraded == []  # granted again: from empty, nothing to personalize on
    send(flow, event("view", 6, item_id=items[8]))
    assert ask(flow, user_id="shopper").served_by == "ranker"
    assert flow.store.users(["shopper"])[0].live_items().tolist() == [flow.items[flow.current].index[items[8]]]


def test_analytics_withdrawal_is_in_the_consent_snapshot_and_leaves_the_answer_personal(flow: RecommendFlow) -> None:
    items = catalogue(flow)
    send(flow, event("view", 0, item_id=items[3]))
    request = RecommendRequest(user_id="shopper", session_id="visit")
    assert flow._state(request)[2].analytics is True and "analytics" in flow._state(request)[2].defaulted
    send(flow, give("analytics", False, 1))
    snapshot = flow._state(request)[2]
    assert snapshot.analytics is False and snapshot.personalization is True and "analytics" not in snapshot.defaulted
    assert ask(flow, user_id="shopper").served_by == "ranker"  # experiments and logs leave them out, not personalization
    send(flow, give("analytics", True, 0))  # older than the withdrawal: it stays withdrawn
    assert flow._state(request)[2].analytics is False


def test_email_consent_is_opt_in_stored_and_read_for_the_user_and_their_session(flow: RecommendFlow) -> None:
    assert flow._state(RecommendRequest(user_id="shopper"))[2].email is False  # the default: opt-in
    send(flow, give("email", True, 1, user=None, session="anon"))  # given before logging in
    assert flow._state(RecommendRequest(user_id="shopper"))[2].email is False
    assert flow._state(RecommendRequest(user_id="shopper", session_id="anon"))[2].email is True  # named together
    send(flow, give("email", False, 2))
    assert flow._state(RecommendRequest(user_id="shopper", session_id="anon"))[2].email is False  # the newest counts


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_an_opt_in_default_serves_popularity_until_personalization_is_granted(kind, request, exported, tmp_path) -> None:
    flow = make_flow(kind, request, exported, tmp_path, OPT_IN)
    items = catalogue(flow)
    send(flow, event("view", 0, item_id=items[3]))
    answer = ask(flow, user_id="shopper")
    assert answer.served_by == "popularity" and answer.degraded == ["consent: personalization not given (the default)"]
    send(flow, give("personalization", True, 1), event("view", 2, item_id=items[4]))
    assert ask(flow, user_id="shopper").served_by == "ranker"
    flow.stages.close()
    flow.store.close()


def shoppers_events(flow: RecommendFlow) -> list[dict]:
    items = catalogue(flow)
    return [
        event("view", 0, user=None, session="before-login", item_id=items[1]),
        event("identify", 1, session="before-login"),
        event("purchase", 2, session="later", item_id=items[2], order_id="o1"),
        give("email", True, 3, session="later"),
        event("search", 4, user="someone-else", session="theirs", query="tea"),
        event("view", 5, user="someone-else", session="before-login", item_id=items[3]),  # a shared device
    ]


def keys_naming(redis_url: str, namespace: str, names: list[str]) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    keys = [k for k in client.scan_iter(f"{namespace}:*") if any(n.encode() in k for n in names)]
    client.close()
    return keys


def test_erasure_leaves_nothing_of_the_shopper_in_the_online_store_or_the_event_log(flow: RecommendFlow, request) -> None:
    send(flow, *shoppers_events(flow))
    assert ask(flow, user_id="shopper").served_by == "ranker"
    result = erase_user("shopper", flow.store, {"event_log": flow.event_log})
    assert result.sessions == ["before-login", "later"]
    assert result.removed == {"online_store": 3, "event_log": 4}
    subjects = [("user", "shopper"), ("session", "before-login"), ("session", "later")]
    assert flow.store.states(subjects) == [None, None, None] and flow.store.linked_sessions("shopper") == set()
    if isinstance(flow.store, RedisStore):
        assert keys_naming(request.getfixturevalue("redis_url"), flow.config.store.namespace, ["shopper", "before-login", "later"]) == []
    logged = OfflineStore(flow.config.event_log).read()
    assert "shopper" not in set(logged["user_id"].dropna()) and "later" not in set(logged["session_id"])
    assert logged["user_id"].tolist() == ["someone-else", "someone-else"]  # the rest is kept
    assert flow.store.users(["someone-else"])[0] is not None
    assert erase_user("shopper", flow.store, {"event_log": flow.event_log}).removed == {"online_store": 0, "event_log": 0}
    assert ask(flow, user_id="shopper").served_by == "popularity"  # known no more


def test_hyperrec_erase_deletes_from_redis_the_event_log_and_an_offline_store(exported, request, tmp_path, capsys) -> None:
    redis_url = request.getfixturevalue("redis_url")
    flow = make_flow("redis", request, exported, tmp_path, ConsentConfig())
    send(flow, *shoppers_events(flow))
    training = OfflineStore(tmp_path / "training")
    training.append(OfflineStore(flow.config.event_log).read())
    namespace = flow.config.store.namespace
    argv = ["erase", "--user", "shopper", "--event-log", str(flow.config.event_log), "--offline-store", str(training.root)]
    assert main([*argv, "store.kind=redis", f"store.redis_url={redis_url}", f"store.namespace={namespace}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["removed"] == {"online_store": 3, "event_log": 4, "offline_store": 4}
    assert keys_naming(redis_url, namespace, ["shopper", "before-login", "later"]) == []
    for log in (flow.event_log, training):
        assert set(log.read()["user_id"].dropna()) == {"someone-else"}
    flow.stages.close()
    flow.store.close()
