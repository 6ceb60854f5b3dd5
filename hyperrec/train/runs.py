"""Load a finished training run as a recommender (for eval, batch scoring and export)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from hyperrec.config import ExperimentConfig
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.models.sequence_recommender import SequenceRecommender
from hyperrec.train.tracking import MODEL_FILE, RECORD_FILE


def is_run(path: Path | str) -> bool:
    return (Path(path) / MODEL_FILE).is_file()


def run_config(run_dir: Path | str) -> ExperimentConfig:
    """The config a run was trained with."""
    return ExperimentConfig.model_validate(json.loads((Path(run_dir) / RECORD_FILE).read_text())["config"])


def load_run(run_dir: Path | str, item_ids: np.ndarray | None = None) -> SequenceRecommender:
    """The run's best model behind the recommender interface.

    `item_ids`, when given, must be the catalogue the model was trained on (checked).
    """
    run_dir = Path(run_dir)
    if not is_run(run_dir):
        raise FileNotFoundError(f"{run_dir}: not a training run (no {MODEL_FILE})")
    saved = torch.load(run_dir / MODEL_FILE, map_location="cpu", weights_only=False)
    if item_ids is not None and list(item_ids) != saved["item_ids"]:
        raise ValueError(f"{run_dir}: the model was trained on a different catalogue ({len(saved['item_ids'])} items vs {len(item_ids)})")
    params = SASRecConfig.model_validate(saved["model_config"])
    categories = saved["state_dict"].get("item_categories")
    model = SASRec(params, saved["n_items"], categories)
    model.load_state_dict(saved["state_dict"])
    model.eval()
    return SequenceRecommender(model, params.max_len)
