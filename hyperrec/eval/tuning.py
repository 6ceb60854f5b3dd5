"""Grid search of a method's hyper-parameters on the validation task."""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd

from hyperrec.data.sequences import EvalTask
from hyperrec.eval.evaluate import evaluate_model
from hyperrec.models.baselines import make_baseline
from hyperrec.progress import progress


def grid_points(params: dict[str, Any], grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, on top of the fixed params."""
    keys = sorted(grid)
    return [{**params, **dict(zip(keys, values))} for values in itertools.product(*(grid[k] for k in keys))]


def tune(
    kind: str,
    params: dict[str, Any],
    grid: dict[str, list[Any]],
    valid: EvalTask,
    metric: str,
    ks: list[int],
    list_length: int,
    label: str = "",
) -> tuple[dict[str, Any], pd.DataFrame]:
    """The params with the best validation `metric`, and one row per grid point tried."""
    points = grid_points(params, grid)
    rows = []
    for point in progress(points, desc=f"tuning {label or kind}", unit="point", disable=len(points) <= 1, leave=False):
        summary = evaluate_model(make_baseline(kind, point).fit(valid.history), valid, ks, list_length).summary
        rows.append({**point, metric: summary[metric]})
    trials = pd.DataFrame(rows)
    best = points[int(trials[metric].to_numpy().argmax())]
    return best, trials
