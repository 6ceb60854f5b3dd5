"""A servable registry version over the synthetic shop at any catalogue size, for load benchmarks.

Latency depends on the catalogue size, the vector size and the shapes of the models, not on how
well they are trained, so the SASRec encoder keeps its seeded initial weights (training one at 1M
items would take hours here) and the ranker gets a short fit on one held-out basket per user.
The manifest says so (`"trained": false`); its quality numbers are not meant to be read.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch

from hyperrec.config import SyntheticConfig
from hyperrec.data.sequences import build_interactions
from hyperrec.data.synthetic import SyntheticShop
from hyperrec.models.item_index import INDEX_FILE, build_index, index_settings, save_index
from hyperrec.models.ranker import RankerConfig
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.models.serving_features import FEATURE_NAMES, ItemTable
from hyperrec.models.serving_pipeline import OnnxEncoder, RetrievalConfig
from hyperrec.registry import Registry
from hyperrec.train.export import export_checked, user_baskets_frame
from hyperrec.train.export_modules import exportable
from hyperrec.train.serving_ranker import fit_ranker, training_lists

RANKER_USERS = 2_000  # users whose last basket trains the ranker


def synthetic_bundle(registry_root: Path, n_items: int, n_users: int, retrieval: RetrievalConfig, seed: int = 0, log=print) -> str:
    """Publish (and promote) a version over a fresh synthetic shop; returns the version name."""
    started = time.time()
    torch.manual_seed(seed)
    shop = SyntheticShop(SyntheticConfig(n_items=n_items, n_users=n_users, n_categories=max(20, n_items // 2_000), seed=seed))
    dataset = shop.dataset()
    history, user_ids = build_interactions(dataset, ["purchase"])
    log(f"synthetic shop: {n_items:,} items, {history.n_users:,} buyers, {sum(len(b) for b in history.baskets):,} baskets ({time.time() - started:.0f} s)")
    model = SASRec(SASRecConfig(max_len=50, dim=64, n_layers=2, n_heads=2), n_items).eval()
    plan = exportable("sasrec", model)
    registry = Registry(registry_root)
    version, staging = registry.stage()
    try:
        cases = [{"items": np.random.default_rng(seed).integers(0, n_items + 1, (4, 50))}]
        parity = {"encoder": export_checked("encoder", plan.encoder, plan.example, plan.dynamic, "user_vector", staging, cases, 1e-4)}
        np.save(staging / "item_vectors.npy", plan.item_vectors)
        encoder = OnnxEncoder(staging / "encoder.onnx", plan.max_len, threads=torch.get_num_threads())
        sample = np.sort(np.random.default_rng(seed).permutation(history.n_users)[:RANKER_USERS])
        subset = type(history)(history.n_items, [history.baskets[u] for u in sample], [history.times[u] for u in sample])
        index = build_index(plan.item_vectors, retrieval.ann_threshold, kind=retrieval.index)
        save_index(index, staging / INDEX_FILE)
        features, labels, groups = training_lists(subset, dataset.catalog, encoder, plan.item_vectors, retrieval, cutoffs=1, index=index)
        ranker = fit_ranker(features, labels, groups, RankerConfig(epochs=2)).eval()
        parity["ranker"] = export_checked("ranker", ranker, {"features": torch.from_numpy(features[:8])}, {"features": {0: "batch"}}, "scores",
                                          staging, [{"features": features[:150]}], 1e-4)  # fmt: skip
        ItemTable.from_history(history, dataset.catalog).save(staging / "items.parquet")
        user_baskets_frame(history, user_ids).to_parquet(staging / "user_baskets.parquet", index=False)
        manifest = {
            "source_run": None, "trained": False, "model_kind": "sasrec", "max_len": plan.max_len, "dim": int(plan.item_vectors.shape[1]),
            "n_items": n_items, "encoder_inputs": list(plan.example), "feature_names": list(FEATURE_NAMES), "data_fingerprint": None, "index": index_settings(retrieval.index, retrieval.ann_threshold),
            "metrics": {}, "parity": {"passed": True} | {name: p.as_dict() for name, p in parity.items()}, "export_seconds": round(time.time() - started, 1),
        }  # fmt: skip
        registry.commit(version, staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    registry.promote(version, "recall@10", force=True)
    log(f"{version}: {n_items:,}-item bundle in {registry_root} ({time.time() - started:.0f} s)")
    return version
