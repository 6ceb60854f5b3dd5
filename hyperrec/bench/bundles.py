"""A servable registry version over the synthetic shop at any catalogue size, for load benchmarks.

Latency depends on the catalogue size, the vector size, the shapes of the models and the length
of the shoppers' histories, not on how well the models are trained, so the SASRec encoder keeps
its seeded initial weights (training one at 1M items would take hours here) and the ranker gets a
short fit on one held-out basket per user. The manifest says so (`trained: false`); its quality
numbers are not meant to be read. The version is written by the same steps and writer as
`hyperrec export`.

What is served is shaped like the committed configs: the encoder has the dimensions and the
input length (`max_len`) of SERVED_CONFIG, and the shoppers have the histories of a
`HistoryProfile` (Instacart-like by default: tens of orders of ~10 items, most of them re-bought),
drawn over the synthetic shop's catalogue (its categories, prices, stock and item popularity).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from pydantic import Field

from hyperrec.bundle.features import FEATURE_NAMES
from hyperrec.bundle.manifest import IndexSettings, Manifest
from hyperrec.bundle.retrieval import RetrievalConfig
from hyperrec.bundle.store import staged
from hyperrec.config import StrictModel, SyntheticConfig, load_config
from hyperrec.data.sequences import Interactions
from hyperrec.data.synthetic import SyntheticShop
from hyperrec.export.modules import exportable
from hyperrec.export.run import build_index, export_encoder, train_served_ranker, write_serving_side
from hyperrec.export.served_ranker import training_lists
from hyperrec.models.ranker import RankerConfig
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.registry import Registry

RANKER_USERS = 2_000  # users whose last basket trains the ranker
TOLERANCE = 1e-4
SERVED_CONFIG = Path(__file__).resolve().parents[2] / "configs/train/sasrec_repeat_instacart.yaml"
ORDER_GAP_S = 7 * 86_400  # mean time between a shopper's orders
START_S = 1_700_000_000


class HistoryProfile(StrictModel):
    """How much the bench bundle's shoppers have bought (the defaults are shaped like Instacart's sample)."""

    orders_per_user: float = Field(30.0, ge=1, description="mean number of orders (Poisson, at least 2)")
    items_per_order: float = Field(10.0, ge=1, description="mean distinct items per order (1 + Poisson)")
    repeat_share: float = Field(0.6, ge=0, le=1, description="share of an order's items re-bought from the shopper's staples")
    staples: int = Field(30, ge=1, description="items a shopper re-buys from (the first ones most often)")


def encoder_config(path: Path = SERVED_CONFIG) -> SASRecConfig:
    """The served SASRec's shape (max_len, dim, layers, heads) of a committed training config."""
    params = load_config(path).model.params
    return SASRecConfig(**{key: params[key] for key in ("max_len", "dim", "n_layers", "n_heads") if key in params})


def shopper_histories(shop: SyntheticShop, n_users: int, profile: HistoryProfile, rng: np.random.Generator) -> Interactions:
    """Each shopper: orders whose items are, with `repeat_share`, one of their staples, else any item by popularity."""
    weights = np.exp(shop.item_bias.astype(np.float64))
    cdf = np.cumsum(weights) / weights.sum()
    n_items = len(weights)

    def popular(n: int) -> np.ndarray:
        return np.minimum(np.searchsorted(cdf, rng.random(n)), n_items - 1)

    baskets, times = [], []
    for _ in range(n_users):
        n_orders = max(2, int(rng.poisson(profile.orders_per_user)))
        sizes = 1 + rng.poisson(profile.items_per_order - 1, n_orders)
        slots = int(sizes.sum())
        staples = popular(profile.staples)[(profile.staples * rng.random(slots) ** 2).astype(np.int64)]
        items = np.where(rng.random(slots) < profile.repeat_share, staples, popular(slots))
        orders = np.split(items, np.cumsum(sizes)[:-1])
        baskets.append([order[np.sort(np.unique(order, return_index=True)[1])] for order in orders])
        times.append(START_S + np.cumsum(rng.exponential(ORDER_GAP_S, n_orders)).astype(np.int64))
    return Interactions(n_items, baskets, times)


def synthetic_bundle(
    registry_root: Path,
    n_items: int,
    n_users: int,
    retrieval: RetrievalConfig,
    profile: HistoryProfile | None = None,
    seed: int = 0,
    log=print,
) -> str:
    """Publish (and promote) a version over a fresh synthetic shop; returns the version name."""
    started = time.time()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    shop = SyntheticShop(SyntheticConfig(n_items=n_items, n_users=n_users, n_categories=max(20, n_items // 2_000), seed=seed))
    history = shopper_histories(shop, n_users, profile or HistoryProfile(), rng)
    user_ids = np.array([f"u{u}" for u in range(n_users)])
    log(
        f"synthetic shop: {n_items:,} items, {history.n_users:,} shoppers, "
        f"{sum(len(b) for b in history.baskets):,} orders ({time.time() - started:.0f} s)"
    )
    plan = exportable("sasrec", SASRec(encoder_config(), n_items).eval())
    registry = Registry(registry_root)
    version, staging = registry.stage()
    with staged(staging):
        cases = [{"items": rng.integers(0, n_items + 1, (4, plan.max_len))}]
        encoder = export_encoder(plan, staging, cases, TOLERANCE, rng)
        sample = np.sort(rng.permutation(history.n_users)[:RANKER_USERS])
        subset = type(history)(history.n_items, [history.baskets[u] for u in sample], [history.times[u] for u in sample])
        index = build_index(plan, retrieval)
        features, labels, groups = training_lists(
            subset, shop.catalog, encoder.encoder, plan.item_vectors, retrieval, cutoffs=1, index=index
        )
        ranker = train_served_ranker(features, labels, groups, RankerConfig(epochs=2), staging, TOLERANCE, rng)
        write_serving_side(
            staging, encoder.encoder, plan.item_vectors, index, retrieval, history, shop.catalog, user_ids, ranker.scorer, rng
        )
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
