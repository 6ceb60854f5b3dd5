"""What `hyperrec export` prints: parity, the served path's offline metrics next to the run's, promotion."""

from __future__ import annotations

import pandas as pd
from rich.console import Console

from hyperrec.eval.report import print_table
from hyperrec.export.run import ExportResult

SHOWN = ("recall@10", "ndcg@10", "recall@20", "explore_recall@10", "repeat_recall@10", "coverage@10")


def print_export(result: ExportResult, console: Console) -> None:
    m = result.manifest
    console.print("ONNX parity (max abs error vs torch): " + ", ".join(f"{name} {p.max_abs_error:.1e}" for name, p in m.parity.items()))
    rows = {"served (retrieval + ranker)": m.metrics}
    rows |= {f"served, {slots} exploration slot(s) in the top 10": values for slots, values in m.explore_slot_metrics.items()}
    rows |= {"retrieval only (encoder ANN)": m.retrieval_only_metrics, "training run (test)": m.run_test_metrics}
    table = pd.DataFrame({name: {k: values.get(k, float("nan")) for k in SHOWN} for name, values in rows.items()}).T
    print_table(table, f"{result.version}: full ranking on the run's test task", console)
    console.print(f"wrote {result.path} ({m.export_seconds} s)")
    if result.promotion is not None:
        verdict = "promoted to CURRENT" if result.promotion.promoted else "not promoted"
        console.print(f"{result.version} {verdict}: {result.promotion.reason}")
