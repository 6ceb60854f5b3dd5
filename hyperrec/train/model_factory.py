"""What training needs to know about each model kind: its config class, how to build it from
the catalog, its training examples, its loss, and how to serve it as a recommender."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from torch import nn

from hyperrec.config import ExperimentConfig, ModelKind, check_section
from hyperrec.data.basket_examples import basket_examples
from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import behaviour_windows, next_basket_windows, training_windows
from hyperrec.models.base import Recommender
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.models.sequence_recommender import SequenceRecommender
from hyperrec.models.two_tower import ItemFeatures, TwoTower, TwoTowerConfig
from hyperrec.models.two_tower_recommender import TwoTowerRecommender


def item_categories(catalog: pd.DataFrame) -> torch.Tensor:
    """Category id of every item row (row 0 = padding, category 0)."""
    codes, _ = pd.factorize(catalog["category"], sort=True)
    return torch.from_numpy(np.r_[0, codes + 1]).long()


class SASRecTask:
    """Next-item prediction over each user's item sequence."""

    config_class: ClassVar[type[BaseModel]] = SASRecConfig

    @staticmethod
    def build(params: SASRecConfig, catalog: pd.DataFrame) -> nn.Module:
        return SASRec(params, len(catalog), item_categories(catalog) if params.use_category else None)

    @staticmethod
    def examples(history: Interactions, params: SASRecConfig) -> dict[str, np.ndarray]:
        """A behaviour model's windows over every event; a plain model's over the purchases (`Interactions.orders`: of
        event data one basket per session), which is what it reads when served (then the live intent: `UserState.sequence`)."""
        if params.behaviour:
            return behaviour_windows(history, params.max_len)
        make = next_basket_windows if params.objective == "next_basket" else training_windows
        items, targets = make(history.orders(), params.max_len)
        return {"items": items, "targets": targets}

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor], log_q: torch.Tensor) -> torch.Tensor:
        if "kinds" in batch:
            return model.behaviour_loss(batch["items"], batch["kinds"], batch["gaps"], batch["targets"], batch["purchase_targets"])
        return model.loss(batch["items"], batch["targets"], log_q)

    @staticmethod
    def recommender(model: nn.Module, params: SASRecConfig, device: torch.device | str = "cpu", head: str | None = None) -> Recommender:
        return SequenceRecommender(model, params.max_len, device, behaviour=params.behaviour, head=head)


class TwoTowerTask:
    """Retrieval: the user's history and context against each item of the next basket."""

    config_class: ClassVar[type[BaseModel]] = TwoTowerConfig

    @staticmethod
    def build(params: TwoTowerConfig, catalog: pd.DataFrame) -> nn.Module:
        return TwoTower(params, len(catalog), ItemFeatures.from_catalog(catalog, params.n_price_buckets))

    @staticmethod
    def examples(history: Interactions, params: TwoTowerConfig) -> dict[str, np.ndarray]:
        return basket_examples(history, params.max_len)

    @staticmethod
    def loss(model: nn.Module, batch: dict[str, torch.Tensor], log_q: torch.Tensor) -> torch.Tensor:
        return model.loss(batch["items"], batch["device"], batch["hour"], batch["weekday"], batch["positives"], log_q)

    @staticmethod
    def recommender(model: nn.Module, params: TwoTowerConfig, device: torch.device | str = "cpu", head: str | None = None) -> Recommender:
        if head is not None:
            raise ValueError("a two-tower run has one head: `head` is for multi-behaviour SASRec runs")
        return TwoTowerRecommender(model, device=device)


TASKS: dict[ModelKind, Any] = {"sasrec": SASRecTask, "two_tower": TwoTowerTask}


def model_config(config: ExperimentConfig, path: Path | str = "<config>") -> Any:
    """The model's own typed config from `model.params` (errors name the key and the file)."""
    return check_section(path, "model.params", lambda: TASKS[config.model.kind].config_class.model_validate(config.model.params))


def build_model(config: ExperimentConfig, catalog: pd.DataFrame) -> nn.Module:
    return TASKS[config.model.kind].build(model_config(config), catalog)


def item_log_q(history: Interactions) -> torch.Tensor:
    """Log of each item's share of training interactions (smoothed), row 0 (padding) = -inf.

    The proposal for sampled softmax: popular items are sampled more, and logQ correction
    removes the bias this sampling puts on the scores.
    """
    counts = np.asarray(history.basket_counts().sum(axis=0)).ravel() + 1.0
    log_q = np.log(counts / counts.sum())
    return torch.from_numpy(np.r_[-np.inf, log_q]).float()
