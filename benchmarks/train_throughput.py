"""Training throughput and peak memory: a bare PyTorch loop vs the same steps on Ray Train.

    .venv/bin/python benchmarks/train_throughput.py --items 10000 100000 1000000 --workers 1 2

For each model (SASRec, two-tower) and catalogue size it trains on random Zipf-distributed item
sequences for a fixed number of steps: once in a plain single process, then through Ray Train's
TorchTrainer with 1 and 2 CPU workers (DDP), with the same loss module the real loop uses; the
two-tower also with its TorchRec tables sharded across the workers (`train.sharded_embeddings`:
fused row-wise Adagrad on the tables, the rest DDP). It prints examples/s, the Ray/bare ratio and
peak RSS per process. SASRec uses a full softmax up to 10k items and a sampled softmax
(logQ-corrected) above; the two-tower always samples. `--items 1000000` runs only the 1M rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from hyperrec.eval.report import print_table, write_table
from hyperrec.models.sasrec import SASRecConfig
from hyperrec.models.two_tower import TwoTowerConfig
from hyperrec.train.loop import TrainingObjective, unwrap
from hyperrec.train.model_factory import TASKS
from hyperrec.train.sharding import is_fused, shard

MAX_LEN, DIM = 50, 64


def zipf_log_q(n_items: int) -> torch.Tensor:
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    return torch.from_numpy(np.r_[-np.inf, np.log(weights / weights.sum())]).float()


def random_batches(kind: str, n_items: int, batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    rng = np.random.default_rng(seed)
    probs = np.exp(zipf_log_q(n_items)[1:].numpy())
    draw = lambda *shape: torch.from_numpy(rng.choice(n_items, size=shape, p=probs / probs.sum()) + 1)  # noqa: E731
    if kind == "sasrec":
        return [{"items": seq[:, :-1], "targets": seq[:, 1:]} for seq in (draw(batch_size, MAX_LEN + 1) for _ in range(8))]
    zeros = torch.zeros(batch_size, dtype=torch.long)
    return [
        {"items": draw(batch_size, MAX_LEN), "positives": draw(batch_size), "device": zeros, "hour": zeros, "weekday": zeros}
        for _ in range(8)
    ]


def run_steps(
    kind: str, n_items: int, steps: int, batch_size: int, rank: int = 0, world_size: int = 1, ddp: bool = False, sharded: bool = False
) -> dict[str, float]:
    """Train `steps` steps; returns examples/s over all workers and this process's peak RSS (MiB)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    catalog = pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(n_items)],
            "category": [f"c{i % 50}" for i in range(n_items)],
            "price": 1.0 + np.arange(n_items) % 20,
        }
    )
    params = (
        SASRecConfig(max_len=MAX_LEN, dim=DIM, loss="full_softmax" if n_items <= 10_000 else "sampled_softmax", n_negatives=1024)
        if kind == "sasrec"
        else TwoTowerConfig(dim=DIM, max_len=MAX_LEN, n_sampled_negatives=1024)
    )
    objective: torch.nn.Module = TrainingObjective(TASKS[kind].build(params, catalog), kind)
    if sharded:
        objective = shard(objective, 1e-3, torch.device("cpu"))
    elif ddp:
        import ray.train.torch

        objective = ray.train.torch.prepare_model(objective)
    optimizer = torch.optim.AdamW([p for p in unwrap(objective).parameters() if not is_fused(p)], lr=1e-3)
    log_q = zipf_log_q(n_items)
    batches = random_batches(kind, n_items, batch_size, rank)
    started = None
    for step in range(steps + 1):  # step 0 warms up
        if step == 1:
            started = time.perf_counter()
        value = objective(batches[step % len(batches)], log_q)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return {"per_s": steps * batch_size * world_size / seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ray_worker(config: dict) -> None:
    import ray.train

    context = ray.train.get_context()
    result = run_steps(
        config["kind"],
        config["n_items"],
        config["steps"],
        config["batch_size"],
        context.get_world_rank(),
        context.get_world_size(),
        ddp=context.get_world_size() > 1,
        sharded=config["sharded"],
    )
    # Ray Train keeps a result's metrics only when they come with a checkpoint.
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "metrics.json").write_text(json.dumps(result))
        ray.train.report(result, checkpoint=ray.train.Checkpoint.from_directory(tmp) if context.get_world_rank() == 0 else None)


def run_on_ray(kind: str, n_items: int, steps: int, batch_size: int, workers: int, sharded: bool = False) -> dict[str, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"kind": kind, "n_items": n_items, "steps": steps, "batch_size": batch_size, "sharded": sharded},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path="/tmp/hyperrec-bench", name=f"bench-{kind}-{n_items}-{workers}-{time.time_ns()}"),
    )
    started = time.perf_counter()
    result = trainer.fit()
    return {**result.metrics, "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["sasrec", "two_tower"], choices=["sasrec", "two_tower"])
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/bench"), help="where the CSV and Markdown table go")
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
    rows = []
    for kind in args.models:
        for n_items in args.items:
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:  # its own peak RSS
                bare = fresh.submit(run_steps, kind, n_items, args.steps, args.batch_size).result()
            rows.append(
                {
                    "model": kind,
                    "items": n_items,
                    "runner": "bare PyTorch",
                    "examples/s": round(bare["per_s"]),
                    "vs bare": 1.0,
                    "peak RSS MiB/process": round(bare["peak_mib"]),
                }
            )
            for workers, sharded in [(w, s) for s in (False, True) for w in args.workers if kind == "two_tower" or not s]:
                on_ray = run_on_ray(kind, n_items, args.steps, args.batch_size, workers, sharded)
                rows.append(
                    {
                        "model": kind,
                        "items": n_items,
                        "runner": f"Ray Train x{workers}" + (" sharded" if sharded else ""),
                        "examples/s": round(on_ray["per_s"]),
                        "vs bare": round(on_ray["per_s"] / bare["per_s"], 2),
                        "peak RSS MiB/process": round(on_ray["peak_mib"]),
                    }
                )
    ray.shutdown()
    table = pd.DataFrame(rows).set_index("model")
    print_table(
        table,
        f"training throughput (dim {DIM}, max_len {MAX_LEN}, batch {args.batch_size}/worker, {args.steps} steps, 1 thread/worker)",
        Console(width=160),
    )
    print("wrote " + ", ".join(str(f) for f in write_table(table, args.out, "train_throughput")))


if __name__ == "__main__":
    main()
