"""Build a trainable model from the experiment config; params are validated by the model's config class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError

from hyperrec.config import ConfigError, ExperimentConfig
from hyperrec.data.sequences import Interactions
from hyperrec.models.sasrec import SASRec, SASRecConfig

MODEL_CONFIGS = {"sasrec": SASRecConfig}


def model_config(config: ExperimentConfig, path: Path | str = "<config>") -> SASRecConfig:
    try:
        return MODEL_CONFIGS[config.model.kind].model_validate(config.model.params)
    except ValidationError as exc:
        problems = "; ".join(f"key '{'.'.join(['model.params', *map(str, e['loc'])])}': value {e.get('input')!r}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


def item_categories(catalog: pd.DataFrame) -> torch.Tensor:
    """Category id of every item row (row 0 = padding, category 0)."""
    codes, _ = pd.factorize(catalog["category"], sort=True)
    return torch.from_numpy(np.r_[0, codes + 1]).long()


def build_model(config: ExperimentConfig, catalog: pd.DataFrame) -> SASRec:
    params = model_config(config)
    return SASRec(params, len(catalog), item_categories(catalog) if params.use_category else None)


def item_log_q(history: Interactions) -> torch.Tensor:
    """Log of each item's share of training interactions (smoothed), row 0 (padding) = -inf.

    The proposal for sampled softmax: popular items are sampled more, and logQ correction
    removes the bias this sampling puts on the scores.
    """
    counts = np.asarray(history.basket_counts().sum(axis=0)).ravel() + 1.0
    log_q = np.log(counts / counts.sum())
    return torch.from_numpy(np.r_[-np.inf, log_q]).float()
