"""A tiny simulated shop over the tests' exported version: the catalogue of `tiny_training_config`'s shop
(200 items; the catalogue does not depend on the number of users), more shoppers, two weeks simulated."""

from __future__ import annotations

from typing import Any

from hyperrec.sim.config import SimConfig


def tiny_config(exported, logs, arms: list[dict[str, Any]], **settings) -> SimConfig:
    raw = {
        "name": "tiny",
        "shop": {"n_users": 3000, "n_items": 200, "n_categories": 5, "sessions_per_user": 10, "days": 90, "seed": 0},
        "history_days": 76,
        "pre_days": 7,
        "days": 7,
        "logs": str(logs),
        "results": str(logs.parent / "results"),
        "arms": [{"registry": str(exported.path.parent), "version": exported.version} | arm for arm in arms],
    }
    return SimConfig.model_validate(raw | settings)
