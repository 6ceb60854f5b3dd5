"""No train/serve skew: the served ranker's features, computed the way export computes them and the
way serving computes them, from the same purchases, are the same matrix.

Export builds a user's state from `Interactions` grouped out of logged events
(`build_interactions` -> `UserState.from_history`, as hyperrec/export/served_ranker.py does);
serving builds it from the contract events `/events` feeds into the online store. Both then go
through the same `Retrieval.candidates` with the version's real ONNX encoder and FAISS index.
"""

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from hyperrec.bundle.retrieval import Retrieval, context_arrays
from hyperrec.bundle.user_state import UserState
from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.sequences import build_interactions
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore

USER = "skew-shopper"
START = datetime(2026, 3, 2, 9, tzinfo=UTC)
# Orders of one shopper: (order id, positions into the in-stock items, in the order they were put in
# the basket). Items repeat across orders and are not sorted inside one, so that a reordering on
# either side changes the encoder's sequence and the count and recency features.
ORDERS = [("o1", [5, 2, 9]), ("o2", [2, 7]), ("o3", [9, 2, 11, 5]), ("o4", [3]), ("o5", [7, 14, 2])]


def order_events(items: np.ndarray) -> list[list[dict]]:
    """One `/events` batch per order (what a shop sends at checkout), item lines a second apart."""
    batches = []
    for day, (order, positions) in enumerate(ORDERS):
        batch = []
        for line, position in enumerate(positions):
            moment = START + timedelta(days=day, seconds=line)
            record = {"event_type": "purchase", "user_id": USER, "session_id": f"s-{order}", "order_id": order}
            batch.append(record | {"item_id": str(items[position]), "timestamp": moment.isoformat()})
        batches.append(batch)
    return batches


@pytest.fixture(scope="module")
def served(exported, tmp_path_factory):
    """A flow serving the exported version, fed the shopper's purchases through its event ingestion."""
    log = tmp_path_factory.mktemp("skew") / "log"
    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=log, store={"seed_users": False})
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config))
    asyncio.run(flow.start())
    table = flow.items[flow.current].table
    in_stock = table.item_ids[table.in_stock]
    for batch in order_events(in_stock):
        assert flow.ingest(batch).accepted == len(batch)
    return flow, OfflineStore(log).read()


def export_state(events: pd.DataFrame, item_ids: np.ndarray) -> UserState:
    """The user's state the way export gets it: the logged events grouped into baskets, then `from_history`."""
    history, user_ids = build_interactions(Dataset("served", events, catalog_from_items(item_ids)), ["purchase"])
    return UserState.from_history(history, list(user_ids).index(USER))


def features(retrieval: Retrieval, state: UserState) -> tuple[np.ndarray, np.ndarray]:
    context = context_arrays([{}], np.array([(START + timedelta(days=len(ORDERS))).timestamp()]))
    candidates = retrieval.candidates([state], context)[0]
    return candidates.items, candidates.features


def test_export_and_serving_compute_the_same_ranker_features(served):
    flow, logged = served
    retrieval = flow.stages.retrieval.get(flow.current)  # the serving stage's own Retrieval (ONNX encoder, FAISS index)
    item_ids = flow.items[flow.current].table.item_ids
    offline = export_state(logged, item_ids)
    online = flow.store.users([USER])[0]
    assert online is not None and online.n_baskets == offline.n_baskets == len(ORDERS)
    for a, b in zip(offline.baskets, online.baskets, strict=True):
        assert a.tolist() == b.tolist()
    offline_items, offline_features = features(retrieval, offline)
    online_items, online_features = features(retrieval, online)
    assert offline_items.tolist() == online_items.tolist()
    # Exactly equal, not merely close: both sides run the same float32 code on identical inputs
    # (same sequence, same batch of one, same index), so any difference at all is skew.
    np.testing.assert_array_equal(offline_features, online_features)
    bought = np.unique(np.concatenate(online.baskets))
    repeat = np.isin(online_items, bought)
    assert repeat.sum() == len(bought)  # every in-stock item the shopper bought is a candidate


@pytest.mark.parametrize("dropped", [0, 6, 12], ids=["first", "middle", "last"])
def test_the_comparison_sees_one_purchase_dropped_on_one_side(served, dropped):
    """The equality above can fail: the same comparison with one purchase line missing on the export side."""
    flow, logged = served
    retrieval = flow.stages.retrieval.get(flow.current)
    item_ids = flow.items[flow.current].table.item_ids
    short = logged.drop(index=logged.index[dropped]).reset_index(drop=True)
    _, offline_features = features(retrieval, export_state(short, item_ids))
    _, online_features = features(retrieval, flow.store.users([USER])[0])
    assert offline_features.shape != online_features.shape or not np.array_equal(offline_features, online_features)
