"""Run tracking: wandb (offline by default: no account, no network) and a local record.

Every run directory under `tracking.runs_dir` holds: `model.pt` (best weights + what is needed
to rebuild the model), `record.json` (config, data fingerprint, per-epoch metrics, test metrics,
wall time, samples/s), `epochs.csv`, `test_results.csv/.md`, `test_per_user.csv.gz`, `learning_curve.png`, and the
wandb files (`wandb/offline-run-*`).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from hyperrec.config import ExperimentConfig
from hyperrec.data.sequences import Split
from hyperrec.eval.evaluate import Evaluation
from hyperrec.eval.report import save_figure, write_table
from hyperrec.train.model_factory import model_config

MODEL_FILE = "model.pt"
RECORD_FILE = "record.json"
PER_USER_FILE = "test_per_user.csv.gz"


class RunTracker:
    def __init__(self, config: ExperimentConfig, run_dir: Path, split: Split, data_fingerprint: str):
        self.config, self.run_dir, self.split, self.fingerprint = config, run_dir, split, data_fingerprint
        self.started = time.time()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.wandb_run = None
        if config.tracking.wandb_mode != "disabled":
            import wandb

            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb_run = wandb.init(
                project=config.tracking.project,
                name=run_dir.name,
                dir=str(run_dir),
                mode=config.tracking.wandb_mode,
                config=config.model_dump(mode="json"),
                reinit="finish_previous",
            )

    def log_epoch(self, metrics: dict[str, float]) -> None:
        if self.wandb_run is not None:
            self.wandb_run.log(metrics, step=int(metrics["epoch"]))
        path = self.run_dir / "epochs.csv"
        pd.DataFrame([metrics]).to_csv(path, mode="a", header=not path.exists(), index=False)

    def finish(
        self, model: nn.Module, test: Evaluation, history: list[dict[str, float]], best_epoch: int, stages: dict[str, dict[str, float]]
    ) -> dict[str, Any]:
        """Save the model, the test table and the record; `stages`: rank 0's StageClock (seconds and peak RSS per stage)."""
        torch.save(
            {
                "kind": self.config.model.kind,
                "model_config": model_config(self.config).model_dump(),
                "n_items": self.split.full.n_items,
                "item_ids": list(self.split.item_ids),
                "state_dict": model.state_dict(),
            },
            self.run_dir / MODEL_FILE,
        )
        table = pd.DataFrame({self.run_dir.name: test.summary}).T.rename_axis("run")
        write_table(table, self.run_dir, "test_results")
        test.per_user.to_csv(self.run_dir / PER_USER_FILE, index=False)
        self._plot_learning_curve(history)
        record = {
            "run": self.run_dir.name,
            "config": self.config.model_dump(mode="json"),
            "data_fingerprint": self.fingerprint,
            "best_epoch": best_epoch,
            "epochs": history,
            "test": test.summary,
            "wall_seconds": time.time() - self.started,
            "samples_per_s": sum(h["samples_per_s"] for h in history) / max(len(history), 1),
            "stages": stages,
        }
        (self.run_dir / RECORD_FILE).write_text(json.dumps(record, indent=2))
        if self.wandb_run is not None:
            self.wandb_run.summary.update({f"test/{k}": v for k, v in test.summary.items()} | {"best_epoch": best_epoch})
            self.wandb_run.finish()
        return record

    def _plot_learning_curve(self, history: list[dict[str, float]]) -> None:
        frame = pd.DataFrame(history)
        monitor = f"valid/{self.config.train.monitor}"
        fig, left = plt.subplots(figsize=(6, 3.5))
        left.plot(frame["epoch"], frame["train_loss"], "o-", color="tab:blue", label="train loss")
        left.set_xlabel("epoch")
        left.set_ylabel("train loss", color="tab:blue")
        right = left.twinx()
        right.plot(frame["epoch"], frame[monitor], "s-", color="tab:orange", label=monitor)
        right.set_ylabel(monitor, color="tab:orange")
        left.set_title(self.run_dir.name)
        save_figure(fig, self.run_dir / "learning_curve.png", dpi=110)
