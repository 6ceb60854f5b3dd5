"""Full-ranking evaluation of a fitted recommender on an evaluation task."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hyperrec.data.sequences import EvalTask
from hyperrec.eval import metrics as M
from hyperrec.models.base import Recommender


@dataclass(frozen=True)
class Evaluation:
    per_user: pd.DataFrame  # one row per evaluated user, one column per per-user metric
    summary: dict[str, float]  # means over users (repeat/explore over users who have such items) + coverage


def seen_items(task: EvalTask) -> list[np.ndarray]:
    """The items each evaluated user had interacted with before the target."""
    return [np.unique(np.concatenate(task.history.baskets[u])) if task.history.baskets[u] else np.empty(0, np.int64) for u in task.users]


def _mean_over_defined(values: np.ndarray) -> float:
    """Mean over users for whom the metric is defined (repeat/explore recall are NaN elsewhere)."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if len(defined) else float("nan")


def metric_names(ks: list[int], list_length: int) -> list[str]:
    """Names of every summary metric `evaluate_lists` reports for these cut-offs."""
    per_k = ("recall", "ndcg", "hit", "repeat_recall", "explore_recall", "repeat_share", "coverage")
    return [f"{name}@{k}" for k in ks for name in per_k] + [f"mrr@{list_length}"]


def evaluate_lists(recs: np.ndarray, task: EvalTask, ks: list[int]) -> Evaluation:
    """Metrics of ranked lists `recs` (one row per user of `task`, best first)."""
    hits = M.hit_matrix(recs, task.targets)
    n_targets = np.array([len(t) for t in task.targets])
    seen = seen_items(task)
    columns: dict[str, np.ndarray] = {"user": task.users}
    for k in ks:
        columns[f"recall@{k}"] = M.recall_at_k(hits, n_targets, k)
        columns[f"ndcg@{k}"] = M.ndcg_at_k(hits, n_targets, k)
        columns[f"hit@{k}"] = M.hit_rate_at_k(hits, k)
        columns[f"repeat_recall@{k}"], columns[f"explore_recall@{k}"] = M.split_recall_at_k(recs, task.targets, seen, k)
        columns[f"repeat_share@{k}"] = M.repeat_share_at_k(recs, seen, k)
        if task.truth is not None:  # agreement with the simulator's true top-k preferences
            columns[f"truth_recall@{k}"] = M.recall_at_k(M.hit_matrix(recs[:, :k], [t[:k] for t in task.truth]), np.full(len(recs), k), k)
    columns[f"mrr@{recs.shape[1]}"] = M.mrr(hits)
    per_user = pd.DataFrame(columns)
    summary = {name: _mean_over_defined(values) for name, values in columns.items() if name != "user"}
    for k in ks:
        summary[f"coverage@{k}"] = M.coverage_at_k(recs, k, task.history.n_items)
    return Evaluation(per_user, summary)


def evaluate_model(model: Recommender, task: EvalTask, ks: list[int], list_length: int, new_item_lists: bool = False) -> Evaluation:
    """Fit-free: `model` must already be fitted on `task.history`.

    `new_item_lists` adds new_item_recall@K: the method ranks again with the user's own items
    excluded (a "new for you" shelf), scored on the target items new to the user. The main
    list's explore_recall@K mostly measures how few places a method gives new items; this
    measures how well it picks them when it must.
    """
    recs, _ = model.recommend(task.users, list_length)
    evaluation = evaluate_lists(recs, task, ks)
    if not new_item_lists:
        return evaluation
    seen = seen_items(task)
    new_recs, _ = model.recommend(task.users, max(ks), exclude=seen)
    per_user, summary = evaluation.per_user.copy(), dict(evaluation.summary)
    for k in ks:
        _, new_item_recall = M.split_recall_at_k(new_recs, task.targets, seen, k)
        per_user[f"new_item_recall@{k}"] = new_item_recall
        summary[f"new_item_recall@{k}"] = _mean_over_defined(new_item_recall)
    return Evaluation(per_user, summary)
