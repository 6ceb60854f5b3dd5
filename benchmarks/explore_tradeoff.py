"""How much recall a pipeline gives up for exploration: recall@10 vs explore recall@10 as the
score bonus of candidates new to the user (`explore_bonus`) grows.

    .venv/bin/python benchmarks/explore_tradeoff.py configs/eval/instacart_models.yaml
    .venv/bin/python benchmarks/explore_tradeoff.py configs/eval/synthetic_models.yaml --method pipeline_two_tower

The pipeline method of an eval config is fitted once on the validation history and once on the
test history; the bonus is applied at scoring time, so every point of the curve shares one fit.
The bonus is meant to be chosen on validation; the test curve is printed next to it, with the
baselines' test numbers (parameters as `hyperrec eval` of the same config tuned them) as
reference points. Writes CSV, Markdown and a PNG under
experiments/results/explore_tradeoff/<config name>/.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
from rich.console import Console

from hyperrec.config import load_config
from hyperrec.data.sequences import make_split
from hyperrec.data.sources import load_dataset
from hyperrec.eval.evaluate import Evaluation, evaluate_model
from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.eval.report import print_table, write_table
from hyperrec.eval.run import build_fixed
from hyperrec.models.baselines import make_baseline

COLUMNS = ["recall@10", "ndcg@10", "explore_recall@10", "repeat_share@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="an eval config with a method of kind 'pipeline'")
    parser.add_argument("--method", default="pipeline", help="the pipeline method of the config")
    parser.add_argument("--bonuses", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 3.0, 4.0])
    parser.add_argument("--out", type=Path, default=Path("experiments/results/explore_tradeoff"))
    args = parser.parse_args()

    config = load_config(args.config, [])
    method = config.methods.get(args.method)
    if method is None or method.kind != "pipeline":
        parser.error(f"{args.config}: no method '{args.method}' of kind 'pipeline' (methods: {', '.join(config.methods)})")
    dataset = load_dataset(config.data)
    split = make_split(dataset, config.data)
    tuned = config.eval.out_dir / config.name / "run.json"  # parameters `hyperrec eval` chose, when it ran
    tuned_params = json.loads(tuned.read_text())["methods"] if tuned.is_file() else {}
    baselines: dict[str, Evaluation] = {}
    for name in ("popularity", "top_frequency", "item_knn", "tifu_knn"):
        if name in config.methods:
            baseline = config.methods[name]
            if baseline.grid and name not in tuned_params:
                parser.error(
                    f"{args.config}: '{name}' is tuned by a grid; run `hyperrec eval {args.config}` first so that its "
                    "tuned parameters are compared"
                )
            params = tuned_params.get(name, {}).get("params", baseline.params)
            baselines[name] = evaluate_model(make_baseline(baseline.kind, params).fit(split.test.history), split.test, [10], 100)
    best_recall = max(baselines, key=lambda n: baselines[n].summary["recall@10"])
    best_explore = max(baselines, key=lambda n: baselines[n].summary["explore_recall@10"])

    rows = []
    for task_name in ("valid", "test"):
        task = getattr(split, task_name)
        pipeline = build_fixed(method, dataset.catalog).fit(task.history)
        for bonus in args.bonuses:
            pipeline.config = pipeline.config.model_copy(update={"explore_bonus": bonus})
            evaluation = evaluate_model(pipeline, task, [10], 100)
            row = {
                "task": task_name,
                "method": f"{args.method} +{bonus:g}",
                "explore_bonus": bonus,
                **{c: evaluation.summary[c] for c in COLUMNS},
            }
            if task_name == "test":
                row[f"Δrecall@10 vs {best_recall}"] = paired(evaluation, baselines[best_recall], "recall@10", config.seed)
                row[f"Δexplore_recall@10 vs {best_explore}"] = paired(evaluation, baselines[best_explore], "explore_recall@10", config.seed)
            rows.append(row)
    rows += [
        {"task": "test", "method": name, "explore_bonus": float("nan"), **{c: ev.summary[c] for c in COLUMNS}}
        for name, ev in baselines.items()
    ]

    table = (
        pd.DataFrame(rows)
        .set_index("method")
        .fillna({c: "" for c in (f"Δrecall@10 vs {best_recall}", f"Δexplore_recall@10 vs {best_explore}")})
    )
    out = args.out / config.name
    files = write_table(table, out, "explore_tradeoff")
    plot(table, out / "explore_tradeoff.png", f"{config.name}: {args.method}, explore bonus 0 → {max(args.bonuses):g}")
    print_table(table, f"{config.name}: recall vs exploration ({args.method}, full ranking)", Console(width=220))
    print("wrote " + ", ".join(str(f) for f in [*files, out / "explore_tradeoff.png"]))


def paired(evaluation: Evaluation, reference: Evaluation, metric: str, seed: int) -> str:
    """Mean per-user difference and its 95% bootstrap interval (over users where both are defined)."""
    diff, lo, hi = paired_bootstrap(evaluation.per_user[metric].to_numpy(), reference.per_user[metric].to_numpy(), 2000, seed)
    return f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 5))
    for task, marker in (("valid", "o--"), ("test", "o-")):
        curve = table[(table["task"] == task) & table["explore_bonus"].notna()]
        ax.plot(curve["explore_recall@10"], curve["recall@10"], marker, label=f"pipeline ({task})")
        if task == "test":
            for _, row in curve.iterrows():
                ax.annotate(f"+{row['explore_bonus']:g}", (row["explore_recall@10"], row["recall@10"]), fontsize=8)
    baselines = table[table["explore_bonus"].isna()]
    ax.scatter(baselines["explore_recall@10"], baselines["recall@10"], color="black", zorder=3)
    for name, row in baselines.iterrows():
        ax.annotate(name, (row["explore_recall@10"], row["recall@10"]), fontsize=8)
    ax.set_xlabel("explore recall@10 (target items new to the user)")
    ax.set_ylabel("recall@10")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
