"""One registry version on disk: `write` the files export and the bench bundles produce, `load`
them back for serving. The manifest (manifest.py) says what the version is; this module knows
where each of its parts lives and how each is read."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from hyperrec.bundle import manifest as files
from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.cohorts import CohortLists
from hyperrec.bundle.drift import DriftReference
from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.manifest import IndexSettings, Manifest, read_manifest
from hyperrec.bundle.onnx_models import Encoder, OnnxEncoder, OnnxScorer, Scorer
from hyperrec.bundle.retrieval import Retrieval, RetrievalConfig
from hyperrec.bundle.user_state import MAX_BASKETS
from hyperrec.config import StrictModel
from hyperrec.data.sequences import Interactions
from hyperrec.models.item_index import load_index, save_index


class ModelRuntime(StrictModel):
    """Where the bundle's ONNX models run."""

    backend: Literal["onnxruntime", "triton"] = "onnxruntime"
    triton_url: str = Field("127.0.0.1:8100", description="host:port of Triton's HTTP endpoint (backend: triton)")
    threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads per replica")


def user_baskets_frame(history: Interactions, user_ids: np.ndarray) -> pd.DataFrame:
    """Every user's last MAX_BASKETS baskets as (user_id, basket, item) rows: the online store's seed."""
    rows = [
        (user_ids[u], b, item)
        for u, baskets in enumerate(history.baskets)
        for b, basket in enumerate(baskets[-MAX_BASKETS:])
        for item in basket
    ]
    return pd.DataFrame(rows, columns=["user_id", "basket", "item"]).astype({"user_id": str, "basket": np.int32, "item": np.int64})


@contextmanager
def staged(folder: Path) -> Iterator[Path]:
    """`folder` while a version is written into it; removed if the writing fails."""
    try:
        yield folder
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def write(
    folder: Path,
    *,
    item_vectors: np.ndarray,
    index,
    items: ItemTable,
    user_baskets: pd.DataFrame,
    drift: DriftReference,
    bought_together: BoughtTogether,
    cohorts: CohortLists,
) -> None:
    """The retrieval side of a version and its drift reference (the ONNX files are written, and checked, by export)."""
    drift.save(folder / files.DRIFT_REFERENCE)
    cohorts.save(folder / files.COHORTS)
    bought_together.save(folder / files.BOUGHT_TOGETHER)
    np.save(folder / files.ITEM_VECTORS, np.ascontiguousarray(item_vectors, np.float32))
    save_index(index, folder / files.ITEM_INDEX)
    items.save(folder / files.ITEMS)
    user_baskets.to_parquet(folder / files.USER_BASKETS, index=False)


@dataclass
class Bundle:
    """A committed version folder and its manifest; each part is read when first asked for."""

    path: Path
    manifest: Manifest

    def encoder(self, runtime: ModelRuntime) -> Encoder:
        if runtime.backend == "triton":
            from hyperrec.bundle.triton_client import TritonEncoder

            behaviour = "kinds" in self.manifest.encoder_inputs
            return TritonEncoder(runtime.triton_url, model="encoder", max_len=self.manifest.max_len, behaviour=behaviour)
        return OnnxEncoder(self.path / files.ENCODER, self.manifest.max_len, threads=runtime.threads)

    def scorer(self, runtime: ModelRuntime) -> Scorer:
        if runtime.backend == "triton":
            from hyperrec.bundle.triton_client import TritonScorer

            return TritonScorer(runtime.triton_url, model="ranker")
        return OnnxScorer(self.path / files.RANKER, threads=runtime.threads)

    @cached_property
    def item_vectors(self) -> np.ndarray:
        return np.load(self.path / files.ITEM_VECTORS)

    def drift_reference(self) -> DriftReference | None:
        """None for a version exported before drift references existed."""
        path = self.path / files.DRIFT_REFERENCE
        return DriftReference.load(path) if path.is_file() else None

    def item_table(self) -> ItemTable:
        return ItemTable.load(self.path / files.ITEMS)

    def retrieval(self, config: RetrievalConfig, runtime: ModelRuntime) -> Retrieval:
        """The saved index when it was built with `config`'s index settings, else one built now."""
        saved = self.path / files.ITEM_INDEX
        settings = IndexSettings(index=config.index, ann_threshold=config.ann_threshold)
        index = load_index(saved, config.use_gpu) if saved.is_file() and self.manifest.index == settings else None
        together = self.bought_together()
        return Retrieval(self.encoder(runtime), self.item_vectors, self.item_table(), config, index=index, bought_together=together)

    def cohorts(self) -> CohortLists:
        """Empty for a version exported before cohort lists were kept (its cold shoppers get the global list)."""
        path = self.path / files.COHORTS
        return CohortLists.load(path) if path.is_file() else CohortLists({})

    def bought_together(self) -> BoughtTogether | None:
        """None for a version exported before it was kept (its product and cart pages have no "bought with")."""
        path = self.path / files.BOUGHT_TOGETHER
        return BoughtTogether.load(path) if path.is_file() else None

    def shopper_ids(self) -> list[str]:
        """The ids of the shoppers the version's seed holds, sorted (only that column is read)."""
        return sorted(pd.read_parquet(self.path / files.USER_BASKETS, columns=["user_id"])["user_id"].astype(str).unique())

    def user_baskets(self) -> dict[str, list[np.ndarray]]:
        """The export's per-user baskets as user id -> baskets, oldest first."""
        frame = pd.read_parquet(self.path / files.USER_BASKETS)
        out: dict[str, list[np.ndarray]] = {}
        for (user, _), items in frame.groupby(["user_id", "basket"], sort=True)["item"]:
            out.setdefault(str(user), []).append(items.to_numpy(np.int64))
        return out


def load(path: Path) -> Bundle:
    return Bundle(Path(path), read_manifest(path))
