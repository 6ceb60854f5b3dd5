"""`hyperrec sweep CONFIG`: a Ray Tune search over any keys of a training config.

Each trial runs the same training loop as `hyperrec train` (one worker per trial, resources
from the sweep config), reports validation metrics every epoch so ASHA can stop weak trials
early, and writes its own run directory. At the end: a results table (CSV, Markdown, printed)
and PNG plots of the metric against each swept key and the learning curves of the best trials.
"""

from __future__ import annotations

import copy
import json
import math
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import BasicVariantGenerator
from rich.console import Console

from hyperrec.config import ExperimentConfig, SearchDimension, SweepConfig, apply_overrides, read_yaml, set_dotted, validate
from hyperrec.eval.report import plot_learning_curves, print_table, save_figure, write_table
from hyperrec.train.launcher import ensure_ray
from hyperrec.train.loop import train_loop
from hyperrec.train.model_factory import model_config
from hyperrec.train.tracking import RECORD_FILE


class TuneReporter:
    """Reporter for a Ray Tune trial: metrics and checkpoints go to `tune.report`."""

    rank, world_size = 0, 1

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None)

    def restored_checkpoint(self) -> Path | None:
        checkpoint = tune.get_checkpoint()
        return Path(checkpoint.to_directory()) if checkpoint is not None else None


def tune_domain(dimension: SearchDimension) -> Any:
    if dimension.choice is not None:
        return tune.choice(dimension.choice)
    if dimension.grid is not None:
        return tune.grid_search(dimension.grid)
    if dimension.uniform is not None:
        return tune.uniform(*dimension.uniform)
    return tune.loguniform(*dimension.loguniform)


def trial_experiment(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The base training config with a trial's values set; one worker, no progress bars."""
    raw = copy.deepcopy(base)
    for key, value in params.items():
        set_dotted(raw, key.split("."), value)
    set_dotted(raw, ["train", "num_workers"], 1)
    set_dotted(raw, ["train", "progress"], False)
    return raw


def check_space(sweep: SweepConfig, base: dict[str, Any], path: Path | str) -> None:
    """Every value the search can take must make a valid training config (checked before Ray starts)."""
    for key, dimension in sweep.space.items():
        for value in dimension.choice or dimension.grid or list(dimension.uniform or dimension.loguniform):
            config = validate(trial_experiment(base, {key: value}), f"{path} (space.{key}={value!r})", ExperimentConfig)
            model_config(config, f"{path} (space.{key}={value!r})")


def _trial(params: dict[str, Any], base: dict[str, Any], sweep_dir: str) -> None:
    trial = tune.get_context().get_trial_name()
    try:
        train_loop(trial_experiment(base, params), TuneReporter(), Path(sweep_dir) / trial)
    finally:  # also when ASHA stops the trial: otherwise wandb's exit hook later finds its service gone and prints a traceback
        import wandb

        wandb.teardown()


def load_base(sweep: SweepConfig, path: Path | str) -> dict[str, Any]:
    base_path = sweep.base if sweep.base.is_absolute() else Path(path).parent.joinpath(sweep.base)
    if not base_path.is_file():
        base_path = sweep.base  # relative to the working directory (the repository root)
    raw = apply_overrides(read_yaml(base_path), sweep.overrides)
    raw["name"] = sweep.name
    validate(raw, base_path, ExperimentConfig)
    return raw


def run_sweep(sweep: SweepConfig, path: Path | str, console: Console | None = None) -> pd.DataFrame:
    console = console or Console()
    base = load_base(sweep, path)
    check_space(sweep, base, path)
    experiment = ExperimentConfig.model_validate(base)
    sweep_dir = (experiment.tracking.runs_dir / f"{sweep.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    scheduler = (
        ASHAScheduler(
            max_t=experiment.train.epochs,
            grace_period=sweep.scheduler.grace_period,
            reduction_factor=sweep.scheduler.reduction_factor,
            time_attr="epoch",
        )
        if sweep.scheduler.kind == "asha"
        else FIFOScheduler()
    )
    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(_trial, base=base, sweep_dir=str(sweep_dir)), sweep.trial_resources),
        param_space={key: tune_domain(d) for key, d in sweep.space.items()},
        tune_config=tune.TuneConfig(
            metric=sweep.metric,
            mode="max",
            scheduler=scheduler,
            num_samples=sweep.num_samples,
            max_concurrent_trials=sweep.max_concurrent,
            search_alg=BasicVariantGenerator(random_state=experiment.seed),  # the same config samples the same trials
        ),
        run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir / "ray"), verbose=1),
    )
    results = tuner.fit()
    rows, curves = [], {}
    for result in results:
        if result.metrics is None:
            continue
        history = result.metrics_dataframe
        name = str(result.metrics["trial_id"])
        record_files = list(sweep_dir.glob(f"*{name}*/{RECORD_FILE}"))
        test = json.loads(record_files[0].read_text())["test"] if record_files else {}
        rows.append(
            {
                "trial": name,
                **result.config,
                "epochs": int(history["epoch"].max()),
                f"best {sweep.metric}": float(history[sweep.metric].max()),
                "test/recall@10": test.get("recall@10", math.nan),
                "test/ndcg@10": test.get("ndcg@10", math.nan),
                "status": "finished" if record_files else "stopped early",
            }
        )
        curves[name] = history[["epoch", sweep.metric]]
    if not rows:
        raise RuntimeError(f"no trial of sweep '{sweep.name}' reported a result; see {sweep_dir / 'ray'}")
    table = pd.DataFrame(rows).set_index("trial").sort_values(f"best {sweep.metric}", ascending=False)
    write_table(table, sweep_dir, "sweep_results")
    plot_sweep(table, curves, sweep, sweep_dir)
    print_table(table, f"sweep {sweep.name}: {len(table)} trials, by {sweep.metric}", console)
    console.print(f"wrote {sweep_dir}/sweep_results.csv, .md, metric_vs_params.png, learning_curves.png")
    return table


def plot_sweep(table: pd.DataFrame, curves: dict[str, pd.DataFrame], sweep: SweepConfig, out: Path) -> None:
    metric = f"best {sweep.metric}"
    keys = list(sweep.space)
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        values = table[key]
        if pd.api.types.is_numeric_dtype(values):
            ax.scatter(values, table[metric])
            if sweep.space[key].loguniform is not None:
                ax.set_xscale("log")
        else:
            ax.scatter(values.astype(str), table[metric])
        ax.set_xlabel(key)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{sweep.name}: {metric} per trial")
    save_figure(fig, out / "metric_vs_params.png", dpi=110)
    best = {trial: (curves[trial]["epoch"], curves[trial][sweep.metric]) for trial in table.index[:5]}
    plot_learning_curves(best, sweep.metric, out / "learning_curves.png", "learning curves of the best trials")
