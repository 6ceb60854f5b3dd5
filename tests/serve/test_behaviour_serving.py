"""A multi-behaviour encoder served: what the online store holds after a shopper's events is what the model was trained
and judged on offline, and every event kind changes its next answer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime

import numpy as np
import pytest

from hyperrec.bundle.user_state import UserState
from hyperrec.data.history_events import history_records
from hyperrec.export.run import load_source
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import RecommendRequest


@pytest.fixture()
def flow(exported_behaviour, tmp_path) -> Iterator[RecommendFlow]:
    config = ServeConfig(registry=exported_behaviour.path.parent, version=exported_behaviour.version, event_log=tmp_path / "log")
    f = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config))
    asyncio.run(f.start())
    yield f
    f.stages.close()


def test_the_served_encoder_reads_what_offline_evaluation_read(flow: RecommendFlow, exported_behaviour) -> None:
    source = load_source(exported_behaviour.manifest.source_run)
    split, bundle = source.split, flow.registry.bundle(flow.current)
    assert bundle.manifest.encoder_inputs == ["items", "kinds", "gaps"]
    window = min(bundle.manifest.max_len, flow.config.retrieval.encoder_len or bundle.manifest.max_len)
    for user in split.test.users[:5]:
        shopper = f"replayed-{user}"
        result = flow.ingest(history_records(split.test.history, user, split.item_ids, shopper))
        assert result.rejected == [] and result.unknown_items == 0
        served = flow.store.users([shopper])[0]
        offline = UserState.from_history(split.test.history, user)
        np.testing.assert_array_equal(served.behaviour_sequence(window), offline.behaviour_sequence(window))
        assert [b.tolist() for b in served.baskets] == [b.tolist() for b in offline.baskets]


def test_each_event_kind_changes_a_behaviour_models_answer(flow: RecommendFlow) -> None:
    table = flow.items[flow.current].table
    items = [str(i) for i in table.item_ids[table.in_stock]]
    start = datetime(2026, 3, 2, 9, tzinfo=UTC).timestamp()

    def send(kind: str, minute: int, **fields) -> None:
        at = datetime.fromtimestamp(start + 60 * minute, UTC).isoformat()
        result = flow.ingest([{"event_type": kind, "user_id": "shopper", "session_id": "visit", "timestamp": at, **fields}])
        assert result.accepted == 1

    def answer() -> list[tuple[str, float]]:
        response = asyncio.run(flow.recommend(RecommendRequest(k=10, user_id="shopper")))
        assert response.served_by == "ranker"
        return [(i.item_id, i.score) for i in response.items]

    send("view", 0, item_id=items[0])
    before = answer()
    for minute, (kind, fields) in enumerate(
        [
            ("view", {"item_id": items[3]}),
            ("click", {"item_id": items[3]}),
            ("add_to_cart", {"item_id": items[3]}),
            ("remove_from_cart", {"item_id": items[3]}),
            ("purchase", {"item_id": items[4], "order_id": "o1"}),
        ],
        start=1,
    ):
        send(kind, minute, **fields)
        after = answer()
        assert after != before, kind
        before = after
