"""`hyperrec export RUN`: a training run becomes a servable, versioned bundle in the registry.

Steps, each checked:
1. the run's user encoder (and, for two-tower, the item tower) to ONNX with dynamic axes, with a
   parity check against torch on random and on real inputs;
2. the item vectors retrieval indexes, and the item table (popularity, trend, price, ...);
3. the served ranker, trained on the candidates the exported encoder's retrieval produces
   (hyperrec/train/serving_ranker.py), to ONNX with its own parity check;
4. an offline full-ranking evaluation of the served path (retrieval + ranker; the policy's
   diversity and caps are not part of it) on the run's test task, also with exploration slots;
5. a Triton model repository of the same ONNX files;
6. registry: publish the version, then promote it if it beats the current one on the gate.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import Field

from hyperrec.config import StrictModel
from hyperrec.data.sequences import Interactions, Split, make_split
from hyperrec.data.sources import load_dataset
from hyperrec.data.user_state import MAX_BASKETS
from hyperrec.data.windows import recent_items
from hyperrec.models.item_index import INDEX_FILE, build_index, index_settings, save_index
from hyperrec.models.ranker import RankerConfig
from hyperrec.models.serving_features import FEATURE_NAMES, ItemTable
from hyperrec.models.serving_pipeline import OnnxEncoder, OnnxScorer, Retrieval, RetrievalConfig
from hyperrec.registry import Promotion, Registry
from hyperrec.train.export_modules import ExportPlan, exportable
from hyperrec.train.onnx_export import Parity, check_parity, export_onnx
from hyperrec.train.runs import load_model, run_config
from hyperrec.train.serving_ranker import evaluate_serving, fit_ranker, training_lists, user_context
from hyperrec.train.tracking import RECORD_FILE
from hyperrec.train.triton_repo import write_model_repository

KS = [10, 20]
SERVED_PER_USER = "served_per_user.csv.gz"
EXPLORE_SLOTS = (1, 2)  # the policy's exploration slot, evaluated offline at these sizes (recall vs explore recall)
LIST_LENGTH = 100


class ExportConfig(StrictModel):
    registry: Path = Field(Path("experiments/registry"), description="registry root the version is written to")
    retrieval: RetrievalConfig = RetrievalConfig()
    ranker: RankerConfig = RankerConfig(epochs=8)
    cutoffs: int = Field(5, ge=1, description="held-out baskets per user the ranker learns from")
    gate_metric: str = "recall@10"
    min_delta: float = Field(0.0, description="promote only if gate_metric beats the current version by this much")
    promote: bool = True
    gpu: bool = Field(False, description="Triton instance_group KIND_GPU instead of KIND_CPU")
    parity_tolerance: float = Field(1e-4, gt=0)


@dataclass(frozen=True)
class ExportResult:
    version: str
    path: Path
    manifest: dict[str, Any]
    promotion: Promotion | None


def _random_cases(plan: ExportPlan, n_items: int, rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    cases = []
    for batch, length in [(1, 1), (3, 7), (16, plan.max_len)]:
        case = {}
        for name, example in plan.example.items():
            shape = (batch, length) if example.dim() == 2 else (batch,)
            high = n_items + 1 if name == "items" else int(example.max()) + 1
            case[name] = rng.integers(0, max(high, 1), shape).astype(np.int64)
        cases.append(case)
    return cases


def _real_cases(plan: ExportPlan, split: Split) -> list[dict[str, np.ndarray]]:
    users = split.test.users[:64]
    case = {"items": recent_items(split.test.history, users, plan.max_len)} | user_context(split.test.history, users)
    return [{name: case[name] for name in plan.example}]


def export_checked(name: str, module: torch.nn.Module, example: dict, dynamic: dict, output: str, folder: Path, cases: list, tolerance: float) -> Parity:
    import onnxruntime as ort

    path = export_onnx(module, example, folder / f"{name}.onnx", output, dynamic)
    parity = check_parity(name, module, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), cases, tolerance)
    if not parity.passed:
        raise ValueError(f"{name}.onnx: ONNX Runtime differs from torch by {parity.max_abs_error:.2e} (> {tolerance:.0e}); not exported")
    return parity


def user_baskets_frame(history: Interactions, user_ids: np.ndarray) -> pd.DataFrame:
    """Every user's last MAX_BASKETS baskets as (user_id, basket, item) rows: the online store's seed."""
    rows = [(user_ids[u], b, item) for u, baskets in enumerate(history.baskets) for b, basket in enumerate(baskets[-MAX_BASKETS:]) for item in basket]
    return pd.DataFrame(rows, columns=["user_id", "basket", "item"]).astype({"user_id": str, "basket": np.int32, "item": np.int64})


def export_run(run_dir: Path, config: ExportConfig, log=print) -> ExportResult:
    started = time.time()
    record_config = run_config(run_dir)
    dataset = load_dataset(record_config.data)
    split = make_split(dataset, record_config.data)
    catalog = dataset.catalog
    model, _ = load_model(run_dir, catalog)
    plan = exportable(record_config.model.kind, model)
    registry = Registry(config.registry)
    version, staging = registry.stage()
    rng = np.random.default_rng(0)
    try:
        tol = config.parity_tolerance
        parity = {"encoder": export_checked("encoder", plan.encoder, plan.example, plan.dynamic, "user_vector", staging,
                                             _random_cases(plan, len(catalog), rng) + _real_cases(plan, split), tol)}  # fmt: skip
        for name, module in plan.extra.items():
            example = plan.extra_examples[name]
            cases = [{k: rng.integers(1, len(catalog) + 1, n).astype(np.int64) for k in example} for n in (1, 17, 256)]
            parity[name] = export_checked(name, module, example, plan.extra_dynamic[name], "item_vector", staging, cases, tol)
        np.save(staging / "item_vectors.npy", plan.item_vectors.astype(np.float32))
        log(f"exported the encoder: max abs error vs torch {parity['encoder'].max_abs_error:.2e}")

        encoder = OnnxEncoder(staging / "encoder.onnx", plan.max_len, threads=torch.get_num_threads())
        r = config.retrieval
        index = build_index(plan.item_vectors, r.ann_threshold, kind=r.index)
        save_index(index, staging / INDEX_FILE)
        features, labels, groups = training_lists(split.test.history, catalog, encoder, plan.item_vectors, r, config.cutoffs, index)
        log(f"ranker: {groups[-1] + 1} training lists, {len(labels)} candidates, {labels.mean():.3f} positive")
        ranker = fit_ranker(features, labels, groups, config.ranker).eval()
        cases = [features[:1], features[: min(len(features), 150)], rng.normal(size=(64, len(FEATURE_NAMES))).astype(np.float32)]
        parity["ranker"] = export_checked("ranker", ranker, {"features": torch.from_numpy(features[:8])}, {"features": {0: "batch"}}, "scores",
                                           staging, [{"features": c} for c in cases], tol)  # fmt: skip

        test_retrieval = Retrieval(encoder, plan.item_vectors, ItemTable.from_history(split.test.history, catalog), r, index=index)
        scorer = OnnxScorer(staging / "ranker.onnx")
        served_evaluation = evaluate_serving(test_retrieval, scorer, split.test, KS, LIST_LENGTH)
        served_evaluation.per_user.to_csv(staging / SERVED_PER_USER, index=False)  # for paired comparisons with other methods
        served = served_evaluation.summary
        retrieval_only = evaluate_serving(test_retrieval, None, split.test, KS, LIST_LENGTH).summary
        with_exploration = {slots: evaluate_serving(test_retrieval, scorer, split.test, KS, LIST_LENGTH, explore_slots=slots).summary for slots in EXPLORE_SLOTS}

        ItemTable.from_history(split.full, catalog).save(staging / "items.parquet")
        user_baskets_frame(split.full, split.user_ids).to_parquet(staging / "user_baskets.parquet", index=False)
        onnx_files = {name: staging / f"{name}.onnx" for name in ("encoder", "ranker", *plan.extra)}
        write_model_repository(staging / "triton", onnx_files, gpu=config.gpu)
        manifest = {
            "source_run": str(run_dir),
            "model_kind": record_config.model.kind,
            "max_len": plan.max_len,
            "dim": int(plan.item_vectors.shape[1]),
            "n_items": len(catalog),
            "encoder_inputs": list(plan.example),
            "feature_names": list(FEATURE_NAMES),
            "data": record_config.data.model_dump(mode="json"),
            "data_fingerprint": dataset.fingerprint(),
            "metrics": served,
            "retrieval_only_metrics": retrieval_only,
            "explore_slot_metrics": {str(slots): metrics for slots, metrics in with_exploration.items()},
            "run_test_metrics": _run_test_metrics(run_dir),
            "parity": {"passed": True, "tolerance": tol} | {name: p.as_dict() for name, p in parity.items()},
            "retrieval": config.retrieval.model_dump(mode="json"),
            "index": index_settings(r.index, r.ann_threshold),
            "ranker": config.ranker.model_dump(mode="json"),
            "export_seconds": round(time.time() - started, 1),
        }
        path = registry.commit(version, staging, manifest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    promotion = registry.promote(version, config.gate_metric, config.min_delta) if config.promote else None
    return ExportResult(version, path, manifest, promotion)



def _run_test_metrics(run_dir: Path) -> dict[str, float]:
    return json.loads((run_dir / RECORD_FILE).read_text()).get("test", {})
