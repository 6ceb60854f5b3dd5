"""Cart completion on a run's own split (README table): the served `cart` placement against the baselines.

    .venv/bin/python benchmarks/cart_completion.py experiments/runs/<run> experiments/registry-instacart [v0001]

Each test basket's first 3 items added are the live cart; the rest of the basket is ranked, full ranking, the
cart's items excluded (hyperrec/eval/cart_completion.py). Methods: personal top-frequency and tuned TIFU-KNN
(history only, the committed `configs/eval/instacart_baselines.yaml` parameters), cart item-kNN (cosine
co-occurrence with the cart's items), and the served path with the same state for the `home` placement (the cart
seen only as live items) and the `cart` placement. The cart placement's `policy.placement_weight` is chosen on
the validation baskets (each user's basket before the last), then the table is on the test baskets. Bought-together
rows and the item table come from the task's own history, never from the evaluated baskets; the version's encoder,
item vectors and served ranker are used as exported. Written to experiments/results/cart_completion/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hyperrec.bundle.bought_together import BoughtTogether
from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.onnx_models import Scorer
from hyperrec.bundle.placements import Page
from hyperrec.bundle.retrieval import Retrieval
from hyperrec.bundle.store import Bundle, ModelRuntime
from hyperrec.eval.cart_completion import CartTask, cart_knn_lists, cart_state, cart_task, recommender_lists
from hyperrec.eval.metrics import hit_matrix, ndcg_at_k, paired_bootstrap, recall_at_k
from hyperrec.eval.report import plot_metrics, print_table, write_table
from hyperrec.export.run import load_source
from hyperrec.export.served_ranker import policy_lists
from hyperrec.models.baselines import make_baseline
from hyperrec.models.item_index import single_threaded
from hyperrec.registry import Registry
from hyperrec.serve.config import PolicyConfig
from hyperrec.serve.policy import Policy

K = 10
CART_SIZE = 3
WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0)
BASELINES = Path(__file__).resolve().parents[1] / "configs" / "eval" / "instacart_baselines.yaml"
OUT = Path("experiments/results/cart_completion")


def served(bundle: Bundle, catalog: pd.DataFrame, task: CartTask) -> tuple[Retrieval, Scorer]:
    """The version's models over an item table and bought-together rows of `task`'s own history."""
    table = ItemTable.from_history(task.history, catalog)
    together = BoughtTogether.from_history(task.history)
    runtime = ModelRuntime()
    retrieval = Retrieval(bundle.encoder(runtime), bundle.item_vectors, table, bundle.manifest.retrieval, bought_together=together)
    return retrieval, bundle.scorer(runtime)


def cart_lists(retrieval: Retrieval, scorer: Scorer, policy: Policy, task: CartTask, page: Page) -> np.ndarray:
    """The served path's lists for `page`, each user with their cart (added just after their last basket)."""
    at = [int(1e6 * task.history.times[u][-1]) + 1_000_000 for u in task.users]
    states = [cart_state(task.history, int(u), cart, t) for u, cart, t in zip(task.users, task.carts, at)]
    return policy_lists(retrieval, scorer, policy.select, task.history, task.users, states, page, K, drop=task.carts)


def scored(lists: np.ndarray, task: CartTask) -> dict[str, np.ndarray]:
    hits = hit_matrix(lists, task.targets)
    n = np.array([len(t) for t in task.targets])
    return {"recall@10": recall_at_k(hits, n, K), "ndcg@10": ndcg_at_k(hits, n, K)}


def best_weight(bundle: Bundle, catalog: pd.DataFrame, task: CartTask) -> tuple[float, dict[float, float]]:
    retrieval, scorer = served(bundle, catalog, task)
    recall = {}
    for weight in WEIGHTS:
        policy = Policy(PolicyConfig(placement_weight=weight), retrieval.table, bundle.item_vectors)
        recall[weight] = float(scored(cart_lists(retrieval, scorer, policy, task, "cart"), task)["recall@10"].mean())
        print(f"validation: placement_weight {weight:g}: recall@10 {recall[weight]:.4f}", flush=True)
    return max(recall, key=lambda w: (recall[w], -w)), recall


def main(run: Path, registry_root: Path, version: str = "current") -> None:
    single_threaded()
    registry = Registry(registry_root)
    bundle = registry.bundle(registry.resolve(version))
    source = load_source(run)
    split, catalog = source.split, source.dataset.catalog
    valid, test = (cart_task(t, split.full, CART_SIZE) for t in (split.valid, split.test))
    print(f"cart completion: {len(test.users)} test baskets, {len(valid.users)} validation baskets of more than {CART_SIZE} items")
    weight, _ = best_weight(bundle, catalog, valid)

    params = yaml.safe_load(BASELINES.read_text())["methods"]
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for kind in ("top_frequency", "tifu_knn"):
        model = make_baseline(kind, params[kind].get("params")).fit(test.history)
        per_user[f"{kind} (history only)"] = scored(recommender_lists(model, test, K), test)
    per_user["cart item-kNN (cosine co-occurrence)"] = scored(cart_knn_lists(test, K), test)
    retrieval, scorer = served(bundle, catalog, test)
    for page, w in (("home", 0.0), ("cart", weight)):  # home has no affinity: its weight changes nothing
        policy = Policy(PolicyConfig(placement_weight=w), retrieval.table, bundle.item_vectors)
        per_user[f"served {page} placement" + (f" (placement_weight {w:g})" if page == "cart" else "")] = scored(
            cart_lists(retrieval, scorer, policy, test, page), test
        )

    table = pd.DataFrame({name: {m: v.mean() for m, v in values.items()} for name, values in per_user.items()}).T
    table.index.name = "method"
    print_table(table.round(4), f"Cart completion ({len(test.users)} test baskets, first {CART_SIZE} items = the cart)")
    cart = next(name for name in per_user if name.startswith("served cart"))
    baselines = [n for n in per_user if not n.startswith("served")]
    strongest = max(baselines, key=lambda n: per_user[n]["recall@10"].mean())
    for metric in ("recall@10", "ndcg@10"):
        mean, low, high = paired_bootstrap(per_user[cart][metric], per_user[strongest][metric], samples=2_000)
        print(f"{cart} vs {strongest}: {metric} {mean:+.4f} [{low:+.4f}, {high:+.4f}] (paired, 2,000 bootstrap resamples)")
    write_table(table, OUT, "cart_completion")
    plot_metrics(table, ["recall@10", "ndcg@10"], OUT / "cart_completion.png", "Cart completion (test baskets)")
    print(f"written to {OUT}/")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
