"""Load what one registry version serves: the retrieval stage and the ranker, and the user seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hyperrec.models.item_index import INDEX_FILE, index_settings, load_index
from hyperrec.models.serving_features import ItemTable
from hyperrec.models.serving_pipeline import OnnxEncoder, OnnxScorer, Retrieval, Scorer
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig


def load_retrieval(registry: Registry, version: str, config: ServeConfig) -> Retrieval:
    path, manifest = registry.path(version), registry.manifest(version)
    if config.ranking.backend == "triton":
        from hyperrec.serve.triton_client import TritonEncoder

        encoder = TritonEncoder(config.ranking.triton_url, model="encoder", max_len=manifest["max_len"])
    else:
        encoder = OnnxEncoder(path / "encoder.onnx", manifest["max_len"], threads=config.ranking.threads)
    r = config.retrieval
    saved = path / INDEX_FILE
    index = load_index(saved, r.use_gpu) if saved.is_file() and manifest.get("index") == index_settings(r.index, r.ann_threshold) else None
    return Retrieval(encoder, np.load(path / "item_vectors.npy"), ItemTable.load(path / "items.parquet"), r, index=index)


def load_scorer(registry: Registry, version: str, config: ServeConfig) -> Scorer:
    if config.ranking.backend == "triton":
        from hyperrec.serve.triton_client import TritonScorer

        return TritonScorer(config.ranking.triton_url, model="ranker")
    return OnnxScorer(registry.path(version) / "ranker.onnx", threads=config.ranking.threads)


def load_item_table(registry: Registry, version: str) -> ItemTable:
    return ItemTable.load(registry.path(version) / "items.parquet")


def user_baskets(path: Path) -> dict[str, list[np.ndarray]]:
    """The export's per-user baskets (user_baskets.parquet) as user id -> baskets, oldest first."""
    frame = pd.read_parquet(path / "user_baskets.parquet")
    out: dict[str, list[np.ndarray]] = {}
    for (user, _), items in frame.groupby(["user_id", "basket"], sort=True)["item"]:
        out.setdefault(str(user), []).append(items.to_numpy(np.int64))
    return out
