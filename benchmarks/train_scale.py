"""Training at scale: the synthetic shop through `hyperrec train`, stage by stage, as events grow.

    .venv/bin/python benchmarks/train_scale.py --sizes 1000000:100000 10000000:100000 10000000:1000000 --workers 1 2

For each EVENTS:ITEMS size it generates the seeded synthetic shop into an offline store
(`hyperrec data synthetic`, timed in a fresh process), then runs the real `hyperrec train` on it
(`configs/train/sasrec_synthetic.yaml` with `data.source=store` and a sampled softmax of 1,024
logQ-corrected negatives, as a catalogue of 1M items needs; one epoch of at most `--steps` steps:
an epoch's rate does not change with its length) once per worker count. The run record's
stage clock (rank 0) gives each stage's wall time and the worker's peak RSS when it ended: data
loading, sequence building and the time-safe split, training examples, model build, the epoch
(training, then validation on a sample of `--valid-users` users: `train.valid_users`) and the test
evaluation, full ranking for every user over every item. The table says what each costs, and the
last columns how that grows from the previous size: a stage whose time or memory grows faster than
its input is one to fix.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import pandas as pd
from rich.console import Console

from hyperrec.config import SyntheticConfig
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.synthetic import write_synthetic
from hyperrec.eval.report import print_table, write_table
from hyperrec.train.stage_clock import peak_rss_mib

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/train/sasrec_synthetic.yaml"
EVENTS_PER_USER = 61  # the synthetic shop's default sessions_per_user (8) gives about this many events per user


def generate(store: Path, n_items: int, n_users: int) -> dict[str, float]:
    """Write the shop into `store` (in a fresh process: its peak RSS is its own)."""
    started = time.perf_counter()
    events = write_synthetic(SyntheticConfig(n_items=n_items, n_users=n_users, seed=0), OfflineStore(store), show_progress=False)
    return {"seconds": time.perf_counter() - started, "peak_rss_mib": peak_rss_mib(), "events": events}


def train(store: Path, runs: Path, name: str, workers: int, steps: int, valid_users: int) -> dict:
    """`hyperrec train` on the store; returns its run record."""
    overrides = [
        f"name={name}",
        "data.source=store",
        f"data.path={store}",
        "train.epochs=1",
        f"train.max_steps_per_epoch={steps}",
        f"train.valid_users={valid_users}",
        "model.params.loss=sampled_softmax",  # a full softmax over 1M items is 50 x 128 x 1M logits a step
        "model.params.n_negatives=1024",
        f"train.num_workers={workers}",
        f"train.resources_per_worker={{CPU: {max(1, 2 // workers)}}}",
        "tracking.wandb_mode=disabled",
        f"tracking.runs_dir={runs}",
    ]
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hyperrec.cli", "train", str(CONFIG), *overrides], check=True, cwd=REPO)
    [record_file] = sorted(runs.glob(f"{name}-*/record.json"))
    record = json.loads(record_file.read_text())
    record["command_seconds"] = time.perf_counter() - started
    return record


def rows_of(record: dict, events: int, items: int, workers: int, generated: dict[str, float]) -> list[dict]:
    [epoch] = record["epochs"]
    stages = record["stages"]
    rows = [{"stage": "generate (data synthetic)", **generated}]
    for name, stage in stages.items():
        if name == "epochs":  # split into its two halves, from the epoch's own timers
            rows.append({"stage": "train steps", "seconds": epoch["train_seconds"], "peak_rss_mib": epoch["peak_rss_mib"]})
            rows.append({"stage": "validation (sampled users)", "seconds": epoch["valid_seconds"], "peak_rss_mib": epoch["peak_rss_mib"]})
        else:
            rows.append({"stage": name, **stage})
    rows.append({"stage": "whole command", "seconds": record["command_seconds"], "peak_rss_mib": max(r["peak_rss_mib"] for r in rows)})
    for row in rows:
        row.update(events=events, items=items, workers=workers)
        if row["stage"] == "train steps":
            row["rate"] = f"{epoch['samples_per_s']:,.0f} ex/s"
        elif row["stage"].startswith("generate") or row["stage"] == "load_data":
            row["rate"] = f"{events / row['seconds']:,.0f} events/s"
    return rows


def with_growth(table: pd.DataFrame) -> pd.DataFrame:
    """Per stage and worker count: time and memory ratio to the previous size, next to the events ratio."""
    table = table.copy()
    for _, group in table.groupby(["stage", "workers"], sort=False):
        previous = group.shift(1)
        table.loc[group.index, "events x"] = (group["events"] / previous["events"]).round(1)
        table.loc[group.index, "time x"] = (group["seconds"] / previous["seconds"]).round(1)
        table.loc[group.index, "memory x"] = (group["peak_rss_mib"] / previous["peak_rss_mib"]).round(2)
    return table


def size(text: str) -> tuple[int, int]:
    events, _, items = text.partition(":")
    return int(float(events)), int(float(items))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=size, default=[(100_000, 10_000), (1_000_000, 100_000)], help="EVENTS:ITEMS pairs")
    parser.add_argument("--workers", nargs="+", type=int, default=[1], help="Ray Train worker counts (2 cores: 1 or 2)")
    parser.add_argument("--steps", type=int, default=100, help="training steps in the one epoch")
    parser.add_argument("--valid-users", type=int, default=2_000, help="train.valid_users: the epoch's validation sample")
    parser.add_argument("--work", type=Path, default=REPO / "experiments/bench/train_scale", help="stores and runs (kept for reuse)")
    parser.add_argument("--out", type=Path, default=REPO / "experiments/results/train_scale")
    args = parser.parse_args()
    console, rows = Console(), []
    runs = args.work / "runs" / time.strftime("%Y%m%d-%H%M%S")  # this invocation's runs only
    for events, items in args.sizes:
        store = args.work / f"shop-{events}-{items}"
        if not (store / "events").exists():
            shutil.rmtree(store, ignore_errors=True)
            console.print(f"[bold]generating {events:,} events over {items:,} items[/] into {store}")
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                generated = pool.submit(generate, store, items, max(1, events // EVENTS_PER_USER)).result()
            (store / "generated.json").write_text(json.dumps(generated))
        generated = json.loads((store / "generated.json").read_text())
        for workers in args.workers:
            console.print(f"[bold]hyperrec train[/] on {generated['events']:,} events, {items:,} items, {workers} worker(s)")
            record = train(store, runs, f"scale-{events}-{items}-x{workers}", workers, args.steps, args.valid_users)
            rows += rows_of(record, int(generated["events"]), items, workers, generated)
    table = with_growth(pd.DataFrame(rows))
    columns = ["events", "items", "workers", "stage", "seconds", "peak_rss_mib", "rate", "events x", "time x", "memory x"]
    table = table[[c for c in columns if c in table]].round({"seconds": 1, "peak_rss_mib": 0}).set_index("stage")
    print_table(table, "training at scale: hyperrec train on the synthetic shop, per stage")
    write_table(table, args.out, "train_scale")


if __name__ == "__main__":
    main()
