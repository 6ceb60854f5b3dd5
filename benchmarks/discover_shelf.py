"""The discover placement ("new for you") on a run's own split (README table), against the baselines' new-item lists.

    .venv/bin/python benchmarks/discover_shelf.py experiments/runs/<run> experiments/registry-instacart [v0001]

new_item_recall@10 as `hyperrec eval` computes it: each method ranks with the user's own items excluded and is
scored on the test basket's items new to the user (users with none are left out). The served path runs the code
a request runs (`Retrieval.candidates` with placement discover -> the served ranker -> `Policy.select`), over an
item table of the test task's own history; then again with a ranker trained on the shelf's own candidates (export's
cut-offs and settings, so its labels are the held-out baskets' new items only). Paired intervals against the strongest
baseline. Last, how many of the test basket's new items the shelf's candidates hold at all, in all and by source: what
any ranker of them could reach.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.placements import SOURCES, Placement
from hyperrec.bundle.retrieval import Retrieval
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.eval.evaluate import seen_items
from hyperrec.eval.metrics import paired_bootstrap, split_recall_at_k
from hyperrec.eval.report import print_table
from hyperrec.export.run import ExportConfig, load_source
from hyperrec.export.served_ranker import fit_ranker, policy_lists, training_lists, user_context
from hyperrec.models.baselines import make_baseline
from hyperrec.models.item_index import single_threaded
from hyperrec.registry import Registry
from hyperrec.serve.config import PolicyConfig
from hyperrec.serve.policy import Policy

K = 10
WEIGHTS = (0.0, 0.5, 2.0)
BASELINES = Path(__file__).resolve().parents[1] / "configs" / "eval" / "instacart_baselines.yaml"


def main(run: Path, registry_root: Path, version: str = "current") -> None:
    single_threaded()
    registry = Registry(registry_root)
    bundle = registry.bundle(registry.resolve(version))
    source = load_source(run)
    task, catalog = source.split.test, source.dataset.catalog
    seen = seen_items(task)
    params = yaml.safe_load(BASELINES.read_text())["methods"]
    lists = {}
    for kind in ("top_frequency", "item_knn"):
        model = make_baseline(kind, params[kind].get("params")).fit(task.history)
        lists[kind + (" (= popularity among new items)" if kind == "top_frequency" else ", tuned")] = model.recommend(
            task.users, K, exclude=seen
        )[0]
    runtime = ModelRuntime()
    table = ItemTable.from_history(task.history, catalog)
    together = BoughtTogether.from_history(task.history)
    retrieval = Retrieval(bundle.encoder(runtime), bundle.item_vectors, table, bundle.manifest.retrieval, bought_together=together)
    # the same shelf with a ranker trained on its own candidates (export's cut-offs): its labels are the new items only
    config = ExportConfig()
    lists_for_new = training_lists(
        task.history.orders(), catalog, retrieval.encoder, bundle.item_vectors, bundle.manifest.retrieval, config.cutoffs, page="discover"
    )
    new_item_ranker = fit_ranker(*lists_for_new, config.ranker).eval()
    for ranker, scorer in (("served ranker", bundle.scorer(runtime)), ("ranker trained on new items", new_item_ranker.predict)):
        for weight in WEIGHTS:
            policy = Policy(PolicyConfig(placement_weight=weight), table, bundle.item_vectors)
            states = [UserState.from_history(task.history, int(u)) for u in task.users]
            lists[f"served discover placement, {ranker} (placement_weight {weight:g})"] = policy_lists(
                retrieval, scorer, policy.select, task.history, task.users, states, "discover", K
            )
    for name, recs in lists.items():
        own = sum(np.isin(row, s).sum() for row, s in zip(recs, seen))
        assert own == 0, f"{name} listed {own} of the users' own items"
    per_user = {name: split_recall_at_k(recs, task.targets, seen, K)[1] for name, recs in lists.items()}
    defined = ~np.isnan(next(iter(per_user.values())))
    table_out = pd.DataFrame({"new_item_recall@10": {n: float(np.nanmean(v)) for n, v in per_user.items()}})
    table_out.index.name = "method"
    print_table(table_out.round(4), f"Discover shelf ({int(defined.sum())} test users with new items in their basket)")
    best = max((n for n in per_user if not n.startswith("served")), key=lambda n: np.nanmean(per_user[n]))
    for name in (n for n in per_user if n.startswith("served")):
        mean, low, high = paired_bootstrap(per_user[name], per_user[best], samples=2_000)
        print(f"{name} vs {best}: new_item_recall@10 {mean:+.4f} [{low:+.4f}, {high:+.4f}] (paired, 2,000 resamples)")
    print_table(pool_recall(retrieval, task, seen).round(4), "Discover candidates: share of the test basket's new items they hold")


def pool_recall(retrieval: Retrieval, task, seen: list[np.ndarray]) -> pd.DataFrame:
    """Per source (and all): the mean over users of the share of their new test items among the discover candidates."""
    states = [UserState.from_history(task.history, int(u)) for u in task.users]
    found = retrieval.candidates(states, user_context(task.history, task.users), placements=[Placement("discover")] * len(states))
    shares: dict[str, list[float]] = {"all candidates": [], **{source: [] for source in SOURCES}}
    sizes = []
    for candidates, target, own in zip(found, task.targets, seen):
        new = np.setdiff1d(target, own)
        if not len(new):
            continue
        sizes.append(len(candidates.items))
        shares["all candidates"].append(float(np.isin(new, candidates.items).mean()))
        for bit, source in enumerate(SOURCES):
            shares[source].append(float(np.isin(new, candidates.items[(candidates.sources & (1 << bit)) > 0]).mean()))
    table = pd.DataFrame({"share of new test items": {name: float(np.mean(v)) for name, v in shares.items() if v}})
    table.index.name = f"source ({np.mean(sizes):.0f} candidates a user)"
    return table


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
