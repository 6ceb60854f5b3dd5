"""Shared fixtures: the real Instacart sample (loaded once), a tiny hand-made shop, one Ray cluster,
a tiny trained run and its exported registry version."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.events import normalize_events
from hyperrec.data.instacart import load_instacart
from hyperrec.ports import free_port
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import serve_environment

# Ray Serve reads its ingress settings once, from the environment of the process that starts Ray:
# they are set here, before any test imports ray.serve or starts the session's cluster.
SERVE_PORT = free_port()
os.environ.update(serve_environment(ServeConfig(port=SERVE_PORT)))


@pytest.fixture(scope="session")
def instacart() -> Dataset:
    return load_instacart()


def purchases(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(user, order, item, ISO time) rows -> a purchase event table."""
    frame = pd.DataFrame(rows, columns=["user_id", "order_id", "item_id", "timestamp"])
    return normalize_events(frame.assign(event_type="purchase", session_id=frame["order_id"], quantity=1))


@pytest.fixture()
def tiny() -> Dataset:
    """Three users, items a..f. u1 buys a+b every time; u2 alternates; u3 has one order only."""
    events = purchases(
        [
            ("u1", "o1", "a", "2024-01-01T10:00:00Z"),
            ("u1", "o1", "b", "2024-01-01T10:00:01Z"),
            ("u1", "o2", "a", "2024-01-02T10:00:00Z"),
            ("u1", "o2", "b", "2024-01-02T10:00:01Z"),
            ("u1", "o2", "c", "2024-01-02T10:00:02Z"),
            ("u1", "o3", "a", "2024-01-03T10:00:00Z"),
            ("u1", "o3", "b", "2024-01-03T10:00:01Z"),
            ("u1", "o4", "a", "2024-01-04T10:00:00Z"),
            ("u1", "o4", "d", "2024-01-04T10:00:01Z"),
            ("u2", "o5", "c", "2024-01-01T12:00:00Z"),
            ("u2", "o6", "d", "2024-01-02T12:00:00Z"),
            ("u2", "o7", "c", "2024-01-03T12:00:00Z"),
            ("u2", "o8", "e", "2024-01-04T12:00:00Z"),
            ("u3", "o9", "a", "2024-01-02T09:00:00Z"),
        ]
    )
    return Dataset("tiny", events, catalog_from_items(list("abcdef")))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole test session, shut down at the end."""
    import ray

    ray.init(address="local", num_cpus=2, configure_logging=False, log_to_driver=False)  # never another session's cluster
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def trained_run(ray_cluster, tmp_path_factory):
    """A tiny SASRec trained with Ray Train on 2 workers: (run directory, record)."""
    from hyperrec.config import ExperimentConfig
    from hyperrec.train.launcher import run_training

    tmp = tmp_path_factory.mktemp("train")
    config = ExperimentConfig.model_validate(tiny_training_config(tmp, num_workers=2))
    record = run_training(config)
    return Path(config.tracking.runs_dir).resolve() / record["run"], record


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """`trained_run` exported into a fresh registry: the ExportResult of v0001."""
    from hyperrec.export.run import ExportConfig, export_run

    registry = tmp_path_factory.mktemp("registry")
    config = ExportConfig(registry=registry, cutoffs=3, ranker={"epochs": 3, "hidden": [16]})
    return export_run(trained_run[0], config, log=lambda *_: None)


@pytest.fixture(scope="session")
def exported_behaviour(ray_cluster, tmp_path_factory):
    """A tiny multi-behaviour SASRec trained on the session task (every event kind) and exported: its ExportResult."""
    from hyperrec.config import ExperimentConfig
    from hyperrec.export.run import ExportConfig, export_run
    from hyperrec.train.launcher import run_training

    tmp = tmp_path_factory.mktemp("behaviour")
    config = tiny_training_config(tmp, num_workers=1)
    config["name"] = "tiny_behaviour"
    config["data"] |= {"event_types": ["view", "click", "add_to_cart", "remove_from_cart", "purchase"], "split": "last_session"}
    config["model"]["params"] |= {"behaviour": True, "purchase_weight": 1.0, "served_head": "next_purchase"}
    record = run_training(ExperimentConfig.model_validate(config))
    run_dir = Path(config["tracking"]["runs_dir"]).resolve() / record["run"]
    export = ExportConfig(registry=tmp / "registry", cutoffs=3, ranker={"epochs": 3, "hidden": [16]})
    return export_run(run_dir, export, log=lambda *_: None)


def tiny_training_config(tmp_path, **train) -> dict:
    """A small synthetic shop and a small SASRec: seconds per epoch on one CPU."""
    return {
        "name": "tiny_sasrec",
        "seed": 0,
        "data": {"source": "synthetic", "synthetic": {"n_users": 150, "n_items": 200, "n_categories": 5, "sessions_per_user": 10}},
        "eval": {"ks": [10], "list_length": 20},
        "model": {"kind": "sasrec", "params": {"max_len": 16, "dim": 16, "n_layers": 1, "n_heads": 2, "dropout": 0.1}},
        "train": {"epochs": 2, "batch_size": 32, "patience": 5, "progress": False, **train},
        "tracking": {"wandb_mode": "offline", "runs_dir": str(tmp_path / "runs")},
    }
