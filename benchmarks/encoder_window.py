"""The served encoder's input length, chosen by measurement: latency of the ONNX encoder and the
served path's offline metric (retrieval + the exported ranker, full ranking on the run's test
task) for windows of the user's last L items.

    .venv/bin/python benchmarks/encoder_window.py experiments/runs/<run> experiments/registry-instacart [v0001]

The ranker stays the one export trained at the model's max_len: a shorter window is a serve-time
setting (`retrieval.encoder_len`), so this is what serving with it would score offline.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.retrieval import Retrieval, context_arrays
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.export.run import load_source
from hyperrec.export.served_ranker import evaluate_serving
from hyperrec.models.item_index import single_threaded
from hyperrec.registry import Registry

WINDOWS = (200, 100, 50, 20)
REPEATS = 300


def encoder_latency(retrieval: Retrieval, states: list[UserState], window: int) -> tuple[float, float]:
    """p50, p99 ms of one user's encoder call (batch 1, one thread) over the last `window` items."""
    context = context_arrays([{}], np.array([1.7e9]))
    times = []
    for i in range(REPEATS):
        sequence = states[i % len(states)].sequence(window)[None]
        begun = time.perf_counter()
        retrieval.encoder(sequence, context)
        times.append(1000 * (time.perf_counter() - begun))
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(run: Path, registry_root: Path, version: str = "current") -> None:
    single_threaded()
    registry = Registry(registry_root)
    bundle = registry.bundle(registry.resolve(version))
    source = load_source(run)
    task = source.split.test
    table = ItemTable.from_history(task.history, source.dataset.catalog)
    states = [UserState.from_history(task.history, u) for u in range(task.history.n_users)]
    scorer = bundle.scorer(ModelRuntime())
    rows = []
    for window in WINDOWS:
        config = bundle.manifest.retrieval.model_copy(update={"encoder_len": window})
        retrieval = Retrieval(bundle.encoder(ModelRuntime()), bundle.item_vectors, table, config)
        p50, p99 = encoder_latency(retrieval, states, window)
        metrics = evaluate_serving(retrieval, scorer, task, [10, 20], 100).summary
        rows.append({"window": window, "encoder p50 ms": p50, "encoder p99 ms": p99} | {k: metrics[k] for k in ("recall@10", "ndcg@10")})
        print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(4).to_string(index=False))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
