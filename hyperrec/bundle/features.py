"""Ranking features that can be computed at request time, from one `UserState` and an `ItemTable`.

The offline pipeline (hyperrec/models/pipeline.py) ranks with features that need the whole user
population (neighbours, co-occurrence, refitted retrievers); serving has a few milliseconds and
one user's recent baskets (summarized once per state: `UserState.history`). These are the features
of the served ranker. Export trains that ranker on exactly this function's output, and serving
calls the same function, so there is no train/serve skew.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hyperrec.bundle.user_state import DECAYS, UserState
from hyperrec.data.catalog import UNKNOWN_CATEGORY
from hyperrec.data.sequences import Interactions
from hyperrec.models.features import summarize

FEATURE_NAMES = (
    "ann_score",
    "ann_inv_rank",
    "log_count",
    "count_share",
    "recency_inv",
    "in_last_basket",
    "decayed_0.8",
    "decayed_0.5",
    "log_popularity",
    "popularity_inv_rank",
    "trend",
    "repeat_rate",
    "log_user_baskets",
    "category_share",
    "log_price",
    "margin",
    "bought_before",
)


@dataclass
class ItemTable:
    """Per-item facts serving needs: ids, popularity and its trend, repeat rate, category, price, margin, title."""

    item_ids: np.ndarray  # str, row = item index
    popularity: np.ndarray  # baskets holding the item in the training history
    trend: np.ndarray
    repeat_rate: np.ndarray
    category: np.ndarray  # int code; 0 = unknown
    price: np.ndarray  # NaN = unknown
    margin: np.ndarray  # NaN = unknown
    in_stock: np.ndarray  # bool
    title: np.ndarray | None = None  # str ("" = none); None: a version exported before titles were kept

    def __post_init__(self) -> None:
        if self.title is None:
            self.title = np.full(len(self.item_ids), "", dtype=object)

    @classmethod
    def from_history(cls, history: Interactions, catalog: pd.DataFrame) -> ItemTable:
        summary = summarize(history, decays=(0.8,))
        names = catalog["category"].astype(str).to_numpy()
        known = sorted(set(names) - {UNKNOWN_CATEGORY})
        code = {name: i + 1 for i, name in enumerate(known)}
        stock = catalog["stock"]
        return cls(
            item_ids=catalog["item_id"].astype(str).to_numpy(),
            popularity=summary.popularity,
            trend=summary.trend,
            repeat_rate=summary.repeat_rate,
            category=np.array([code.get(n, 0) for n in names], np.int64),
            price=catalog["price"].to_numpy(np.float64, na_value=np.nan),
            margin=catalog["margin"].to_numpy(np.float64, na_value=np.nan),
            in_stock=~(stock.notna() & (stock.fillna(0) <= 0)).to_numpy(bool),
            title=catalog["title"].fillna("").astype(str).to_numpy(object),
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def popular_order(self) -> np.ndarray:
        return np.argsort(-self.popularity, kind="stable")

    def popular_in_stock(self) -> np.ndarray:
        """Item indices by popularity, out-of-stock ones left out."""
        order = self.popular_order()
        return order[self.in_stock[order]]

    def save(self, path: Path) -> None:
        pd.DataFrame(
            {
                "item_id": self.item_ids,
                "popularity": self.popularity,
                "trend": self.trend,
                "repeat_rate": self.repeat_rate,
                "category": self.category,
                "price": self.price,
                "margin": self.margin,
                "in_stock": self.in_stock,
                "title": self.title,
            }
        ).to_parquet(path, index=False)

    @classmethod
    def load(cls, path: Path) -> ItemTable:
        f = pd.read_parquet(path)
        return cls(
            item_ids=f["item_id"].astype(str).to_numpy(),
            popularity=f["popularity"].to_numpy(np.float64),
            trend=f["trend"].to_numpy(np.float64),
            repeat_rate=f["repeat_rate"].to_numpy(np.float64),
            category=f["category"].to_numpy(np.int64),
            price=f["price"].to_numpy(np.float64),
            margin=f["margin"].to_numpy(np.float64),
            in_stock=f["in_stock"].to_numpy(bool),
            title=f["title"].fillna("").astype(str).to_numpy(object) if "title" in f else None,
        )


class ItemColumns:
    """Per-item feature columns derived once from an `ItemTable` (popularity rank, log price, ...)."""

    def __init__(self, table: ItemTable):
        self.n_categories = int(table.category.max()) + 1 if len(table) else 1
        self.has_categories = self.n_categories > 1
        rank = np.empty(len(table), np.int64)
        rank[table.popular_order()] = np.arange(len(table))
        self.inv_rank = 1.0 / (1.0 + rank)
        self.log_popularity = np.log1p(table.popularity)
        self.log_price = np.log1p(np.nan_to_num(table.price, nan=0.0))
        self.margin = np.nan_to_num(table.margin, nan=0.0)


def candidate_features(
    state: UserState, items: np.ndarray, ann_score: np.ndarray, ann_rank: np.ndarray, table: ItemTable, columns: ItemColumns
) -> np.ndarray:
    """(len(items), len(FEATURE_NAMES)) float32. `ann_rank` = rank in the ANN result, -1 if not retrieved by it."""
    n = len(items)
    history = state.history()
    at, hit = history.lookup(items)
    count = np.zeros(n)
    last_ago = np.full(n, np.inf)
    decayed = {decay: np.zeros(n) for decay in DECAYS}
    if len(history.items):
        count[hit] = history.counts[at[hit]]
        last_ago[hit] = history.last_ago[at[hit]]
        for decay in DECAYS:
            decayed[decay][hit] = history.decayed[decay][at[hit]]
    n_baskets = max(state.n_baskets, 1)
    category_share = np.zeros(n)
    if len(history.items) and columns.has_categories:
        user_categories = np.bincount(table.category[history.items], weights=history.counts, minlength=columns.n_categories)
        user_categories[0] = 0.0  # "unknown" is not a taste
        category_share = user_categories[table.category[items]] / max(history.counts.sum(), 1)
    columns = (
        ann_score,
        np.where(ann_rank >= 0, 1.0 / (1.0 + np.maximum(ann_rank, 0)), 0.0),
        np.log1p(count),
        count / n_baskets,
        np.where(np.isfinite(last_ago), 1.0 / (1.0 + last_ago), 0.0),
        (last_ago == 0).astype(np.float64),
        decayed[0.8],
        decayed[0.5],
        columns.log_popularity[items],
        columns.inv_rank[items],
        table.trend[items],
        table.repeat_rate[items],
        np.full(n, np.log1p(state.n_baskets)),
        category_share,
        columns.log_price[items],
        columns.margin[items],
        (count > 0).astype(np.float64),
    )
    return np.stack(columns, axis=1).astype(np.float32)
