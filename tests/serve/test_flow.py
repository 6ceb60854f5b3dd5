"""The request flow in process (no Ray): policy, online features, fallbacks, events, model swap, Triton backend."""

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from hyperrec.data.offline_store import OfflineStore
from hyperrec.export.run import ExportConfig, export_run
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow, StageFailed
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import RecommendRequest

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC).isoformat()


def make_flow(exported, tmp_path, threaded: bool = True, **settings) -> RecommendFlow:
    config = ServeConfig.model_validate(
        {"registry": str(exported.path.parent), "version": exported.version, "event_log": str(tmp_path / "log")} | settings
    )
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config, threaded=threaded))
    asyncio.run(flow.start())
    return flow


def ask(flow: RecommendFlow, user: str, k: int = 10, **fields):
    return asyncio.run(flow.recommend(RecommendRequest(user_id=user, k=k, **fields)))


def known_user(flow: RecommendFlow) -> str:
    """The first of the users the flow seeded its online store with (the export's users)."""
    return sorted(flow.registry.bundle(flow.current).user_baskets())[0]


def bought_ids(flow: RecommendFlow, user: str) -> set[str]:
    """Item ids the online store says the user bought."""
    return {flow.items[flow.current].table.item_ids[i] for b in flow.store.users([user])[0].baskets for i in b}


def purchase(user: str, item: str, order: str) -> dict:
    return {"event_type": "purchase", "user_id": user, "session_id": order, "order_id": order, "item_id": item, "timestamp": NOW}


def test_known_user_gets_a_ranked_explained_list(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    answer = ask(flow, known_user(flow), k=10)
    assert answer.served_by == "ranker" and answer.model_version == exported.version and not answer.degraded
    ids = [i.item_id for i in answer.items]
    assert len(ids) == 10 == len(set(ids))
    assert all(i.reason for i in answer.items) and len(answer.trace_id) == 16
    bought = bought_ids(flow, known_user(flow))
    assert bought
    assert any(i.reason.startswith("you b") for i in answer.items if i.item_id in bought)


def test_unknown_user_gets_their_cohorts_popular_items_not_an_error(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    items = flow.items[flow.current]
    assert items.cohorts.lists  # export counted the synthetic shop's events per device, channel and part of day
    for context in ({}, {"device": "ios"}, {"device": "android", "channel": "email"}):
        answer = ask(flow, "never-seen", k=5, context=context)
        ranked, reason = items.cold_list(RecommendRequest(user_id="u", context=context).context, time.time())
        assert answer.served_by == "popularity" and [i.item_id for i in answer.items] == list(items.table.item_ids[ranked[:5]])
        assert {i.reason for i in answer.items} == {reason}
    ios = ask(flow, "never-seen", k=5, context={"device": "ios"})
    assert ios.items[0].reason.startswith("popular on ios")


def test_a_purchase_changes_the_next_answer_and_reaches_the_event_log(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    table = flow.items[flow.current].table
    newcomer_item = table.item_ids[flow.items[flow.current].popular_in_stock[-1]]  # the least popular item
    result = flow.ingest([purchase("newcomer", newcomer_item, "o1"), {"event_type": "purchase", "user_id": "x"}])
    assert result.accepted == 1 and result.rejected[0].index == 1 and "timestamp" in result.rejected[0].reason
    answer = ask(flow, "newcomer", k=10)
    assert answer.served_by == "ranker"
    assert newcomer_item in [i.item_id for i in answer.items if i.reason == "you bought this before"]
    logged = OfflineStore(tmp_path / "log").read()
    assert list(logged["item_id"]) == [newcomer_item] and list(logged["user_id"]) == ["newcomer"]


def test_stock_events_and_exclusions_filter_the_list_even_when_cached(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    user = known_user(flow)
    first = [i.item_id for i in ask(flow, user, k=5).items]
    assert len(flow.cache) == 1
    flow.ingest([{"event_type": "stock_change", "item_id": first[0], "stock": 0, "timestamp": NOW}])
    assert len(flow.cache) == 0  # the entry holding the item was dropped
    second = [i.item_id for i in ask(flow, user, k=5, exclude=[first[1]]).items]
    assert first[0] not in second and first[1] not in second
    assert first[0] not in [i.item_id for i in ask(flow, "never-seen", k=50).items]
    flow.ingest([{"event_type": "stock_change", "item_id": first[0], "stock": 3, "timestamp": NOW}])
    assert first[0] in [i.item_id for i in ask(flow, user, k=5).items]


def test_frequency_cap_holds_back_items_shown_without_a_click(exported, tmp_path):
    flow = make_flow(exported, tmp_path, policy={"frequency_cap": 2, "diversity": 0.0})
    user = known_user(flow)
    first = [i.item_id for i in ask(flow, user, k=3).items]
    assert [i.item_id for i in ask(flow, user, k=3).items] == first  # shown once: still in
    third = [i.item_id for i in ask(flow, user, k=3).items]
    assert not set(first) & set(third)  # shown twice without a click: held back
    flow.ingest([{"event_type": "click", "user_id": user, "session_id": "s", "item_id": first[0], "timestamp": NOW}])
    assert first[0] in [i.item_id for i in ask(flow, user, k=3).items]


def test_category_cap_and_diversity_spread_the_list(exported, tmp_path):
    plain = make_flow(exported, tmp_path, policy={"diversity": 0.0, "frequency_cap": None})
    user = known_user(plain)
    table = plain.items[plain.current].table
    categories = lambda answer: [table.category[plain.items[plain.current].index[i.item_id]] for i in answer.items]  # noqa: E731
    capped = make_flow(exported, tmp_path, policy={"diversity": 0.0, "max_per_category": 1, "frequency_cap": None})
    spread = categories(ask(capped, user, k=5))
    assert len(set(spread)) == 5
    relevance_only = ask(plain, user, k=10)
    diverse = ask(make_flow(exported, tmp_path, policy={"diversity": 0.9, "diversity_by": "category", "frequency_cap": None}), user, k=10)
    # at 0.9 a second item of a category costs 0.9 and gains at most 0.1 of relevance: the first five
    # items are of five categories (the shop has five), whatever the relevance order put first
    assert len(set(categories(diverse)[:5])) == 5
    assert len(set(categories(diverse))) >= len(set(categories(relevance_only)))


def test_margin_weight_promotes_high_margin_items(exported, tmp_path):
    user = None
    mean_margin, scores, margin = {}, {}, {}
    for weight in (0.0, 0.5, 50.0):
        flow = make_flow(exported, tmp_path, policy={"margin_weight": weight, "diversity": 0.0, "frequency_cap": None})
        user = user or known_user(flow)
        items = flow.items[flow.current]
        answer = ask(flow, user, k=10).items
        margin |= {i.item_id: np.nan_to_num(items.table.margin[items.index[i.item_id]]) for i in answer}
        mean_margin[weight] = np.mean([margin[i.item_id] for i in answer])
        scores[weight] = {i.item_id: i.score for i in answer}
        assert [i.score for i in answer] == sorted((i.score for i in answer), reverse=True)  # no diversity: by adjusted score
    assert mean_margin[50.0] > mean_margin[0.0]
    for weight in (0.5, 50.0):  # the weight adds exactly weight x margin to an item's score (responses round to 6 places)
        common = scores[0.0].keys() & scores[weight].keys()
        assert common or weight == 50.0
        for item in common:
            assert scores[weight][item] - scores[0.0][item] == pytest.approx(weight * margin[item], abs=2e-6)


def test_ranking_failure_and_overrun_degrade_to_popularity_and_say_so(exported, tmp_path):
    flow = make_flow(exported, tmp_path, budgets={"ranking_ms": 50})
    user = known_user(flow)
    asyncio.run(flow.stages.set_fault("ranking", "error", 0, None))
    answer = ask(flow, user, k=5)
    assert answer.served_by == "popularity" and "injected failure" in answer.degraded[0] and len(answer.items) == 5
    asyncio.run(flow.stages.set_fault("ranking", "delay", 500, None))
    answer = ask(flow, user, k=5)
    assert answer.served_by == "popularity" and "over its 50 ms budget" in answer.degraded[0]
    asyncio.run(flow.stages.set_fault("ranking", "none", 0, None))
    asyncio.run(flow.stages.set_fault("retrieval", "error", 0, None))
    flow.cache.clear()
    answer = ask(flow, user, k=5)
    assert answer.served_by == "popularity" and answer.degraded[0].startswith("retrieval")


@pytest.fixture(scope="module")
def second_version(exported):
    """A second version in the same registry (not promoted): what a hot swap loads."""
    config = ExportConfig(registry=exported.path.parent, cutoffs=2, ranker={"epochs": 1, "hidden": [8]}, promote=False)
    return export_run(Path(exported.manifest.source_run), config, log=lambda *_: None)


def test_swap_keeps_the_previous_version_as_last_good_fallback(exported, second_version, tmp_path):
    flow = make_flow(exported, tmp_path)
    user = known_user(flow)
    assert asyncio.run(flow.swap(second_version.version)) == second_version.version
    assert (flow.current, flow.last_good) == (second_version.version, exported.version)
    assert ask(flow, user).model_version == second_version.version
    asyncio.run(flow.stages.set_fault("ranking", "error", 0, second_version.version))  # only the new version fails
    answer = ask(flow, user, k=5, context={"device": "ios"})  # another device: a cache miss (a hit reuses its scores)
    assert answer.served_by == "last_good" and answer.model_version == exported.version and second_version.version in answer.degraded[0]


def test_triton_backend_serves_the_same_answer(exported, tmp_path):
    from hyperrec.serve.triton_process import TritonSidecar

    with TritonSidecar(exported.path / "triton") as sidecar:
        # budgets out of the way: this compares answers, and a cold Triton's first call on loaded cores can overrun 100 ms
        generous = {"retrieval_ms": 30_000, "ranking_ms": 30_000}
        triton = {"backend": "triton", "triton_url": sidecar.url}
        flow = make_flow(exported, tmp_path, ranking=triton, policy={"frequency_cap": None}, budgets=generous)
        user = known_user(flow)
        via_triton = ask(flow, user, k=10)
        in_process = ask(make_flow(exported, tmp_path, policy={"frequency_cap": None}), user, k=10)
    assert via_triton.served_by == "ranker" and not via_triton.degraded
    assert [i.item_id for i in via_triton.items] == [i.item_id for i in in_process.items]
    np.testing.assert_allclose([i.score for i in via_triton.items], [i.score for i in in_process.items], atol=1e-4)


def test_a_broken_last_good_version_does_not_stop_serving(exported, second_version, tmp_path):
    """The registry's LAST_GOOD points at a version with a file missing: serve CURRENT without a fallback."""
    import shutil

    registry = Registry(exported.path.parent)
    broken_root = tmp_path / "registry"
    shutil.copytree(registry.root, broken_root)
    (broken_root / "LAST_GOOD").write_text(second_version.version + "\n")
    (broken_root / second_version.version / "items.parquet").unlink()
    config = ServeConfig(registry=broken_root, version=exported.version, event_log=None)
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(broken_root), config))
    asyncio.run(flow.start())
    assert flow.last_good is None and "items.parquet" in flow.fallback_error
    assert ask(flow, known_user(flow)).served_by == "ranker"


def test_exploration_slot_puts_an_item_new_to_the_user_in_the_list(exported, tmp_path):
    plain = make_flow(exported, tmp_path, policy={"frequency_cap": None})
    user = known_user(plain)
    bought = bought_ids(plain, user)
    exploring = make_flow(exported, tmp_path, policy={"frequency_cap": None, "explore_slots": 2})
    new_items = [i for i in ask(exploring, user, k=5).items if i.item_id not in bought]
    assert len(new_items) >= 2 and all(i.reason.startswith(("similar to", "popular", "picked for you")) for i in new_items)


@pytest.mark.parametrize("threaded", [False, True])
def test_budget_gives_up_on_real_model_work_in_process(exported, tmp_path, threaded):
    """In the default single topology the stages run in this process: a budget still cuts them off
    (inline: the call is shed before it starts; on the worker thread: the flow stops waiting)."""
    flow = make_flow(exported, tmp_path, threaded=threaded, budgets={"ranking_ms": 0.001})
    answer = ask(flow, known_user(flow), k=5)
    assert answer.served_by == "popularity" and "over its 0.001 ms budget" in answer.degraded[0]
    flow.stages.close()


def test_inline_and_threaded_stages_give_the_same_answers(exported, tmp_path):
    inline, threaded = make_flow(exported, tmp_path, threaded=False), make_flow(exported, tmp_path)
    for user in sorted(inline.registry.bundle(inline.current).user_baskets())[:10]:
        a, b = ask(inline, user), ask(threaded, user)
        assert a.served_by == b.served_by == "ranker" and a.items == b.items
    threaded.stages.close()


def test_a_stage_call_that_waited_past_its_budget_on_a_busy_loop_is_shed_unrun():
    ran = []

    async def stage_call():
        ran.append(True)
        return "answer"

    async def main():
        asyncio.get_running_loop().call_soon(time.sleep, 0.05)  # the loop is busy before the stage call can start
        with pytest.raises(StageFailed, match="over its 20 ms budget"):
            await RecommendFlow._stage(stage_call(), 20, "retrieval v1")
        return await RecommendFlow._stage(stage_call(), 20, "retrieval v1")  # a loop that is not busy: it runs

    assert asyncio.run(main()) == "answer" and ran == [True]


def test_online_store_down_degrades_to_popularity(exported, tmp_path):
    from hyperrec.serve.redis_store import RedisStore

    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=None, store={"seed_users": False})
    flow = RecommendFlow(config, RedisStore("redis://127.0.0.1:1/0"), LocalStages(Registry(config.registry), config))
    asyncio.run(flow.start())
    answer = ask(flow, "anyone", k=4)
    assert answer.served_by == "popularity" and len(answer.items) == 4 and answer.degraded[0].startswith("online store: ")
