"""What a registry version is: its typed manifest and the names of its files.

The manifest is the one contract between export (which writes it) and serving, the registry and
the reports (which read it). It is read in one place, `read_manifest`; a manifest written by an
older hyperrec is upgraded there or refused with a message naming the version and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from hyperrec.bundle.retrieval import RetrievalConfig
from hyperrec.config import DataConfig, ModelKind, StrictModel
from hyperrec.models.item_index import IndexKind
from hyperrec.models.ranker import RankerConfig

SCHEMA_VERSION = 2

MANIFEST = "manifest.json"
ENCODER = "encoder.onnx"  # the user/sequence encoder: (items [B, L], context [B]) -> user vectors [B, D]
RANKER = "ranker.onnx"  # the served ranker: features [N, F] -> scores [N]
ITEM_VECTORS = "item_vectors.npy"  # [n_items, D] float32, row = item index
ITEM_INDEX = "item_index.faiss"  # the retrieval index built over ITEM_VECTORS with `Manifest.index`
ITEMS = "items.parquet"  # the item table (hyperrec/bundle/features.py::ItemTable)
USER_BASKETS = "user_baskets.parquet"  # (user_id, basket, item) rows: the online store's seed
TRITON = "triton"  # a Triton model repository of the same ONNX files
COHORTS = "cohorts.parquet"  # (cohort, rank, item): the lists of shoppers with nothing yet, by context (cohorts.py)
BOUGHT_TOGETHER = "bought_together.npz"  # each item's top co-purchased items (bought_together.py): product and cart placements
DRIFT_REFERENCE = "drift_reference.npz"  # the ranker's inputs and scores at export, for drift monitors (drift.py)
SERVED_PER_USER = "served_per_user.csv.gz"  # per-user metrics of the served path, for paired comparisons


class BundleError(ValueError):
    """A version folder that cannot be served; the message names the version and what to do."""


class ParityCheck(StrictModel):
    """One ONNX file checked against its torch module."""

    max_abs_error: float
    tolerance: float
    cases: int = Field(ge=0)
    passed: bool


class IndexSettings(StrictModel):
    """What decides which retrieval index is built: a saved index is reused when these match."""

    index: IndexKind = "auto"
    ann_threshold: int = Field(100_000, ge=1)


class Manifest(StrictModel):
    schema_version: Literal[2] = SCHEMA_VERSION
    version: str | None = Field(None, description="set by the registry when the version is committed")
    created: str | None = None
    source_run: str | None = Field(None, description="the training run exported; None for a synthetic bench bundle")
    trained: bool = Field(True, description="False for bench bundles: seeded, untrained encoder; quality numbers are not meant to be read")
    model_kind: ModelKind
    max_len: int = Field(ge=1)
    dim: int = Field(ge=1)
    n_items: int = Field(ge=1)
    encoder_inputs: list[str]
    feature_names: list[str]
    data: DataConfig | None = None
    data_fingerprint: str | None = None
    metrics: dict[str, float] = Field({}, description="the served path (retrieval + ranker), full ranking on the run's test task")
    retrieval_only_metrics: dict[str, float] = {}
    explore_slot_metrics: dict[str, dict[str, float]] = Field({}, description="served path with N exploration slots, by N")
    run_test_metrics: dict[str, float] = {}
    parity: dict[str, ParityCheck] = Field(description="by ONNX file stem: encoder, ranker, item_tower")
    retrieval: RetrievalConfig = RetrievalConfig()
    index: IndexSettings = IndexSettings()
    ranker: RankerConfig | None = None
    ranker_without: list[str] = Field([], description="served features the ranker does not read (ExportConfig.ranker_without)")
    export_seconds: float = Field(ge=0)

    @property
    def parity_passed(self) -> bool:
        return bool(self.parity) and all(check.passed for check in self.parity.values())


def _upgrade_v1(raw: dict[str, Any]) -> dict[str, Any]:
    """Schema 1 (untyped, before the bundle package): parity held its verdict next to the checks,
    and bench bundles had no retrieval section."""
    parity = {name: check for name, check in raw.get("parity", {}).items() if isinstance(check, dict)}
    return {key: value for key, value in raw.items() if key not in ("parity", "trained")} | {
        "schema_version": SCHEMA_VERSION,
        "parity": parity,
        "trained": raw.get("trained", True),
    }


def read_manifest(folder: Path) -> Manifest:
    path = Path(folder) / MANIFEST
    version = Path(folder).name
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise BundleError(f"{version}: cannot read {path} ({error}); export the run again with `hyperrec export RUN`") from None
    schema = raw.get("schema_version", 1)
    if schema == 1:
        raw = _upgrade_v1(raw)
    elif schema != SCHEMA_VERSION:
        raise BundleError(
            f"{version}: manifest schema {schema}, this hyperrec reads {SCHEMA_VERSION}; "
            f"serve it with the hyperrec that wrote it, or export its run again (`hyperrec export {raw.get('source_run') or 'RUN'}`)"
        )
    try:
        return Manifest.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise BundleError(f"{version}: {path} field '{field}': {first['msg']}; export its run again with `hyperrec export RUN`") from None


def write_manifest(folder: Path, manifest: Manifest) -> None:
    (Path(folder) / MANIFEST).write_text(manifest.model_dump_json(indent=2))
