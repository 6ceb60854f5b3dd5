"""A servable registry version over the synthetic shop at any catalogue size, for load benchmarks.

Latency depends on the catalogue size, the vector size and the shapes of the models, not on how
well they are trained, so the SASRec encoder keeps its seeded initial weights (training one at 1M
items would take hours here) and the ranker gets a short fit on one held-out basket per user.
The manifest says so (`trained: false`); its quality numbers are not meant to be read. The
version is written by the same steps and writer as `hyperrec export`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.manifest import IndexSettings, Manifest
from hyperrec.bundle.retrieval import RetrievalConfig
from hyperrec.bundle.store import staged, user_baskets_frame, write
from hyperrec.config import SyntheticConfig
from hyperrec.data.sequences import build_interactions
from hyperrec.data.synthetic import SyntheticShop
from hyperrec.export.modules import exportable
from hyperrec.export.run import build_index, export_encoder, train_served_ranker
from hyperrec.export.served_ranker import training_lists
from hyperrec.models.ranker import RankerConfig
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.registry import Registry

RANKER_USERS = 2_000  # users whose last basket trains the ranker
TOLERANCE = 1e-4


def synthetic_bundle(registry_root: Path, n_items: int, n_users: int, retrieval: RetrievalConfig, seed: int = 0, log=print) -> str:
    """Publish (and promote) a version over a fresh synthetic shop; returns the version name."""
    started = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    shop = SyntheticShop(SyntheticConfig(n_items=n_items, n_users=n_users, n_categories=max(20, n_items // 2_000), seed=seed))
    dataset = shop.dataset()
    history, user_ids = build_interactions(dataset, ["purchase"])
    log(
        f"synthetic shop: {n_items:,} items, {history.n_users:,} buyers, "
        f"{sum(len(b) for b in history.baskets):,} baskets ({time.time() - started:.0f} s)"
    )
    plan = exportable("sasrec", SASRec(SASRecConfig(max_len=50, dim=64, n_layers=2, n_heads=2), n_items).eval())
    registry = Registry(registry_root)
    version, staging = registry.stage()
    with staged(staging):
        cases = [{"items": rng.integers(0, n_items + 1, (4, plan.max_len))}]
        encoder = export_encoder(plan, staging, cases, TOLERANCE, rng)
        sample = np.sort(rng.permutation(history.n_users)[:RANKER_USERS])
        subset = type(history)(history.n_items, [history.baskets[u] for u in sample], [history.times[u] for u in sample])
        index = build_index(plan, retrieval)
        features, labels, groups = training_lists(
            subset, dataset.catalog, encoder.encoder, plan.item_vectors, retrieval, cutoffs=1, index=index
        )
        ranker = train_served_ranker(features, labels, groups, RankerConfig(epochs=2), staging, TOLERANCE, rng)
        items = ItemTable.from_history(history, dataset.catalog)
        write(staging, item_vectors=plan.item_vectors, index=index, items=items, user_baskets=user_baskets_frame(history, user_ids))
        manifest = Manifest(
            trained=False,
            model_kind="sasrec",
            max_len=plan.max_len,
            dim=int(plan.item_vectors.shape[1]),
            n_items=n_items,
            encoder_inputs=list(plan.example),
            feature_names=list(FEATURE_NAMES),
            parity=encoder.parity | {"ranker": ranker.parity},
            retrieval=retrieval,
            index=IndexSettings(index=retrieval.index, ann_threshold=retrieval.ann_threshold),
            export_seconds=round(time.time() - started, 1),
        )
        registry.commit(version, staging, manifest)
    registry.promote(version, "recall@10", force=True)
    log(f"{version}: {n_items:,}-item bundle in {registry_root} ({time.time() - started:.0f} s)")
    return version
