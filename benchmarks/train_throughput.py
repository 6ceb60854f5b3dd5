"""Training throughput and peak memory: a bare PyTorch loop vs the same steps on Ray Train.

    .venv/bin/python benchmarks/train_throughput.py --items 10000 100000 1000000 --workers 1 2

For each catalogue size it trains SASRec on random Zipf-distributed item sequences for a fixed
number of steps: once in a plain single process, then through Ray Train's TorchTrainer with 1
and 2 CPU workers (DDP). It prints sequences/s, the Ray/bare ratio and peak RSS per process.
Full softmax up to 10k items; sampled softmax (logQ-corrected) above, where a full softmax
over the catalogue does not fit a CPU step budget.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.train.loop import TrainingObjective

MAX_LEN, DIM = 50, 64


def zipf_log_q(n_items: int) -> torch.Tensor:
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.8
    return torch.from_numpy(np.r_[-np.inf, np.log(weights / weights.sum())]).float()


def run_steps(n_items: int, steps: int, batch_size: int, rank: int = 0, world_size: int = 1, ddp: bool = False) -> dict[str, float]:
    """Train `steps` steps; returns sequences/s and this process's peak RSS (MiB)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    loss = "full_softmax" if n_items <= 10_000 else "sampled_softmax"
    objective: torch.nn.Module = TrainingObjective(SASRec(SASRecConfig(max_len=MAX_LEN, dim=DIM, loss=loss, n_negatives=1024), n_items))
    if ddp:
        import ray.train.torch

        objective = ray.train.torch.prepare_model(objective)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=1e-3)
    log_q = zipf_log_q(n_items)
    rng = np.random.default_rng(rank)
    probs = np.exp(log_q[1:].numpy())
    data = torch.from_numpy(rng.choice(n_items, size=(8, batch_size, MAX_LEN + 1), p=probs / probs.sum()) + 1)
    started = None
    for step in range(steps + 1):  # step 0 warms up
        if step == 1:
            started = time.perf_counter()
        batch = data[step % len(data)]
        value = objective(batch[:, :-1], batch[:, 1:], log_q)
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    return {"seq_per_s": steps * batch_size * world_size / seconds, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def ray_worker(config: dict) -> None:
    import ray.train

    context = ray.train.get_context()
    result = run_steps(config["n_items"], config["steps"], config["batch_size"], context.get_world_rank(), context.get_world_size(), ddp=context.get_world_size() > 1)
    ray.train.report(result)


def run_on_ray(n_items: int, steps: int, batch_size: int, workers: int) -> dict[str, float]:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"n_items": n_items, "steps": steps, "batch_size": batch_size},
        scaling_config=ScalingConfig(num_workers=workers, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path="/tmp/hyperrec-bench", name=f"bench-{n_items}-{workers}-{time.time_ns()}"),
    )
    started = time.perf_counter()
    result = trainer.fit()
    return {**result.metrics, "wall_s": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import ray

    ray.init(num_cpus=max(args.workers), include_dashboard=False, log_to_driver=False, configure_logging=False)
    table = Table(title=f"SASRec training throughput (dim {DIM}, max_len {MAX_LEN}, batch {args.batch_size}/worker, {args.steps} steps, 1 thread/worker)")
    for column in ("items", "loss", "runner", "sequences/s", "vs bare", "peak RSS MiB/process"):
        table.add_column(column, justify="right")
    for n_items in args.items:
        loss = "full softmax" if n_items <= 10_000 else "sampled (1024, logQ)"
        bare = run_steps(n_items, args.steps, args.batch_size)
        table.add_row(f"{n_items:,}", loss, "bare PyTorch", f"{bare['seq_per_s']:.0f}", "1.00", f"{bare['peak_mib']:.0f}")
        for workers in args.workers:
            on_ray = run_on_ray(n_items, args.steps, args.batch_size, workers)
            table.add_row(f"{n_items:,}", loss, f"Ray Train x{workers}", f"{on_ray['seq_per_s']:.0f}", f"{on_ray['seq_per_s'] / bare['seq_per_s']:.2f}", f"{on_ray['peak_mib']:.0f}")
    ray.shutdown()
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
