"""The item catalog: one row per item with category, price, margin, stock and title.

Sources fill what they know; a missing price or margin is NaN, a missing category is
"unknown", a missing stock count means "not tracked" (treated as in stock).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

UNKNOWN_CATEGORY = "unknown"
CATALOG_COLUMNS = ("item_id", "category", "price", "margin", "stock", "title")


def normalize_catalog(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical columns and dtypes; item ids must be unique."""
    n = len(frame)

    def column(name: str, default: object) -> np.ndarray:
        return frame[name].to_numpy() if name in frame else np.full(n, default, dtype=object)

    out = pd.DataFrame(
        {
            "item_id": pd.array(column("item_id", None), dtype="str"),
            "category": pd.array(column("category", UNKNOWN_CATEGORY), dtype="str").fillna(UNKNOWN_CATEGORY),
            "price": pd.array(column("price", np.nan), dtype="float64"),
            "margin": pd.array(column("margin", np.nan), dtype="float64"),
            "stock": pd.array(column("stock", None), dtype="Int64"),
            "title": pd.array(column("title", None), dtype="str"),
        }
    )
    if out["item_id"].isna().any():
        raise ValueError("catalog: every item needs an item_id")
    duplicated = out["item_id"][out["item_id"].duplicated()]
    if len(duplicated):
        raise ValueError(f"catalog: item_id must be unique; repeated: {duplicated.iloc[:5].tolist()}")
    return out


def catalog_from_items(item_ids: np.ndarray | list[str]) -> pd.DataFrame:
    """A catalog that knows only item ids (sources without item metadata)."""
    return normalize_catalog(pd.DataFrame({"item_id": pd.unique(np.asarray(item_ids, dtype=object))}))
