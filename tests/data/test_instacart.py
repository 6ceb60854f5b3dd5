import numpy as np
import pandas as pd

from hyperrec.data.instacart import instacart_csv_path
from hyperrec.data.sequences import build_interactions


def test_counts_match_the_shipped_sample(instacart):
    events = instacart.events
    assert len(events) == 150_000
    assert events["user_id"].nunique() == 593
    assert events["order_id"].nunique() == 15_183
    assert events["item_id"].nunique() == 14_190
    assert len(instacart.catalog) == 14_190
    assert (events["event_type"] == "purchase").all()


def test_timeline_follows_order_number_and_basket_position(instacart):
    raw = pd.read_csv(instacart_csv_path(), usecols=["order_id", "user_id", "order_number"]).drop_duplicates("order_id")
    first = instacart.events.groupby("order_id")["timestamp"].agg(["min", "max"])
    first.index = first.index.astype(int)
    orders = raw.join(first, on="order_id").sort_values(["user_id", "order_number"])
    # Each order starts after the previous one of the same user has ended.
    previous_end = orders.groupby("user_id")["max"].shift()
    assert (orders["min"][previous_end.notna()] > previous_end[previous_end.notna()]).all()
    # Within an order, lines are in add_to_cart_order.
    one = instacart.events[instacart.events["order_id"] == str(orders["order_id"].iloc[0])]
    assert one["timestamp"].is_monotonic_increasing and list(one["position"]) == list(range(1, len(one) + 1))


def test_one_basket_per_order(instacart):
    interactions, user_ids = build_interactions(instacart, ["purchase"])
    assert interactions.n_users == 593 and len(user_ids) == 593
    assert sum(len(b) for b in interactions.baskets) == 15_183
    assert all(np.all(np.diff(t) > 0) for t in interactions.times)
