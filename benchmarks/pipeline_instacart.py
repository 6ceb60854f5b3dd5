"""Two-stage Pipeline (candidates + learned ranker) vs top_frequency and tuned TIFU-KNN on Instacart.

Leave-last-basket-out, full ranking over the catalogue. Each method is fitted on a task's
`history` and judged on its targets; the validation task (target = the basket before the last)
is the one to tune on, the test task (target = the last basket) is reported, never selected on.

    .venv/bin/python benchmarks/pipeline_instacart.py                 # validation and test
    .venv/bin/python benchmarks/pipeline_instacart.py --task valid --label-baskets 10
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from hyperrec.config import DataConfig
from hyperrec.data.instacart import load_instacart
from hyperrec.data.sequences import EvalTask, make_split
from hyperrec.eval.evaluate import Evaluation, evaluate_model
from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.models.baselines import make_baseline
from hyperrec.models.pipeline import Pipeline, PipelineConfig

TIFU = {"group_count": 7, "within_decay": 0.9, "group_decay": 0.6, "neighbors": 50, "alpha": 0.9}  # tuned on validation
ITEM_KNN = {"neighbors": 500, "shrink": 10}
COLUMNS = ["recall@10", "ndcg@10", "recall@20", "explore_recall@10", "repeat_recall@10"]


def make_pipeline(config: PipelineConfig) -> Pipeline:
    retrievers = {"tifu": make_baseline("tifu_knn", TIFU), "iknn": make_baseline("item_knn", ITEM_KNN)}
    return Pipeline(retrievers, config)


def run_task(name: str, task: EvalTask, config: PipelineConfig, samples: int) -> dict:
    methods = {
        "top_frequency": lambda: make_baseline("top_frequency"),
        "tifu_knn": lambda: make_baseline("tifu_knn", TIFU),
        "pipeline": lambda: make_pipeline(config),
    }
    results: dict[str, Evaluation] = {}
    fit_seconds: dict[str, float] = {}
    for method, build in methods.items():
        start = time.perf_counter()
        model = build().fit(task.history)
        fit_seconds[method] = time.perf_counter() - start
        results[method] = evaluate_model(model, task, ks=[10, 20], list_length=100)

    print(f"\n== {name}: {len(task.users)} users ==")
    print(f"{'method':15s}" + "".join(f"{c:>19s}" for c in COLUMNS) + f"{'fit s':>9s}")
    for method, ev in results.items():
        print(f"{method:15s}" + "".join(f"{ev.summary[c]:19.4f}" for c in COLUMNS) + f"{fit_seconds[method]:9.1f}")
    bootstrap = {}
    for metric in ("recall@10", "ndcg@10"):
        a = results["pipeline"].per_user[metric].to_numpy()
        b = results["tifu_knn"].per_user[metric].to_numpy()
        mean, lo, hi = paired_bootstrap(a, b, samples=samples)
        bootstrap[metric] = (mean, lo, hi)
        verdict = "excludes 0" if lo > 0 or hi < 0 else "includes 0"
        print(f"pipeline - tifu_knn {metric}: {mean:+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}]  ({verdict})")
    return {
        "summary": {m: {c: ev.summary[c] for c in COLUMNS} for m, ev in results.items()},
        "fit_seconds": fit_seconds,
        "bootstrap_vs_tifu": bootstrap,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["valid", "test", "both"], default="both")
    parser.add_argument("--config", default="{}", help='PipelineConfig overrides as JSON, e.g. \'{"ranker": {"epochs": 5}}\'')
    parser.add_argument("--label-baskets", type=int, default=None)
    parser.add_argument("--samples", type=int, default=2000, help="bootstrap samples")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    overrides = json.loads(args.config)
    if args.label_baskets is not None:
        overrides["label_baskets"] = args.label_baskets
    config = PipelineConfig.model_validate(overrides)
    print("pipeline config:", config.model_dump_json())

    split = make_split(load_instacart(), DataConfig())
    out = {}
    for name in ["valid", "test"] if args.task == "both" else [args.task]:
        out[name] = run_task(name, getattr(split, name), config, args.samples)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, default=float)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
