"""Does the served ranker gain from the pipeline's population features, its own-history ones, or without the encoder's? (README)

    .venv/bin/python benchmarks/served_ranker_features.py experiments/runs/<run> experiments/registry [v0001] [--seeds 0,1,2]
        [--cutoffs 5] [--variants "- the encoder's two,+ all seven"] [--pipeline]

The served ranker is trained as export trains it (cut-offs 1..N of the run's test history, serving's own retrieval and
features, `served_ranker.training_lists`' recipe), without the two columns the exported encoder gives (its score and its
ANN rank), and with columns of the offline pipeline (`configs/eval/instacart_pipeline.yaml`) added for the same
candidates, each computed from the same truncated history:

- bought together (`BoughtTogether`, the rows export writes): the mean and the largest weight with the items of the
  last basket, and the weight with the whole history, each item weighted by its decayed share (0.8 per basket);
- nearest users (`collaborative_features.neighbor_features`: 100 users by cosine of decayed shares): nbr_score, nbr_share;
- TIFU-KNN (the tuned parameters of configs/eval/instacart_baselines.yaml): its score and inverse rank;
- the pipeline's own-history columns (`features.pair_features`), which need no other shopper: the re-buy cycle counted in
  baskets (mean gap, overdue against the shopper's and the item's cycle, rate since the first purchase, streak, mean
  slot in the basket), the same in days (days since, overdue in days), and the user and item aggregates served lacks;
- whether the encoder saw the label: 1 in the lists of cut-offs 2 and later (the run trained on every basket before the
  validation basket, cut-off 1's label), 0 at serving: does a ranker told which lists those are trust the encoder less?

Each variant is trained (export's ranker settings) with each ranker seed and ranks the test users' served candidates
(full ranking, no policy: the manifest's served metric). Paired intervals against the plain ranker of the same seed, and
of the mean over seeds. `--pipeline` also fits the offline pipeline and ranks with it over its own candidates and over
the served ones: whether the candidates or their ranking make the gap between the two.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.retrieval import Candidates, Retrieval
from hyperrec.bundle.slate import top_k
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.config import ExperimentConfig
from hyperrec.data.sequences import EvalTask, Interactions
from hyperrec.eval.evaluate import evaluate_lists
from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.eval.report import print_table, write_table
from hyperrec.eval.run import build_fixed
from hyperrec.export.run import LIST_LENGTH, ExportConfig, load_source
from hyperrec.export.served_ranker import BATCH, user_context
from hyperrec.models import collaborative_features as C
from hyperrec.models import features as F
from hyperrec.models.baselines import make_baseline
from hyperrec.models.item_index import single_threaded
from hyperrec.models.pipeline import NOT_A_CANDIDATE
from hyperrec.models.ranker import Ranker
from hyperrec.progress import progress
from hyperrec.registry import Registry

BASELINES = Path(__file__).resolve().parents[1] / "configs" / "eval" / "instacart_baselines.yaml"
PIPELINE = BASELINES.with_name("instacart_pipeline.yaml")
NEIGHBORS = 100  # the pipeline's
POPULATION = ("bw_last_mean", "bw_last_max", "bw_history", "nbr_score", "nbr_share", "tifu_score", "tifu_inv_rank")
CYCLE_BASKETS = ("mean_gap", "overdue", "overdue_item_cycle", "rate_since_first", "streak", "mean_slot")
CYCLE_DAYS = ("log_days_since", "overdue_days")
AGGREGATES = (
    "decayed_0.95",
    "user_mean_basket_size",
    "user_log_distinct",
    "user_repeat_ratio",
    "user_log_gap_days",
    "user_last_rebuy_share",
    "user_log_rebuy_gap",
    "item_log_buyers",
    "item_reorder_share",
    "item_slot",
    "item_log_rebuy_gap",
    "item_mean_count",
)
OWN = CYCLE_BASKETS + CYCLE_DAYS + AGGREGATES
SAW_LABEL = ("encoder_saw_label",)  # 1 in training lists whose label basket the run trained on (cut-offs 2 and later), else 0
EXTRA = POPULATION + OWN + SAW_LABEL
ENCODER = ("ann_score", "ann_inv_rank")  # the served features the exported encoder gives (its score, its ANN rank)


@dataclass(frozen=True)
class Variant:
    """The ranker's input: export's features less `without`, plus the `extra` columns."""

    without: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()

    def columns(self, features: np.ndarray, extra: np.ndarray) -> np.ndarray:
        kept = [i for i, n in enumerate(FEATURE_NAMES) if n not in self.without]
        return np.column_stack([features[:, kept], extra[:, [EXTRA.index(n) for n in self.extra]]])


VARIANTS = {
    "served ranker (export's features)": Variant(),
    "+ bought together": Variant(extra=POPULATION[:3]),
    "+ nearest users": Variant(extra=POPULATION[3:5]),
    "+ TIFU-KNN": Variant(extra=POPULATION[5:]),
    "+ all seven": Variant(extra=POPULATION),
    "+ re-buy cycle in baskets": Variant(extra=CYCLE_BASKETS),
    "+ re-buy cycle in days": Variant(extra=CYCLE_DAYS),
    "+ user and item aggregates": Variant(extra=AGGREGATES),
    "+ all own-history columns": Variant(extra=OWN),
    "- the encoder's two": Variant(without=ENCODER),
    "- the encoder's two + all own-history columns": Variant(without=ENCODER, extra=OWN),
    "+ encoder saw the label": Variant(extra=SAW_LABEL),
    "+ encoder saw the label + all own-history columns": Variant(extra=SAW_LABEL + OWN),
}
K = 10


class PopulationColumns:
    """The extra columns of one history: its bought-together rows, user vectors, a TIFU-KNN fitted on it and its summary
    (the own-history columns)."""

    def __init__(self, history: Interactions, n_items: int, tifu_params: dict):
        rows = BoughtTogether.from_history(history)
        self.together = sp.csr_matrix((rows.weights.astype(np.float64), rows.indices, rows.indptr), shape=(len(rows.indptr) - 1, n_items))
        self.summary = F.summarize(history)
        self.vectors = C.user_vectors(self.summary)
        self.tifu = make_baseline("tifu_knn", tifu_params).fit(history)

    def of(self, users: np.ndarray, states: list[UserState], candidates: list[Candidates]) -> list[np.ndarray]:
        """(len(candidates of a user), len(EXTRA) - 1) per user of the batch: all but SAW_LABEL, which depends on the cut-off."""
        rows = np.concatenate([np.full(len(c.items), r) for r, c in enumerate(candidates)])
        items = np.concatenate([c.items for c in candidates])
        near = C.neighbor_features(self.vectors, users, rows, items, NEIGHBORS)
        tifu = np.asarray(self.tifu.score(users), np.float64)
        tifu_rank = F.ranks(tifu)
        own = F.pair_features(self.summary, users[rows], items)
        population = np.column_stack(
            [near["nbr_score"], near["nbr_share"], tifu[rows, items], 1.0 / (1.0 + tifu_rank[rows, items]), *(own[n] for n in OWN)]
        )
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


def pipeline_on_served_candidates(task: EvalTask, catalog: pd.DataFrame, serving: Retrieval, served: list[Candidates]) -> None:
    """The offline pipeline (configs/eval/instacart_pipeline.yaml, fitted on the test history as `hyperrec eval` does)
    ranking its own candidates and only the served ones: whether the candidates or the ranking make the gap."""
    method = ExperimentConfig.model_validate(yaml.safe_load(PIPELINE.read_text())).methods["pipeline"]
    scores = build_fixed(method, catalog).fit(task.history).score(task.users)
    own = [np.flatnonzero(row > NOT_A_CANDIDATE) for row in scores]

    def recall(pools: list[np.ndarray]) -> tuple[float, float]:
        lists = np.empty((len(task.users), K), np.int64)
        for r, pool in enumerate(pools):
            chosen = pool[top_k(scores[r, pool], len(pool))][:K]
            lists[r] = np.concatenate([chosen, serving.popular_in_stock[~np.isin(serving.popular_in_stock, chosen)][: K - len(chosen)]])
        held = np.mean([np.isin(t, pool).mean() for t, pool in zip(task.targets, pools)])
        return evaluate_lists(lists, task, [K]).summary[f"recall@{K}"], float(held)

    table = pd.DataFrame(
        [[*recall(own), np.mean([len(p) for p in own])], [*recall([c.items for c in served]), np.mean([len(c.items) for c in served])]],
        index=["its own candidates", "the served path's candidates"],
        columns=[f"recall@{K}", "test items among the candidates", "candidates per shopper"],
    )
    table.index.name = "the pipeline's ranker over"
    print_table(table.round(4), "The offline pipeline's ranker, over its own and over the served candidates")


def main(
    run: Path,
    registry_root: Path,
    version: str,
    seeds: list[int],
    out: Path,
    variants: dict[str, Variant],
    cutoffs: int,
    pipeline: bool,
) -> None:
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
    for j in progress(range(1, cutoffs + 1), desc="training lists", unit="cut-off"):
        users = np.flatnonzero(n_baskets >= j + 1)
        truncated = history.truncate(np.where(n_baskets >= j + 1, n_baskets - j, 0))
        retrieval = Retrieval(encoder, bundle.item_vectors, ItemTable.from_history(truncated, catalog), config)
        found, extra = candidates_with_columns(truncated, users, retrieval, PopulationColumns(truncated, n_items, tifu_params))
        for user, candidates, more in zip(users, found, extra):
            label = np.isin(candidates.items, history.baskets[user][n_baskets[user] - j])
            if label.any():
                features.append(candidates.features)
                extras.append(np.column_stack([more, np.full(len(label), float(j >= 2), np.float32)]))
                labels.append(label.astype(np.float32))
                groups.append(np.full(len(label), len(groups)))
    train_x, train_extra, train_y, train_g = map(np.concatenate, (features, extras, labels, groups))
    print(f"{len(groups)} training lists, {len(train_y):,} candidates")

    serving = Retrieval(encoder, bundle.item_vectors, ItemTable.from_history(history, catalog), config)
    test, test_extra = candidates_with_columns(history, task.users, serving, PopulationColumns(history, n_items, tifu_params))
    if pipeline:
        pipeline_on_served_candidates(replace(task, history=history), catalog, serving, test)
    test_extra = [np.column_stack([more, np.zeros(len(more), np.float32)]) for more in test_extra]  # serving: never seen
    per_user: dict[tuple[str, int], np.ndarray] = {}
    rows = []
    for seed in seeds:
        for name, variant in progress(variants.items(), desc=f"rankers, seed {seed}", unit="variant"):
            train = variant.columns(train_x, train_extra)
            ranker = Ranker(train.shape[1], ExportConfig().ranker.model_copy(update={"seed": seed})).fit(train, train_y, train_g).eval()
            lists = np.empty((len(task.users), LIST_LENGTH), np.int64)
            for row, (candidates, more) in enumerate(zip(test, test_extra)):
                scores = ranker.predict(variant.columns(candidates.features, more))
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
    plain = next(iter(variants))
    table = pd.DataFrame(rows).pivot_table(index="variant", columns="seed", values=f"recall@{K}").reindex(list(variants))
    table.columns = [f"recall@{K} seed {s}" for s in table.columns]
    for name in variants:
        mean_gain = np.mean([per_user[(name, s)] - per_user[(plain, s)] for s in seeds], axis=0)
        gain, low, high = paired_bootstrap(mean_gain, np.zeros_like(mean_gain), samples=2_000)
        table.loc[name, "gain, mean over seeds [95%]"] = "" if name == plain else f"{gain:+.4f} [{low:+.4f}, {high:+.4f}]"
    table.index.name = "served ranker"
    print_table(table.round(4), f"Served ranker, {cutoffs} training cut-offs, other columns ({len(task.users)} test users, full ranking)")
    print("wrote", ", ".join(str(p) for p in write_table(table.round(4), out, f"served_ranker_features_{cutoffs}_cutoffs")))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("registry", type=Path)
    parser.add_argument("version", nargs="?", default="current")
    parser.add_argument("--seeds", default="0,1,2", help="ranker seeds, comma-separated")
    parser.add_argument("--cutoffs", type=int, default=ExportConfig().cutoffs, help="training cut-offs (export's default: 5)")
    parser.add_argument("--pipeline", action="store_true", help="also: the offline pipeline's ranker over the served candidates")
    parser.add_argument("--variants", default="", help="only these rows (their names, comma-separated; the plain ranker always)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results/served_ranker_features"))
    args = parser.parse_args()
    wanted = {n.strip() for n in args.variants.split(",") if n.strip()}
    if wanted - set(VARIANTS):
        parser.error(f"--variants: unknown {sorted(wanted - set(VARIANTS))}; known: {list(VARIANTS)}")
    variants = {n: v for i, (n, v) in enumerate(VARIANTS.items()) if i == 0 or not wanted or n in wanted}
    main(args.run, args.registry, args.version, [int(s) for s in args.seeds.split(",")], args.out, variants, args.cutoffs, args.pipeline)
