"""Does the served ranker gain from the offline pipeline's population features? (README, "The served path and the pipeline")

    .venv/bin/python benchmarks/served_ranker_features.py experiments/runs/<run> experiments/registry [v0001] [--seeds 0,1,2]

The served ranker is trained as export trains it (cut-offs 1..5 of the run's test history, serving's own retrieval and
features, `served_ranker.training_lists`' recipe) and again with columns of the offline pipeline
(`configs/eval/instacart_pipeline.yaml`) added for the same candidates, each computed from the same truncated history:

- bought together (`BoughtTogether`, the rows export writes): the mean and the largest weight with the items of the
  last basket, and the weight with the whole history, each item weighted by its decayed share (0.8 per basket);
- nearest users (`collaborative_features.neighbor_features`: 100 users by cosine of decayed shares): nbr_score, nbr_share;
- TIFU-KNN (the tuned parameters of configs/eval/instacart_baselines.yaml): its score and inverse rank.

Each variant is trained (export's ranker settings) with each ranker seed and ranks the test users' served candidates
(full ranking, no policy: the manifest's served metric). Paired intervals against the plain ranker of the same seed, and
of the mean over seeds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.retrieval import Candidates, Retrieval
from hyperrec.bundle.slate import top_k
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.data.sequences import Interactions
from hyperrec.eval.evaluate import evaluate_lists
from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.eval.report import print_table, write_table
from hyperrec.export.run import LIST_LENGTH, ExportConfig, load_source
from hyperrec.export.served_ranker import BATCH, user_context
from hyperrec.models import collaborative_features as C
from hyperrec.models import features as F
from hyperrec.models.baselines import make_baseline
from hyperrec.models.item_index import single_threaded
from hyperrec.models.ranker import Ranker
from hyperrec.progress import progress
from hyperrec.registry import Registry

BASELINES = Path(__file__).resolve().parents[1] / "configs" / "eval" / "instacart_baselines.yaml"
CUTOFFS = 5  # export's default
NEIGHBORS = 100  # the pipeline's
EXTRA = ("bw_last_mean", "bw_last_max", "bw_history", "nbr_score", "nbr_share", "tifu_score", "tifu_inv_rank")
VARIANTS = {
    "served ranker (export's features)": (),
    "+ bought together": (0, 1, 2),
    "+ nearest users": (3, 4),
    "+ TIFU-KNN": (5, 6),
    "+ all seven": tuple(range(len(EXTRA))),
}
K = 10


class PopulationColumns:
    """The extra columns of one history: its bought-together rows, user vectors and a TIFU-KNN fitted on it."""

    def __init__(self, history: Interactions, n_items: int, tifu_params: dict):
        rows = BoughtTogether.from_history(history)
        self.together = sp.csr_matrix((rows.weights.astype(np.float64), rows.indices, rows.indptr), shape=(len(rows.indptr) - 1, n_items))
        self.vectors = C.user_vectors(F.summarize(history))
        self.tifu = make_baseline("tifu_knn", tifu_params).fit(history)

    def of(self, users: np.ndarray, states: list[UserState], candidates: list[Candidates]) -> list[np.ndarray]:
        """(len(candidates of a user), len(EXTRA)) per user of the batch."""
        rows = np.concatenate([np.full(len(c.items), r) for r, c in enumerate(candidates)])
        items = np.concatenate([c.items for c in candidates])
        near = C.neighbor_features(self.vectors, users, rows, items, NEIGHBORS)
        tifu = np.asarray(self.tifu.score(users), np.float64)
        tifu_rank = F.ranks(tifu)
        population = np.column_stack([near["nbr_score"], near["nbr_share"], tifu[rows, items], 1.0 / (1.0 + tifu_rank[rows, items])])
        split = np.split(population, np.cumsum([len(c.items) for c in candidates])[:-1])
        return [np.column_stack([self._together(s, c.items), p]).astype(np.float32) for s, c, p in zip(states, candidates, split)]

    def _together(self, state: UserState, items: np.ndarray) -> np.ndarray:
        weights = self.together[:, items]
        last = state.baskets[-1] if state.baskets else np.empty(0, np.int64)
        summary = state.history()
        mean = np.asarray(weights[last].mean(axis=0)).ravel() if len(last) else np.zeros(len(items))
        largest = weights[last].max(axis=0).toarray().ravel() if len(last) else np.zeros(len(items))
        share = summary.decayed[0.8] / max(float(summary.decayed[0.8].sum()), 1e-12)
        whole = share @ weights[summary.items].toarray() if len(summary.items) else np.zeros(len(items))
        return np.column_stack([mean, largest, whole])


def candidates_with_columns(
    history: Interactions, users: np.ndarray, retrieval: Retrieval, columns: PopulationColumns
) -> tuple[list[Candidates], list[np.ndarray]]:
    found, extra = [], []
    for start in range(0, len(users), BATCH):
        batch = users[start : start + BATCH]
        states = [UserState.from_history(history, u) for u in batch]
        candidates = retrieval.candidates(states, user_context(history, batch))
        found += candidates
        extra += columns.of(batch, states, candidates)
    return found, extra


def main(run: Path, registry_root: Path, version: str, seeds: list[int], out: Path) -> None:
    single_threaded()
    registry = Registry(registry_root)
    bundle = registry.bundle(registry.resolve(version))
    source = load_source(run)
    task, catalog = source.split.test, source.dataset.catalog
    history, n_items = task.history.orders(), len(catalog)
    tifu_params = yaml.safe_load(BASELINES.read_text())["methods"]["tifu_knn"]["params"]
    encoder, config = bundle.encoder(ModelRuntime()), bundle.manifest.retrieval

    features, extras, labels, groups = [], [], [], []
    n_baskets = np.array([len(b) for b in history.baskets])
    for j in progress(range(1, CUTOFFS + 1), desc="training lists", unit="cut-off"):
        users = np.flatnonzero(n_baskets >= j + 1)
        truncated = history.truncate(np.where(n_baskets >= j + 1, n_baskets - j, 0))
        retrieval = Retrieval(encoder, bundle.item_vectors, ItemTable.from_history(truncated, catalog), config)
        found, extra = candidates_with_columns(truncated, users, retrieval, PopulationColumns(truncated, n_items, tifu_params))
        for user, candidates, more in zip(users, found, extra):
            label = np.isin(candidates.items, history.baskets[user][n_baskets[user] - j])
            if label.any():
                features.append(candidates.features)
                extras.append(more)
                labels.append(label.astype(np.float32))
                groups.append(np.full(len(label), len(groups)))
    train_x, train_extra, train_y, train_g = map(np.concatenate, (features, extras, labels, groups))
    print(f"{len(groups)} training lists, {len(train_y):,} candidates")

    serving = Retrieval(encoder, bundle.item_vectors, ItemTable.from_history(history, catalog), config)
    test, test_extra = candidates_with_columns(history, task.users, serving, PopulationColumns(history, n_items, tifu_params))
    per_user: dict[tuple[str, int], np.ndarray] = {}
    rows = []
    for seed in seeds:
        for name, chosen in progress(VARIANTS.items(), desc=f"rankers, seed {seed}", unit="variant"):
            picked = list(chosen)
            ranker = Ranker(len(train_x[0]) + len(picked), ExportConfig().ranker.model_copy(update={"seed": seed}))
            ranker = ranker.fit(np.column_stack([train_x, train_extra[:, picked]]), train_y, train_g).eval()
            lists = np.empty((len(task.users), LIST_LENGTH), np.int64)
            for row, (candidates, more) in enumerate(zip(test, test_extra)):
                scores = ranker.predict(np.column_stack([candidates.features, more[:, picked]]))
                chosen_items = candidates.items[top_k(scores, len(scores))][:LIST_LENGTH]
                filler = serving.popular_in_stock[~np.isin(serving.popular_in_stock, chosen_items)][: LIST_LENGTH - len(chosen_items)]
                lists[row] = np.concatenate([chosen_items, filler])
            evaluation = evaluate_lists(lists, task, [K])
            per_user[(name, seed)] = evaluation.per_user[f"recall@{K}"].to_numpy()
            rows.append(
                {
                    "variant": name,
                    "seed": seed,
                    f"recall@{K}": evaluation.summary[f"recall@{K}"],
                    f"ndcg@{K}": evaluation.summary[f"ndcg@{K}"],
                }
            )
    plain = next(iter(VARIANTS))
    table = pd.DataFrame(rows).pivot_table(index="variant", columns="seed", values=f"recall@{K}").reindex(list(VARIANTS))
    table.columns = [f"recall@{K} seed {s}" for s in table.columns]
    for name in VARIANTS:
        mean_gain = np.mean([per_user[(name, s)] - per_user[(plain, s)] for s in seeds], axis=0)
        gain, low, high = paired_bootstrap(mean_gain, np.zeros_like(mean_gain), samples=2_000)
        table.loc[name, "gain, mean over seeds [95%]"] = "" if name == plain else f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]"
    table.index.name = "served ranker"
    print_table(table.round(4), f"Served ranker with the pipeline's population features ({len(task.users)} test users, full ranking)")
    print("wrote", ", ".join(str(p) for p in write_table(table.round(4), out, "served_ranker_features")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("registry", type=Path)
    parser.add_argument("version", nargs="?", default="current")
    parser.add_argument("--seeds", default="0,1,2", help="ranker seeds, comma-separated")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/served_ranker_features"))
    args = parser.parse_args()
    main(args.run, args.registry, args.version, [int(s) for s in args.seeds.split(",")], args.out)
