"""`hyperrec recommend`: fit a method on all the data and write each user's next-basket list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hyperrec.config import ConfigError, ExperimentConfig
from hyperrec.data.sequences import Split
from hyperrec.models.base import Recommender
from hyperrec.models.baselines import BASELINES, make_baseline


def resolve_method(config: ExperimentConfig, model: str) -> tuple[str, dict[str, Any], str]:
    """(kind, params, where the params came from) for a method named in the config or a baseline kind.

    Params tuned by `hyperrec eval` (its run.json) win over the config's own `params`.
    """
    if model in config.methods:
        kind, params, origin = config.methods[model].kind, dict(config.methods[model].params), "config"
    elif model in BASELINES:
        kind, params, origin = model, {}, "defaults"
    else:
        raise ConfigError(
            f"--model '{model}': not a method of config '{config.name}' ({sorted(config.methods)}) nor a baseline ({sorted(BASELINES)})"
        )
    run_file = config.eval.out_dir / config.name / "run.json"
    if run_file.is_file():
        tuned = json.loads(run_file.read_text()).get("methods", {}).get(model)
        if tuned is not None:
            params, origin = tuned["params"], f"tuned by hyperrec eval ({run_file})"
    return kind, params, origin


def select_users(split: Split, users: str) -> np.ndarray:
    """'all', or comma-separated user ids; unknown ids are an error that lists them."""
    if users == "all":
        return np.arange(split.full.n_users)
    wanted = [u.strip() for u in users.split(",") if u.strip()]
    index = pd.Index(split.user_ids).get_indexer(wanted)
    unknown = [u for u, i in zip(wanted, index) if i < 0]
    if unknown:
        raise ValueError(f"--users: unknown user ids {unknown[:10]} ({len(unknown)} in all)")
    return index


def recommendations_frame(model: Recommender, split: Split, users: np.ndarray, k: int) -> pd.DataFrame:
    items, scores = model.recommend(users, k)
    return pd.DataFrame(
        {
            "user_id": np.repeat(split.user_ids[users], items.shape[1]),
            "rank": np.tile(np.arange(1, items.shape[1] + 1), len(users)),
            "item_id": split.item_ids[items.ravel()],
            "score": scores.ravel(),
        }
    )


def write_recommendations(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    elif out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        raise ValueError(f"--out {out}: use a .parquet or .csv file name")


def fit_for_serving(kind: str, params: dict[str, Any], split: Split) -> Recommender:
    """Fit on every basket: the lists are for the basket after the data ends."""
    return make_baseline(kind, params).fit(split.full)
