"""`hyperrec train CONFIG`: the training loop on Ray Train's TorchTrainer (DDP across workers; with
`train.sharded_embeddings`, TorchRec shards the embedding tables across them)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import ray
import ray.train
from ray.train import Checkpoint, CheckpointConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from hyperrec.config import ExperimentConfig
from hyperrec.logs import init_ray, ray_address, train_logging
from hyperrec.ports import free_port
from hyperrec.train.loop import CHECKPOINT_FILE, train_loop
from hyperrec.train.sharding import check_config
from hyperrec.train.tracking import RECORD_FILE

RAY_DIR = "ray"  # inside a run directory: Ray Train's checkpoints


class RayTrainReporter:
    """Reporter for a Ray Train worker: metrics and checkpoints go to `ray.train.report`."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()

    def report(self, metrics: dict[str, float], checkpoint_dir: Path | None) -> None:
        checkpoint = Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir is not None else None
        ray.train.report(metrics, checkpoint=checkpoint)

    def restored_checkpoint(self) -> Path | None:
        checkpoint = ray.train.get_checkpoint()
        return Path(checkpoint.to_directory()) if checkpoint is not None else None


def _worker(loop_config: dict[str, Any]) -> None:
    resume = loop_config["resume_from"]
    train_loop(loop_config["experiment"], RayTrainReporter(), Path(loop_config["run_dir"]), Path(resume) if resume else None)


def latest_checkpoint(run_dir: Path) -> Path:
    """The newest Ray Train checkpoint of a run directory."""
    candidates = sorted((p.parent for p in (run_dir / RAY_DIR).glob(f"*/checkpoint_*/{CHECKPOINT_FILE}")), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"{run_dir}: no checkpoint to resume from (looked in {run_dir / RAY_DIR})")
    return candidates[-1]


def ensure_ray(num_cpus: int | None = None) -> None:
    if not ray.is_initialized():
        address, pinned = ray_address(), {}  # read before RAY_ADDRESS is pinned below
        if address == "local":
            # Ray Train's controller asks the State API about its actors without an address: with a second local cluster
            # on the machine (another `hyperrec train`) it finds two and fails. So this cluster's GCS gets a known port,
            # named in the environment its processes inherit at start (the driver ignores RAY_ADDRESS: address="local").
            port = free_port()
            pinned = {"RAY_GCS_SERVER_PORT": str(port), "RAY_ADDRESS": f"127.0.0.1:{port}"}
        before = {key: os.environ.get(key) for key in pinned}
        os.environ.update(pinned)
        try:
            # The dashboard serves the State API that Ray Train's controller polls; without it, it warns every few seconds.
            init_ray(num_cpus=num_cpus, address=address)
        finally:  # the driver's own later ray.init calls must not find a cluster that may be gone by then
            for key, value in before.items():
                os.environ.pop(key) if value is None else os.environ.update({key: value})


def run_training(config: ExperimentConfig, resume: Path | None = None) -> dict[str, Any]:
    """Train on Ray; returns the run record (also in `<run_dir>/record.json`)."""
    tc = config.train
    check_config(config)
    if resume is not None:
        run_dir = resume.resolve()
        resume_from = latest_checkpoint(run_dir)
    else:
        run_dir = (config.tracking.runs_dir / f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
        resume_from = None
    run_dir.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    trainer = TorchTrainer(
        _worker,
        train_loop_config={
            "experiment": config.model_dump(mode="json"),
            "run_dir": str(run_dir),
            "resume_from": str(resume_from) if resume_from else None,
        },
        scaling_config=ScalingConfig(num_workers=tc.num_workers, use_gpu=tc.use_gpu, resources_per_worker=tc.resources_per_worker),
        run_config=RunConfig(
            name=time.strftime("%Y%m%d-%H%M%S"),
            storage_path=str(run_dir / RAY_DIR),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            logging_config=train_logging(),
        ),
    )
    trainer.fit()
    return json.loads((run_dir / RECORD_FILE).read_text())
