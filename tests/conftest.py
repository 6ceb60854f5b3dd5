"""Shared fixtures: the real Instacart sample (loaded once) and a tiny hand-made shop."""

from __future__ import annotations

import pandas as pd
import pytest

from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.events import normalize_events
from hyperrec.data.instacart import load_instacart


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
            ("u1", "o1", "a", "2024-01-01T10:00:00Z"), ("u1", "o1", "b", "2024-01-01T10:00:01Z"),
            ("u1", "o2", "a", "2024-01-02T10:00:00Z"), ("u1", "o2", "b", "2024-01-02T10:00:01Z"), ("u1", "o2", "c", "2024-01-02T10:00:02Z"),
            ("u1", "o3", "a", "2024-01-03T10:00:00Z"), ("u1", "o3", "b", "2024-01-03T10:00:01Z"),
            ("u1", "o4", "a", "2024-01-04T10:00:00Z"), ("u1", "o4", "d", "2024-01-04T10:00:01Z"),
            ("u2", "o5", "c", "2024-01-01T12:00:00Z"), ("u2", "o6", "d", "2024-01-02T12:00:00Z"),
            ("u2", "o7", "c", "2024-01-03T12:00:00Z"), ("u2", "o8", "e", "2024-01-04T12:00:00Z"),
            ("u3", "o9", "a", "2024-01-02T09:00:00Z"),
        ]
    )  # fmt: skip
    return Dataset("tiny", events, catalog_from_items(list("abcdef")))


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster for the whole test session, shut down at the end."""
    import ray

    ray.init(num_cpus=2, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


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
