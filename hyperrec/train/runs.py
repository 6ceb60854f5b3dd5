"""Load a finished training run as a recommender (for eval, batch scoring and export)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from hyperrec.config import ExperimentConfig
from hyperrec.models.base import Recommender
from hyperrec.train.model_factory import TASKS
from hyperrec.train.tracking import MODEL_FILE, RECORD_FILE


def is_run(path: Path | str) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def resolve_run(path: Path | str) -> Path | None:
    """`path` itself when it is a run; else the newest finished run `path-<time>` (runs are named
    `<config name>-<YYYYmmdd-HHMMSS>`, so `experiments/runs/sasrec_instacart` means its latest run)."""
    path = Path(path)
    if is_run(path):
        return path
    stamped = re.compile(re.escape(path.name) + r"-\d{8}-\d{6}")
    runs = sorted(run for run in path.parent.glob(f"{path.name}-*") if stamped.fullmatch(run.name) and is_run(run))
    return runs[-1] if runs else None


def require_run(path: Path | str) -> Path:
    """`resolve_run`, or an error naming `path` when there is no such run."""
    run = resolve_run(path)
    if run is None:
        raise FileNotFoundError(
            f"'{path}' is not a training run directory, nor the name of a finished run (train it first: hyperrec "
            "train configs/train/<config>.yaml)"
        )
    return run


def run_config(run_dir: Path | str) -> ExperimentConfig:
    """The config a run was trained with."""
    return ExperimentConfig.model_validate(json.loads((Path(run_dir) / RECORD_FILE).read_text())["config"])


def load_model(run_dir: Path | str, catalog: pd.DataFrame) -> tuple[nn.Module, object]:
    """The run's best model (eval mode) and its typed config; `catalog` must be the one it was trained on."""
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a training run (no {MODEL_FILE})")
    saved = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=False)
    if list(catalog["item_id"]) != saved["item_ids"]:
        raise ValueError(f"{run_dir}: the model was trained on a different catalogue ({len(saved['item_ids'])} items vs {len(catalog)})")
    task = TASKS[saved["kind"]]
    params = task.config_class.model_validate(saved["model_config"])
    model = task.build(params, catalog)
    missing, unexpected = model.load_state_dict(saved["state_dict"], strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{run_dir}: the saved weights do not fit this version's {saved['kind']} (missing {missing}, unexpected {unexpected}); "
            "the run was trained with an older model definition: train it again"
        )
    return model.eval(), params


def load_run(run_dir: Path | str, catalog: pd.DataFrame, head: str | None = None) -> Recommender:
    """The run's best model behind the recommender interface (`head`: which of a multi-behaviour SASRec's scores)."""
    model, params = load_model(run_dir, catalog)
    return TASKS[run_config(run_dir).model.kind].recommender(model, params, head=head)
