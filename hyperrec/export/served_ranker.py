"""The served ranker: trained on what serving's retrieval hands it, judged by full ranking.

Training lists come from cut-offs j = 1..J: for each user, basket n_u - j of the export's history
is the label and everything before it is the user's state; the item table (popularity, trend,
repeat rates) is recomputed from the truncated history, so no label basket leaks into any
feature. Candidates and features are produced by `Retrieval` itself, with the exported ONNX
encoder, so the ranker learns exactly the inputs it gets in production.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.drift import DriftReference
from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.onnx_models import Encoder, Scorer
from hyperrec.bundle.placements import Page, Placement
from hyperrec.bundle.retrieval import Candidates, Retrieval, RetrievalConfig, context_arrays
from hyperrec.bundle.slate import reserve_explore_slots, top_k
from hyperrec.bundle.user_state import UserState
from hyperrec.data.sequences import EvalTask, Interactions
from hyperrec.eval.evaluate import Evaluation, evaluate_lists
from hyperrec.models.ranker import Ranker, RankerConfig
from hyperrec.progress import progress

BATCH = 256  # users per retrieval call
DRIFT_USERS = 2_000  # shoppers whose served candidates make the drift reference


def user_context(history: Interactions, users: np.ndarray) -> dict[str, np.ndarray]:
    """Encoder context offline: no device, and the time of the user's last basket (the next visit's is unknown)."""
    times = np.array([history.times[u][-1] if len(history.times[u]) else 0.0 for u in users])
    return context_arrays([{} for _ in users], times)


def training_lists(
    history: Interactions,
    catalog: pd.DataFrame,
    encoder: Encoder,
    item_vectors: np.ndarray,
    config: RetrievalConfig,
    cutoffs: int,
    index=None,
    page: Literal["home", "discover"] = "home",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, labels, list ids) over `cutoffs` held-out baskets per user; lists without a positive are dropped.
    `index`: the FAISS index over `item_vectors` (built once by the caller; None = build one per cut-off). `page`: the
    placement whose candidates are ranked (`discover`: none of the user's own items, so the labels are the new ones)."""
    n_baskets = np.array([len(b) for b in history.baskets])
    features, labels, groups = [], [], []
    n_lists = 0
    for j in progress(range(1, cutoffs + 1), desc="ranker training lists", unit="cut-off"):
        users = np.flatnonzero(n_baskets >= j + 1)
        if not len(users):
            break
        truncated = history.truncate(np.where(n_baskets >= j + 1, n_baskets - j, 0))
        together = BoughtTogether.from_history(truncated) if page != "home" else None
        table = ItemTable.from_history(truncated, catalog)
        retrieval = Retrieval(encoder, item_vectors, table, config, index=index, bought_together=together)
        for start in range(0, len(users), BATCH):
            batch = users[start : start + BATCH]
            states = [UserState.from_history(truncated, u) for u in batch]
            found = retrieval.candidates(states, user_context(truncated, batch), placements=[Placement(page)] * len(batch))
            for user, candidates in zip(batch, found):
                label = np.isin(candidates.items, history.baskets[user][n_baskets[user] - j])
                if label.any():
                    features.append(candidates.features)
                    labels.append(label.astype(np.float32))
                    groups.append(np.full(len(label), n_lists))
                    n_lists += 1
    if not n_lists:
        raise ValueError("no training list has a positive candidate: the history is too short or retrieval finds nothing")
    return np.concatenate(features), np.concatenate(labels), np.concatenate(groups)


def serving_reference(
    retrieval: Retrieval, scorer: Scorer, history: Interactions, rng: np.random.Generator, users: int = DRIFT_USERS
) -> DriftReference:
    """The drift monitors' reference: what the served ranker will see, i.e. the candidates serving's own
    retrieval (today's item table, each shopper's whole history) hands it for up to `users` of the
    export's shoppers, and its scores. Not the ranker's training candidates: those come from earlier
    cut-offs, where popularity and basket counts are smaller, and a live window of a good version
    measured a score PSI of 0.55-0.88 against them (a false rollback)."""
    sample = np.sort(rng.permutation(history.n_users)[:users])
    features = []
    for start in range(0, len(sample), BATCH):
        batch = sample[start : start + BATCH]
        states = [UserState.from_history(history, u) for u in batch]
        features += [c.features for c in retrieval.candidates(states, user_context(history, batch))]
    values = np.concatenate(features)
    return DriftReference.from_values([*FEATURE_NAMES, "score"], np.column_stack([values, scorer(values)]))


def fit_ranker(features: np.ndarray, labels: np.ndarray, groups: np.ndarray, config: RankerConfig, without: Sequence[str] = ()) -> Ranker:
    """The served ranker over all of FEATURE_NAMES, reading every column but those named in `without`."""
    reads = [i for i, name in enumerate(FEATURE_NAMES) if name not in without]
    return Ranker(len(FEATURE_NAMES), config, reads).fit(features, labels, groups)


def ranked_lists(
    retrieval: Retrieval, scorer: Scorer | None, task: EvalTask, k: int, explore_slots: int = 0, shown: int = 10
) -> np.ndarray:
    """(users, k) item lists served for `task.users` from their histories; short lists are
    filled with popular items (the endpoint's own fallback) so every list has k items.
    `explore_slots`: that many of the first `shown` places go to items new to the user (the policy's exploration slot)."""
    out = np.empty((len(task.users), k), np.int64)
    for start in range(0, len(task.users), BATCH):
        batch = task.users[start : start + BATCH]
        states = [UserState.from_history(task.history, u) for u in batch]
        for row, candidates in enumerate(retrieval.candidates(states, user_context(task.history, batch)), start):
            scores = scorer(candidates.features) if scorer is not None else candidates.ann_score
            order = top_k(scores, len(scores))
            if explore_slots:
                order = reserve_explore_slots(order, ~candidates.repeat, explore_slots, shown)
            chosen = candidates.items[order[:k]]
            filler = retrieval.popular_in_stock[~np.isin(retrieval.popular_in_stock, chosen)][: k - len(chosen)]
            out[row] = np.concatenate([chosen, filler])
    return out


Select = Callable[[Candidates, np.ndarray, UserState, int], list]  # the policy's `select` (serve/policy.py): picks with `.item`


def policy_lists(
    retrieval: Retrieval,
    scorer: Scorer,
    select: Select,
    history: Interactions,
    users: np.ndarray,
    states: list[UserState],
    page: Page,
    k: int,
    drop: list[np.ndarray] | None = None,
) -> np.ndarray:
    """(users, k) lists the request path gives `states` (one per user) on `page`: candidates for that placement, the served
    ranker, then `select`; `drop[row]`: items the flow drops for that row first (the cart's). -1 pads a short list."""
    out = np.full((len(users), k), -1, np.int64)
    for start in range(0, len(users), BATCH):
        rows = range(start, min(start + BATCH, len(users)))
        batch = [states[r] for r in rows]
        found = retrieval.candidates(batch, user_context(history, users[start : rows.stop]), placements=[Placement(page)] * len(batch))
        for r, state, candidates in zip(rows, batch, found):
            if drop is not None:
                candidates = candidates.take(~np.isin(candidates.items, drop[r]))
            picks = select(candidates, scorer(candidates.features), state, k)
            out[r, : len(picks)] = [p.item for p in picks]
    return out


def evaluate_serving(
    retrieval: Retrieval, scorer: Scorer | None, task: EvalTask, ks: list[int], list_length: int, explore_slots: int = 0
) -> Evaluation:
    return evaluate_lists(ranked_lists(retrieval, scorer, task, list_length, explore_slots, shown=min(ks)), task, ks)
