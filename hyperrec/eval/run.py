"""`hyperrec eval CONFIG`: tune each method on validation, score it on test, compare.

Every method is tuned on the validation split (its `grid`), refitted with the best params on
everything before the test target, and evaluated by full ranking. Methods are compared to the
reference with a per-user paired bootstrap confidence interval.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console

from hyperrec.config import ConfigError, ExperimentConfig, MethodConfig, check_section
from hyperrec.data.sequences import Split, make_split
from hyperrec.data.sources import load_dataset
from hyperrec.data.synthetic import SyntheticShop
from hyperrec.eval.evaluate import Evaluation, evaluate_model, metric_names
from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.eval.report import plot_metrics, print_table, write_table
from hyperrec.eval.tuning import grid_points, tune
from hyperrec.models.base import Recommender
from hyperrec.models.baselines import make_baseline
from hyperrec.models.pipeline import Pipeline, PipelineConfig
from hyperrec.train.runs import load_run, require_run


@dataclass(frozen=True)
class MethodResult:
    params: dict[str, Any]
    valid_score: float
    test: Evaluation
    fit_seconds: float


@dataclass(frozen=True)
class EvalReport:
    table: pd.DataFrame
    results: dict[str, MethodResult]
    files: list[Path]


def validate_methods(config: ExperimentConfig, path: Path | str, require_runs: bool = True) -> None:
    """Check every method's params and grid points, and the tuning metric, before any data loads;
    with `require_runs`, also that every run a method names has been trained."""
    known = metric_names(config.eval.ks, config.eval.list_length)
    if config.eval.tune_metric not in known:
        raise ConfigError(f"{path}: key 'eval.tune_metric': value {config.eval.tune_metric!r} is not one of {known}")
    for name, method in config.methods.items():
        if method.kind == "run":
            if require_runs:
                _check_run(method, f"methods.{name}", path)
            continue
        if method.kind == "pipeline":
            check_section(path, f"methods.{name}.params", lambda params=method.params: PipelineConfig.model_validate(params))
            for r, retriever in method.retrievers.items():
                if retriever.kind == "run":
                    if require_runs:
                        _check_run(retriever, f"methods.{name}.retrievers.{r}", path)
                else:
                    check_section(path, f"methods.{name}.retrievers.{r}.params", lambda m=retriever: make_baseline(m.kind, m.params))
            continue
        for point in [method.params, *grid_points(method.params, method.grid)]:
            check_section(path, f"methods.{name}.params", lambda kind=method.kind, point=point: make_baseline(kind, point))


def _check_run(method: MethodConfig, key: str, path: Path | str) -> None:
    try:
        require_run(method.path)
    except FileNotFoundError as error:
        raise ConfigError(f"{path}: key '{key}.path': value {error}") from None


def headline_metrics(ks: list[int], list_length: int) -> list[str]:
    k, k2 = ks[0], ks[-1]
    names = [f"recall@{k}", f"ndcg@{k}", f"hit@{k}"]
    if k2 != k:
        names += [f"recall@{k2}", f"ndcg@{k2}"]
    return names + [
        f"mrr@{list_length}",
        f"repeat_recall@{k}",
        f"explore_recall@{k}",
        f"new_item_recall@{k}",
        f"repeat_share@{k}",
        f"coverage@{k}",
    ]


def evaluate_methods(config: ExperimentConfig, split: Split, catalog: pd.DataFrame, console: Console) -> dict[str, MethodResult]:
    ev = config.eval
    results = {}
    for name, method in config.methods.items():
        if method.kind in ("run", "pipeline"):
            results[name] = evaluate_fixed(lambda m=method: build_fixed(m, catalog), split, ev.ks, ev.list_length, ev.tune_metric)
            if method.kind == "run":
                results[name] = replace(results[name], params={"run": str(require_run(method.path))})
            console.print(
                f"  {name}: {method.kind}, valid {ev.tune_metric}={results[name].valid_score:.4f}, fit {results[name].fit_seconds:.0f}s"
            )
            continue
        params, trials = tune(method.kind, method.params, method.grid, split.valid, ev.tune_metric, ev.ks, ev.list_length, label=name)
        started = time.perf_counter()
        model = make_baseline(method.kind, params).fit(split.test.history)
        fit_seconds = time.perf_counter() - started
        evaluation = evaluate_model(model, split.test, ev.ks, ev.list_length, new_item_lists=True)
        valid_score = float(trials[ev.tune_metric].max())
        results[name] = MethodResult(params, valid_score, evaluation, fit_seconds)
        console.print(f"  {name}: valid {ev.tune_metric}={valid_score:.4f} over {len(trials)} point(s), params {params}")
    return results


def build_fixed(method: MethodConfig, catalog: pd.DataFrame) -> Recommender:
    """A method with nothing to grid-search: a trained run, or a pipeline over baselines and runs."""
    if method.kind == "run":
        return load_run(require_run(method.path), catalog, method.head)
    retrievers = {
        name: build_fixed(r, catalog) if r.kind == "run" else make_baseline(r.kind, r.params) for name, r in method.retrievers.items()
    }
    return Pipeline(retrievers, PipelineConfig.model_validate(method.params), catalog)


def evaluate_fixed(build: Callable[[], Recommender], split: Split, ks: list[int], list_length: int, tune_metric: str) -> MethodResult:
    """Validation score from a fit on the validation history; test metrics from a fresh fit on the test history."""
    valid_score = evaluate_model(build().fit(split.valid.history), split.valid, ks, list_length).summary[tune_metric]
    started = time.perf_counter()
    model = build().fit(split.test.history)
    fit_seconds = time.perf_counter() - started
    return MethodResult({}, valid_score, evaluate_model(model, split.test, ks, list_length, new_item_lists=True), fit_seconds)


def comparison_columns(results: dict[str, MethodResult], reference: str, metrics: list[str], samples: int, seed: int) -> pd.DataFrame:
    """Per method: mean difference to the reference and its 95% paired bootstrap interval."""
    base = results[reference].test.per_user
    rows = {}
    for name, result in results.items():
        row = {}
        for metric in metrics:
            diff, lo, hi = paired_bootstrap(result.test.per_user[metric].to_numpy(), base[metric].to_numpy(), samples, seed)
            row[f"Δ{metric} vs {reference} [95% CI]"] = "—" if name == reference else f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        rows[name] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def true_preferences(config: ExperimentConfig, split: Split) -> list[np.ndarray]:
    """The synthetic shop's true top items (at the end of its horizon) of each test user."""
    shop = SyntheticShop(config.data.synthetic)
    users = np.array([int(user_id[1:]) for user_id in split.user_ids[split.test.users]])  # "u<index>"
    return list(shop.true_top_items(users, max(config.eval.ks)))


def run_eval(config: ExperimentConfig, console: Console | None = None) -> EvalReport:
    console = console or Console()
    ev = config.eval
    if not config.methods:
        raise ValueError("the config lists no methods to evaluate (add a `methods:` section)")
    dataset = load_dataset(config.data)
    split = make_split(dataset, config.data)
    if config.data.source == "synthetic":
        split = replace(split, test=replace(split.test, truth=true_preferences(config, split)))
    console.print(
        f"[bold]{dataset.name}[/]: {len(dataset.events):,} events, {split.full.n_users:,} users, {split.full.n_items:,} items; "
        f"split '{config.data.split}': {len(split.valid.users):,} validation and {len(split.test.users):,} test users"
    )
    results = evaluate_methods(config, split, dataset.catalog, console)
    metrics = headline_metrics(ev.ks, ev.list_length)
    metrics += [f"truth_recall@{k}" for k in ev.ks if f"truth_recall@{k}" in next(iter(results.values())).test.summary]
    table = pd.DataFrame({name: {m: r.test.summary[m] for m in metrics} for name, r in results.items()}).T
    table.index.name = "method"
    reference = ev.reference or next(iter(results))
    compared = metrics[:2] + [f"new_item_recall@{ev.ks[0]}"]
    table = table.join(comparison_columns(results, reference, compared, ev.bootstrap_samples, config.seed))
    out = ev.out_dir / config.name
    files = write_table(table, out, "results")
    plot_metrics(table, metrics[:5], out / "results.png", f"{config.name}: test split, full ranking")
    files.append(out / "results.png")
    summaries = {name: r.test.summary for name, r in results.items()}
    pd.DataFrame(summaries).T.rename_axis("method").to_csv(out / "all_metrics.csv")
    pd.concat({name: r.test.per_user for name, r in results.items()}, names=["method"]).to_csv(out / "per_user.csv.gz")
    files += [out / "all_metrics.csv", out / "per_user.csv.gz", out / "run.json"]
    (out / "run.json").write_text(
        json.dumps(
            {
                "config": json.loads(config.model_dump_json()),
                "data_fingerprint": dataset.fingerprint(),
                "test_users": len(split.test.users),
                "methods": {
                    name: {"params": r.params, "valid_score": r.valid_score, "fit_seconds": r.fit_seconds} for name, r in results.items()
                },
            },
            indent=2,
        )
    )
    print_table(
        table[metrics],
        f"{config.name} — test split ({len(split.test.users)} users), full ranking over {split.full.n_items:,} items",
        console,
    )
    print_table(table[[c for c in table.columns if c.startswith("Δ")]], f"paired comparison to {reference}", console)
    console.print("wrote " + ", ".join(str(f) for f in files))
    return EvalReport(table, results, files)
