"""No accepted event is lost: what the endpoint acknowledged is on disk in the event log, survives the server
being killed right after (SIGKILL of every process it started, as a crashed host or an OOM kill leaves it),
and a restarted server's memory store is rebuilt from that log."""

from __future__ import annotations

import asyncio
import os
import signal

import httpx

from hyperrec.data.offline_store import OfflineStore
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import RecommendRequest
from tests.serve.processes import alive, family
from tests.serve.test_sigterm import NOW


def fresh_flow(exported, log, **store) -> RecommendFlow:
    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=log, store=store, audit={"enabled": False})
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config))
    asyncio.run(flow.start())
    return flow


def some_items(exported, n: int) -> list[str]:
    import pandas as pd

    return [str(i) for i in pd.read_parquet(exported.path / "items.parquet")["item_id"][:n]]


def batch(items: list[str]) -> list[dict]:
    views = [{"event_type": "view", "session_id": "visit", "item_id": i, "timestamp": NOW} for i in items[:2]]
    bought = [
        {"event_type": "purchase", "user_id": "crash-shopper", "session_id": "visit", "order_id": "o1", "item_id": i, "timestamp": NOW}
        for i in items[2:4]
    ]
    return views + bought + [{"event_type": "identify", "user_id": "crash-shopper", "session_id": "visit", "timestamp": NOW}]


def test_a_restarted_memory_store_is_rebuilt_from_the_event_log(exported, tmp_path):
    items = some_items(exported, 4)
    first = fresh_flow(exported, tmp_path / "log")
    assert first.ingest(batch(items)).accepted == 5
    before = first.store.users(["crash-shopper"])[0]
    again = fresh_flow(exported, tmp_path / "log")  # a new process: an empty memory store, then the log
    after = again.store.users(["crash-shopper"])[0]
    assert after is not None and [b.tolist() for b in after.baskets] == [b.tolist() for b in before.baskets]
    assert after.events.items.tolist() == before.events.items.tolist()
    answer = asyncio.run(again.recommend(RecommendRequest(user_id="crash-shopper", k=5)))
    assert answer.served_by == "ranker"  # personal from the first answer after the restart
    empty = fresh_flow(exported, tmp_path / "log", replay_event_log=False)
    assert empty.store.users(["crash-shopper"])[0] is None


def test_acknowledged_events_survive_the_server_being_killed_right_after(server, exported, tmp_path):
    process, url, recorded, log = server
    items = some_items(exported, 4)
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/events", json=batch(items))
    assert answer.status_code == 200 and answer.json()["accepted"] == 5
    recorded |= family(process.pid)
    for pid in alive(recorded):  # at once: no drain, no shutdown, nothing flushed on the way out
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
    logged = OfflineStore(tmp_path / "log").read()
    assert sorted(logged["event_type"]) == ["identify", "purchase", "purchase", "view", "view"]
    restarted = fresh_flow(exported, tmp_path / "log")
    state = restarted.store.users(["crash-shopper"])[0]
    index = restarted.items[restarted.current].index
    assert sorted(int(i) for b in state.baskets for i in b if i in {index[x] for x in items[2:4]}) == sorted(index[x] for x in items[2:4])
