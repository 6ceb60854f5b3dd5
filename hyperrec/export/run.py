"""`hyperrec export RUN`: a training run becomes a servable, versioned bundle in the registry.

Named steps, each returning what the next needs and what the manifest records:
1. `export_encoder`: the run's user encoder (and, for two-tower, the item tower) to ONNX with
   dynamic axes, checked against torch on random and on real inputs;
2. `build_index`: the retrieval index over the item vectors;
3. `train_served_ranker`: the ranker, trained on the candidates the exported encoder's retrieval
   produces (served_ranker.py), to ONNX with its own parity check;
4. `evaluate_bundle`: full ranking of the served path (retrieval + ranker; the policy's diversity
   and caps are not part of it) on the run's test task, also with exploration slots;
5. `write_triton`: a Triton model repository of the same ONNX files;
6. `publish`: the bundle's files and typed manifest committed as a version, then promoted if it
   beats the current one on the gate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator

from hyperrec.bundle import manifest as files
from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.cohorts import CohortLists
from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.manifest import IndexSettings, Manifest, ParityCheck
from hyperrec.bundle.onnx_models import OnnxEncoder, OnnxScorer, sequence_feeds
from hyperrec.bundle.retrieval import Retrieval, RetrievalConfig
from hyperrec.bundle.store import staged, user_baskets_frame, write
from hyperrec.config import ExperimentConfig, StrictModel
from hyperrec.data.dataset import Dataset
from hyperrec.data.sequences import Interactions, Split, make_split
from hyperrec.data.sources import load_dataset
from hyperrec.data.windows import recent_behaviour, recent_items
from hyperrec.export.modules import ExportPlan, exportable
from hyperrec.export.onnx import export_checked
from hyperrec.export.served_ranker import evaluate_serving, fit_ranker, serving_reference, training_lists, user_context
from hyperrec.export.triton_repo import write_model_repository
from hyperrec.models import item_index
from hyperrec.models.ranker import RankerConfig
from hyperrec.registry import Promotion, Registry
from hyperrec.train.runs import load_model, run_config
from hyperrec.train.tracking import RECORD_FILE

KS = [10, 20]
EXPLORE_SLOTS = (1, 2)  # the policy's exploration slot, evaluated offline at these sizes (recall vs explore recall)
LIST_LENGTH = 100


class ExportConfig(StrictModel):
    registry: Path = Field(Path("experiments/registry"), description="registry root the version is written to")
    retrieval: RetrievalConfig = RetrievalConfig()
    ranker: RankerConfig = RankerConfig(epochs=8)
    cutoffs: int = Field(5, ge=1, description="held-out baskets per user the ranker learns from")
    ranker_without: list[str] = Field(
        [],
        description="served features the ranker does not read (still computed, monitored and in the input contract). On the "
        "Instacart demo run, [ann_score, ann_inv_rank] with cutoffs=20 ranks better (benchmarks/served_ranker_features.py)",
    )
    gate_metric: str = "recall@10"
    min_delta: float = Field(0.0, description="promote only if gate_metric beats the current version by this much")
    promote: bool = True
    gpu: bool = Field(False, description="Triton instance_group KIND_GPU instead of KIND_CPU")
    parity_tolerance: float = Field(1e-4, gt=0)

    @field_validator("ranker_without")
    @classmethod
    def _served_features(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"unknown served feature(s) {unknown}; the served features are {list(FEATURE_NAMES)}")
        if set(names) >= set(FEATURE_NAMES):
            raise ValueError("the ranker must read at least one served feature")
        return names


@dataclass(frozen=True)
class ExportResult:
    version: str
    path: Path
    manifest: Manifest
    promotion: Promotion | None


@dataclass(frozen=True)
class SourceRun:
    """What export reads of a training run: its config, data, split and model."""

    path: Path
    config: ExperimentConfig
    dataset: Dataset
    split: Split
    plan: ExportPlan


@dataclass(frozen=True)
class EncoderStep:
    encoder: OnnxEncoder
    parity: dict[str, ParityCheck]


@dataclass(frozen=True)
class RankerStep:
    scorer: OnnxScorer
    parity: ParityCheck


@dataclass(frozen=True)
class BundleEvaluation:
    served: dict[str, float]
    retrieval_only: dict[str, float]
    explore_slots: dict[str, dict[str, float]]


def load_source(run_dir: Path) -> SourceRun:
    config = run_config(run_dir)
    dataset = load_dataset(config.data)
    split = make_split(dataset, config.data)
    model, _ = load_model(run_dir, dataset.catalog)
    return SourceRun(run_dir, config, dataset, split, exportable(config.model.kind, model))


def encoder_cases(plan: ExportPlan, n_items: int, rng: np.random.Generator, split: Split | None = None) -> list[dict[str, np.ndarray]]:
    """Random inputs at three shapes, and (with `split`) 64 real test users' sequences and contexts."""
    cases = []
    for batch, length in [(1, 1), (3, 7), (16, plan.max_len)]:
        case = {}
        for name, example in plan.example.items():
            shape = (batch, length) if example.dim() == 2 else (batch,)
            high = n_items + 1 if name == "items" else int(example.max()) + 1
            case[name] = rng.integers(0, max(high, 1), shape).astype(np.int64)
        cases.append(case)
    if split is not None:
        users, history = split.test.users[:64], split.test.history
        if "kinds" in plan.example:
            sequences = sequence_feeds(recent_behaviour(history, users, plan.max_len))
        else:
            sequences = {"items": recent_items(history, users, plan.max_len)}
        real = sequences | user_context(history, users)
        cases.append({name: real[name] for name in plan.example})
    return cases


def export_encoder(
    plan: ExportPlan, folder: Path, cases: list[dict[str, np.ndarray]], tolerance: float, rng: np.random.Generator
) -> EncoderStep:
    parity = {"encoder": export_checked("encoder", plan.encoder, plan.example, plan.dynamic, "user_vector", folder, cases, tolerance)}
    n_items = len(plan.item_vectors)
    for name, module in plan.extra.items():
        example = plan.extra_examples[name]
        extra_cases = [{k: rng.integers(1, n_items + 1, n).astype(np.int64) for k in example} for n in (1, 17, 256)]
        parity[name] = export_checked(name, module, example, plan.extra_dynamic[name], "item_vector", folder, extra_cases, tolerance)
    return EncoderStep(OnnxEncoder(folder / files.ENCODER, plan.max_len, threads=torch.get_num_threads()), parity)


def build_index(plan: ExportPlan, config: RetrievalConfig):
    return item_index.build_index(plan.item_vectors, config.ann_threshold, kind=config.index)


def train_served_ranker(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    config: RankerConfig,
    folder: Path,
    tolerance: float,
    rng: np.random.Generator,
    without: Sequence[str] = (),
) -> RankerStep:
    ranker = fit_ranker(features, labels, groups, config, without).eval()
    cases = [features[:1], features[: min(len(features), 150)], rng.normal(size=(64, len(FEATURE_NAMES))).astype(np.float32)]
    example = {"features": torch.from_numpy(features[:8])}
    parity = export_checked(
        "ranker", ranker, example, {"features": {0: "batch"}}, "scores", folder, [{"features": c} for c in cases], tolerance
    )
    return RankerStep(OnnxScorer(folder / files.RANKER), parity)


def write_serving_side(
    folder: Path,
    encoder: OnnxEncoder,
    item_vectors: np.ndarray,
    index,
    config: RetrievalConfig,
    history: Interactions,
    catalog: pd.DataFrame,
    user_ids: np.ndarray,
    scorer: OnnxScorer,
    rng: np.random.Generator,
    events: pd.DataFrame | None = None,
) -> None:
    """What serving reads besides the ONNX files: vectors, index, today's item table, the shoppers' seed, the items
    bought together, the cohort lists (from `events`: item events with their context; none without), and the drift
    reference taken from that same serving retrieval."""
    items = ItemTable.from_history(history, catalog)
    serving = Retrieval(encoder, item_vectors, items, config, index=index)
    drift = serving_reference(serving, scorer, history, rng)
    baskets = user_baskets_frame(history, user_ids)
    together = BoughtTogether.from_history(history)
    cohorts = CohortLists.from_events(events, pd.Index(catalog["item_id"])) if events is not None else CohortLists({})
    write(
        folder,
        item_vectors=item_vectors,
        index=index,
        items=items,
        user_baskets=baskets,
        drift=drift,
        bought_together=together,
        cohorts=cohorts,
    )


def evaluate_bundle(retrieval: Retrieval, scorer: OnnxScorer, split: Split, folder: Path) -> BundleEvaluation:
    served = evaluate_serving(retrieval, scorer, split.test, KS, LIST_LENGTH)
    served.per_user.to_csv(folder / files.SERVED_PER_USER, index=False)  # for paired comparisons with other methods
    return BundleEvaluation(
        served=served.summary,
        retrieval_only=evaluate_serving(retrieval, None, split.test, KS, LIST_LENGTH).summary,
        explore_slots={
            str(n): evaluate_serving(retrieval, scorer, split.test, KS, LIST_LENGTH, explore_slots=n).summary for n in EXPLORE_SLOTS
        },
    )


def write_triton(folder: Path, plan: ExportPlan, gpu: bool) -> None:
    onnx_files = {name: folder / f"{name}.onnx" for name in ("encoder", "ranker", *plan.extra)}
    write_model_repository(folder / files.TRITON, onnx_files, gpu=gpu)


def export_run(run_dir: Path, config: ExportConfig, log: Callable[[str], object] = print) -> ExportResult:
    started = time.time()
    source = load_source(run_dir)
    plan, split, catalog, r = source.plan, source.split, source.dataset.catalog, config.retrieval
    registry = Registry(config.registry)
    version, staging = registry.stage()
    rng = np.random.default_rng(0)
    with staged(staging):
        cases = encoder_cases(plan, len(catalog), rng, split)
        encoder = export_encoder(plan, staging, cases, config.parity_tolerance, rng)
        log(f"exported the encoder: max abs error vs torch {encoder.parity['encoder'].max_abs_error:.2e}")

        index = build_index(plan, r)
        # The ranker learns next purchases, the serving side is built from purchases; of event data only the evaluation
        # (the run's own task, on states with their events) reads the rest.
        bought = split.test.history.orders()
        features, labels, groups = training_lists(bought, catalog, encoder.encoder, plan.item_vectors, r, config.cutoffs, index)
        log(f"ranker: {groups[-1] + 1} training lists, {len(labels)} candidates, {labels.mean():.3f} positive")
        ranker = train_served_ranker(features, labels, groups, config.ranker, staging, config.parity_tolerance, rng, config.ranker_without)

        test_retrieval = Retrieval(encoder.encoder, plan.item_vectors, ItemTable.from_history(bought, catalog), r, index=index)
        evaluation = evaluate_bundle(test_retrieval, ranker.scorer, split, staging)

        data = source.config.data
        events = source.dataset.events
        events = events[events["event_type"].isin(data.event_types) & events["item_id"].notna()]
        full = split.full.orders()
        write_serving_side(staging, encoder.encoder, plan.item_vectors, index, r, full, catalog, split.user_ids, ranker.scorer, rng, events)
        write_triton(staging, plan, config.gpu)
        manifest = Manifest(
            source_run=str(run_dir),
            model_kind=source.config.model.kind,
            max_len=plan.max_len,
            dim=int(plan.item_vectors.shape[1]),
            n_items=len(catalog),
            encoder_inputs=list(plan.example),
            feature_names=list(FEATURE_NAMES),
            data=source.config.data,
            data_fingerprint=source.dataset.fingerprint(),
            metrics=evaluation.served,
            retrieval_only_metrics=evaluation.retrieval_only,
            explore_slot_metrics=evaluation.explore_slots,
            run_test_metrics=_run_test_metrics(run_dir),
            parity=encoder.parity | {"ranker": ranker.parity},
            retrieval=r,
            index=IndexSettings(index=r.index, ann_threshold=r.ann_threshold),
            ranker=config.ranker,
            ranker_without=config.ranker_without,
            export_seconds=round(time.time() - started, 1),
        )
        path = registry.commit(version, staging, manifest)
    promotion = registry.promote(version, config.gate_metric, config.min_delta) if config.promote else None
    return ExportResult(version, path, registry.manifest(version), promotion)


def _run_test_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / RECORD_FILE).read_text()).get("test", {})
