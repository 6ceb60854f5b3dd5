"""A Redis store restarted empty (no persistence) loses the shoppers' seeded histories and live state; the server
notices within `store.restart_check_s` and puts them back (the bundle's seed, then the event log), without a restart."""

from __future__ import annotations

import asyncio
import uuid

import redis

from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import make_store
from hyperrec.serve.schemas import RecommendRequest
from tests.serve.test_flow import known_user, purchase


def test_a_redis_store_found_empty_is_seeded_again_and_the_event_log_replayed(exported, tmp_path, redis_url):
    namespace = f"restart-{uuid.uuid4().hex}"
    config = ServeConfig(
        registry=exported.path.parent,
        version=exported.version,
        event_log=tmp_path / "log",
        store={"kind": "redis", "redis_url": redis_url, "namespace": namespace, "restart_check_s": 0.01},
    )
    flow = RecommendFlow(config, make_store(config), LocalStages(Registry(config.registry), config))
    asyncio.run(flow.start())
    user = known_user(flow)
    item = flow.items[flow.current].table.item_ids[0]
    assert flow.ingest([purchase("newcomer", item, "o1")]).accepted == 1
    server = redis.Redis.from_url(redis_url)

    def lose_everything() -> None:  # what a Redis restarted without persistence holds of this server: nothing
        for key in server.scan_iter(f"{namespace}:*"):
            server.delete(key)

    async def drill() -> list[str]:
        served = [(await flow.recommend(RecommendRequest(user_id=user, k=5))).served_by]
        await asyncio.gather(*flow._store_checks)
        lose_everything()
        served.append((await flow.recommend(RecommendRequest(user_id=user, k=5))).served_by)  # gone: popularity; the check is due
        await asyncio.gather(*flow._store_checks)
        served.append((await flow.recommend(RecommendRequest(user_id=user, k=5))).served_by)
        return served

    assert asyncio.run(drill()) == ["ranker", "popularity", "ranker"]
    newcomer = flow.store.users(["newcomer"])[0]
    assert newcomer is not None and [list(b) for b in newcomer.baskets] == [[0]]  # the live purchase, from the event log
    assert not flow.restore_if_lost()  # nothing lost now: nothing done
    server.close()
    flow.store.close()
