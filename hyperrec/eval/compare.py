"""`hyperrec compare RUN...`: finished runs side by side (table, paired intervals, plots)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from rich.console import Console

from hyperrec.eval.metrics import paired_bootstrap
from hyperrec.eval.report import plot_learning_curves, plot_metrics, print_table, write_table
from hyperrec.train.tracking import PER_USER_FILE, RECORD_FILE

COMPARED = ["recall@10", "ndcg@10", "hit@10", "recall@20", "ndcg@20", "repeat_recall@10", "explore_recall@10", "coverage@10"]


def load_record(run_dir: Path) -> dict:
    path = run_dir / RECORD_FILE
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir}: not a finished run (no {RECORD_FILE})")
    return json.loads(path.read_text())


def compare_runs(run_dirs: list[Path], out_root: Path, console: Console | None = None) -> pd.DataFrame:
    console = console or Console()
    records = {run: load_record(run) for run in run_dirs}
    rows = {}
    for record in records.values():
        test = record["test"]
        rows[record["run"]] = {
            **{m: test.get(m, float("nan")) for m in COMPARED},
            "best_epoch": record["best_epoch"],
            "wall_s": record["wall_seconds"],
            "seq/s": record["samples_per_s"],
        }
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("run")
    reference_dir = run_dirs[0]
    base = pd.read_csv(reference_dir / PER_USER_FILE).set_index("user")
    for run in run_dirs:
        other = pd.read_csv(run / PER_USER_FILE).set_index("user").reindex(base.index)
        diff, lo, hi = paired_bootstrap(other["recall@10"].to_numpy(), base["recall@10"].to_numpy())
        table.loc[records[run]["run"], f"Δrecall@10 vs {records[reference_dir]['run']} [95% CI]"] = (
            "—" if run == reference_dir else f"{diff:+.4f} [{lo:+.4f}, {hi:+.4f}]"
        )
    out = out_root / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    write_table(table, out, "compare")
    plot_metrics(table, COMPARED[:5], out / "compare.png", "runs: test split, full ranking")
    curves = {}
    for record in records.values():
        epochs = pd.DataFrame(record["epochs"])
        curves[record["run"]] = (epochs["epoch"], epochs["valid/" + record["config"]["train"]["monitor"]])
    plot_learning_curves(curves, "validation metric", out / "learning_curves.png", "learning curves")
    print_table(table, f"{len(table)} runs, test split, full ranking", console)
    console.print(f"wrote {out}/compare.csv, compare.md, compare.png, learning_curves.png")
    return table
