"""The one training function: next-item training of a sequence model with early stopping.

It runs as a Ray Train worker (`TorchTrainer`, DDP across workers) for `hyperrec train` and as
a Ray Tune trial for `hyperrec sweep`; a `Reporter` hides the difference. With
`train.sharded_embeddings` TorchRec shards the model's embedding tables across the workers
(hyperrec/train/sharding.py) and the loop evaluates and saves a plain twin with the full weights. Each epoch it trains,
evaluates full-ranking on the validation task, reports metrics and a checkpoint (model,
optimizer, epoch, best model so far). Data order and dropout are seeded per epoch, so a run
resumed from a checkpoint takes exactly the steps the uninterrupted run would have taken.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from hyperrec.config import ExperimentConfig
from hyperrec.data.sequences import EvalTask, Split, make_split
from hyperrec.data.sources import load_dataset
from hyperrec.eval.evaluate import Evaluation, evaluate_model
from hyperrec.progress import worker_progress
from hyperrec.train.model_factory import TASKS, build_model, item_log_q, model_config
from hyperrec.train.sharding import full_state, fused_optimizer, is_fused, load_full_state, shard
from hyperrec.train.stage_clock import StageClock, peak_rss_mib

CHECKPOINT_FILE = "state.pt"


class Reporter(Protocol):
    """Where a worker sends its metrics and checkpoints (Ray Train or Ray Tune)."""

    rank: int
    world_size: int

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None: ...

    def restored_checkpoint(self) -> Path | None: ...


@dataclass
class TrainingState:
    epoch: int = 0  # epochs completed
    best_metric: float = -np.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    best_model: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] | None = None


def training_done(state: TrainingState, config: ExperimentConfig) -> bool:
    """All epochs run, or `patience` epochs without a better validation metric (early stopping)."""
    return state.epoch >= config.train.epochs or state.bad_epochs >= config.train.patience


def seed_everything(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainingObjective(nn.Module):
    """The model's loss as a forward pass, so that DDP (which hooks `forward`) syncs gradients."""

    def __init__(self, model: nn.Module, kind: str):
        super().__init__()
        self.model, self.kind = model, kind

    def forward(self, batch: dict[str, torch.Tensor], log_q: torch.Tensor) -> torch.Tensor:
        return TASKS[self.kind].loss(self.model, batch, log_q)


def unwrap(objective: nn.Module) -> nn.Module:
    """The bare model inside a (possibly DDP-wrapped) objective."""
    inner = objective.module if hasattr(objective, "module") else objective
    return inner.model if isinstance(inner, TrainingObjective) else inner


def evaluate_trained_model(model: nn.Module, task: EvalTask, config: ExperimentConfig, device: torch.device, test: bool) -> Evaluation:
    """Full-ranking metrics on the validation or test task (the test one with new-item lists too)."""
    recommender = TASKS[config.model.kind].recommender(unwrap(model), model_config(config), device).fit(task.history)
    return evaluate_model(recommender, task, config.eval.ks, config.eval.list_length, new_item_lists=test)


def validation_task(split: Split, config: ExperimentConfig) -> EvalTask:
    """The validation task, or a seeded sample of `train.valid_users` of its users (the same every epoch)."""
    task, n = split.valid, config.train.valid_users
    if n is None or n >= len(task.users):
        return task
    rows = np.sort(np.random.default_rng(config.seed).choice(len(task.users), n, replace=False))
    truth = [task.truth[r] for r in rows] if task.truth is not None else None
    return EvalTask(task.history, task.users[rows], [task.targets[r] for r in rows], truth)


def save_checkpoint(
    directory: Path,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    embedding_optimizer: dict[str, Any] | None,
    state: TrainingState,
) -> None:
    """`weights` and `embedding_optimizer` (the sharded tables' fused optimizer) are full, unsharded states."""
    torch.save(
        {"model": weights, "optimizer": optimizer.state_dict(), "embedding_optimizer": embedding_optimizer, "state": state.__dict__},
        directory / CHECKPOINT_FILE,
    )


def load_checkpoint(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, embedding_optimizer: Any | None = None
) -> TrainingState:
    """Into a plain, DDP or sharded model (every rank calls it); `embedding_optimizer`: a sharded model's fused one."""
    saved = torch.load(directory / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    load_full_state(unwrap(model), saved["model"])
    if optimizer is not None:
        optimizer.load_state_dict(saved["optimizer"])
    if embedding_optimizer is not None and saved.get("embedding_optimizer") is not None:
        load_full_state(embedding_optimizer, saved["embedding_optimizer"])
    return TrainingState(**saved["state"])


def train_one_epoch(
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    examples: dict[str, np.ndarray],
    log_q: torch.Tensor,
    config: ExperimentConfig,
    epoch: int,
    reporter: Reporter,
    device: torch.device,
) -> tuple[float, int]:
    """One pass over this worker's shard of the examples; returns (mean loss, examples seen)."""
    tc = config.train
    order = np.random.default_rng(config.seed * 7919 + epoch).permutation(len(next(iter(examples.values()))))
    order = order[: len(order) - len(order) % reporter.world_size][reporter.rank :: reporter.world_size]
    n_steps = max(1, len(order) // tc.batch_size)
    if tc.max_steps_per_epoch is not None:
        n_steps = min(n_steps, tc.max_steps_per_epoch)
    torch.manual_seed(config.seed * 1_000_003 + epoch * 101 + reporter.rank)  # dropout
    objective.train()
    total, bar = 0.0, None
    if tc.progress and reporter.rank == 0:
        bar = worker_progress(n_steps, f"epoch {epoch + 1}/{tc.epochs}")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=tc.bf16)
    for step in range(n_steps):
        batch = order[step * tc.batch_size : (step + 1) * tc.batch_size]
        tensors = {name: torch.from_numpy(values[batch]).to(device) for name, values in examples.items()}
        with autocast:
            loss = objective(tensors, log_q)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:  # the dense parameters: sharded tables were updated in the backward pass
            nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], tc.grad_clip)
        optimizer.step()
        total += loss.detach().item()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()  # the driver's last view of an unclosed bar is its last throttled update
    return total / n_steps, n_steps * tc.batch_size


def train_loop(experiment: dict[str, Any], reporter: Reporter, run_dir: Path, resume_from: Path | None = None) -> TrainingState:
    """Train until `epochs` or early stopping; returns the final state (best model inside)."""
    from hyperrec.train.tracking import RunTracker  # wandb and the local record; rank 0 only

    config = ExperimentConfig.model_validate(experiment)
    seed_everything(config.seed)
    # One intra-op thread per CPU the worker was given: more only fight each other.
    torch.set_num_threads(max(1, int(config.train.resources_per_worker.get("CPU", 1))))
    clock = StageClock()
    dataset = load_dataset(config.data)
    clock.lap("load_data", events=len(dataset.events), items=len(dataset.catalog))
    split = make_split(dataset, config.data)
    clock.lap("sequences", users=split.full.n_users, baskets=sum(len(user) for user in split.full.baskets))
    valid_task = validation_task(split, config)
    examples = TASKS[config.model.kind].examples(split.valid.history, model_config(config))
    log_q = item_log_q(split.valid.history)
    clock.lap("examples", examples=len(next(iter(examples.values()))))
    device = _device(config)
    # `model` is what is evaluated and saved: the trained module itself, or with sharded tables a
    # plain twin that takes the full weights after every epoch (training starts from its weights).
    model = build_model(config, dataset.catalog).to(device)
    objective = _prepare(model, config, dataset.catalog, device)
    optimizer = torch.optim.AdamW(_param_groups(unwrap(objective), config))
    embedding_optimizer = fused_optimizer(objective)
    state = TrainingState(history=[])
    restored = reporter.restored_checkpoint() or resume_from
    if restored is not None:
        state = load_checkpoint(Path(restored), objective, optimizer, embedding_optimizer)
    tracker = RunTracker(config, run_dir, split, dataset.fingerprint()) if reporter.rank == 0 else None
    log_q = log_q.to(device)
    clock.lap("build_model")
    while not training_done(state, config):
        started = time.perf_counter()
        loss, seen = train_one_epoch(objective, optimizer, examples, log_q, config, state.epoch, reporter, device)
        train_seconds = time.perf_counter() - started
        valid_started = time.perf_counter()
        weights = full_state(unwrap(objective).state_dict(), device)  # every rank: it gathers sharded tables
        if config.train.sharded_embeddings:
            model.load_state_dict(weights)
        # Every rank evaluates (the same data, the same weights) so all take the same early-stopping decision.
        valid = evaluate_trained_model(model, valid_task, config, device, test=False).summary
        state.epoch += 1
        metric = valid[config.train.monitor]
        if metric > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_epochs = metric, state.epoch, 0
            state.best_model = {k: v.detach().cpu().clone() for k, v in weights.items()}
        else:
            state.bad_epochs += 1
        metrics = {
            "epoch": state.epoch,
            "train_loss": loss,
            "samples_per_s": seen * reporter.world_size / train_seconds,
            "epoch_seconds": time.perf_counter() - started,
            "train_seconds": train_seconds,
            "valid_seconds": time.perf_counter() - valid_started,
            "peak_rss_mib": peak_rss_mib(),
            **{f"valid/{k}": v for k, v in valid.items()},
        }
        state.history.append(metrics)
        finished = training_done(state, config)
        if tracker is not None:
            tracker.log_epoch(metrics)
        embedding_state = full_state(embedding_optimizer.state_dict(), device) if embedding_optimizer is not None else None
        with tempfile.TemporaryDirectory() as tmp:
            if reporter.rank == 0:
                save_checkpoint(Path(tmp), weights, optimizer, embedding_state, state)
            if finished and tracker is not None:  # before the last report: a Tune scheduler may stop the trial at it
                model.load_state_dict(state.best_model)
                clock.lap("epochs")
                test = evaluate_trained_model(model, split.test, config, device, test=True)
                clock.lap("test_eval")
                tracker.finish(model, test, state.history, state.best_epoch, clock.stages)
            reporter.report({**metrics, "best_" + config.train.monitor: state.best_metric}, Path(tmp) if reporter.rank == 0 else None)
    return state


def _param_groups(model: nn.Module, config: ExperimentConfig) -> list[dict[str, Any]]:
    """The model's own optimizer groups when it has some (SASRec's repeat head), else one group of
    every parameter that no fused optimizer updates in the backward pass (sharded tables)."""
    lr, weight_decay = config.train.lr, config.train.weight_decay
    if hasattr(model, "param_groups"):
        return model.param_groups(lr, weight_decay)
    return [{"params": [p for p in model.parameters() if not is_fused(p)], "lr": lr, "weight_decay": weight_decay}]


def _device(config: ExperimentConfig) -> torch.device:
    if config.train.use_gpu:
        import ray.train.torch

        return ray.train.torch.get_device()
    return torch.device("cpu")


def _prepare(model: nn.Module, config: ExperimentConfig, catalog: pd.DataFrame, device: torch.device) -> nn.Module:
    """The objective to train: with `sharded_embeddings`, a copy of `model` whose TorchRec tables are
    sharded across the workers (the rest DDP), starting from `model`'s weights; else `model`,
    DDP-wrapped when several Ray Train workers share the work."""
    if config.train.sharded_embeddings:
        objective = shard(TrainingObjective(build_model(config, catalog).to(device), config.model.kind), config.train.lr, device)
        load_full_state(unwrap(objective), model.state_dict())
        return objective
    objective = TrainingObjective(model, config.model.kind)
    if config.train.num_workers > 1:
        import ray.train.torch

        return ray.train.torch.prepare_model(objective)
    return objective
