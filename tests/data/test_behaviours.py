import numpy as np
import pandas as pd

from hyperrec.config import DataConfig, SyntheticConfig
from hyperrec.data.behaviours import BEHAVIOURS, PURCHASE, behaviour_inputs, gap_ids, live_cart, live_intent
from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.sequences import Interactions, build_interactions, make_split, session_bounds
from hyperrec.data.synthetic import SyntheticShop
from hyperrec.data.windows import behaviour_windows, flat_behaviour, served_items

VIEW, CLICK, CART, REMOVE = (BEHAVIOURS.index(k) for k in ("view", "click", "add_to_cart", "remove_from_cart"))


def test_gap_ids_bucket_the_time_since_the_event_before():
    times = np.array([0.0, 5.0, 65.0, 4_000.0, np.nan, 1e7])
    assert gap_ids(times).tolist() == [1, 2, 4, 6, 1, 1]  # first: 1; 5 s: <10 s; 60 s: <10 min; ~1 h; unknown; after unknown
    assert gap_ids(np.array([0.0, 10.0, 600.0 + 10.0, 2e6])).tolist() == [1, 3, 5, 8]


def test_behaviour_inputs_pad_left_and_keep_the_gap_of_the_oldest_event_kept():
    items, kinds, times = np.array([7, 8, 9]), np.array([VIEW, CLICK, PURCHASE]), np.array([0.0, 30.0, 100_000.0])
    out = behaviour_inputs(items, kinds, times, 5)
    assert out.tolist() == [[0, 0, 7, 8, 9], [0, 0, VIEW + 1, CLICK + 1, PURCHASE + 1], [0, 0, 1, 3, 7]]
    short = behaviour_inputs(items, kinds, times, 2)
    assert short[2].tolist() == [3, 7]  # the click still has its 30 s gap though the view is cut off


def test_live_intent_is_what_was_looked_at_since_the_last_purchase():
    items = np.array([1, 2, 3, 4, 3, 5])
    kinds = np.array([VIEW, PURCHASE, VIEW, CART, REMOVE, CLICK])
    assert live_intent(items, kinds).tolist() == [4, 5]  # 1 before the purchase, 3 taken out of the cart


def test_live_cart_is_adds_minus_removes_and_purchases():
    items = np.array([1, 2, 1, 2, 1, 3])
    kinds = np.array([CART, CART, CART, REMOVE, PURCHASE, CART])
    assert live_cart(items, kinds) == {3: 1}
    assert live_cart(np.array([1, 1, 1]), np.array([CART, CART, REMOVE])) == {1: 1}


def _events(rows):
    frame = pd.DataFrame(rows, columns=["event_type", "user_id", "item_id", "timestamp"])
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    frame["session_id"] = "s"
    frame["order_id"] = None
    return Dataset("t", frame, catalog_from_items(list("abcd")))


def test_event_interactions_keep_each_events_kind_and_a_plain_view_of_them():
    data = _events(
        [("view", "u", "a", 0), ("click", "u", "a", 5), ("add_to_cart", "u", "a", 20), ("purchase", "u", "a", 60), ("view", "u", "b", 90)]
    )
    history, _ = build_interactions(data, list(BEHAVIOURS), basket_key="event")
    assert history.kinds[0].tolist() == [VIEW, CLICK, CART, PURCHASE, VIEW]
    items, kinds, times = flat_behaviour(history, 0)
    assert items.tolist() == [1, 1, 1, 1, 2] and times.tolist() == [0, 5, 20, 60, 90]
    assert served_items(history, 0).tolist() == [1, 2]  # the purchase, then the view after it
    bought = history.of_kind(PURCHASE)
    assert [b.tolist() for b in bought.baskets[0]] == [[0]] and bought.times[0].tolist() == [60]
    orders, _ = build_interactions(data, ["purchase"])
    assert orders.kinds is None and flat_behaviour(orders, 0)[1].tolist() == [PURCHASE]  # basket data: purchases


def test_behaviour_windows_target_the_next_event_and_the_next_purchase():
    history = Interactions(
        5,
        [[np.array([0]), np.array([1]), np.array([1]), np.array([2])]],
        [np.array([0.0, 30.0, 40.0, 5_000.0])],
        [np.array([VIEW, VIEW, PURCHASE, VIEW])],
    )
    w = behaviour_windows(history, 4)
    assert w["items"].tolist() == [[0, 1, 2, 2]]
    assert w["kinds"].tolist() == [[0, VIEW + 1, VIEW + 1, PURCHASE + 1]]
    assert w["gaps"].tolist() == [[0, 1, 3, 3]]
    assert w["targets"].tolist() == [[0, 2, 2, 3]]
    assert w["purchase_targets"].tolist() == [[0, 2, 2, 0]]  # the purchase of item 2 follows the first two events only


def test_session_split_asks_mid_session_for_the_sessions_purchases_without_leaking_them():
    data = SyntheticShop(SyntheticConfig(n_users=300, n_items=300, n_categories=10, sessions_per_user=8, seed=1)).dataset()
    config = DataConfig(source="synthetic", event_types=list(BEHAVIOURS), split="last_session")
    split = make_split(data, config)
    assert len(split.test.users) > 30 and len(split.valid.users) > 30
    full = split.full
    for task in (split.valid, split.test):
        for u, target in zip(task.users, task.targets):
            seen = len(task.history.baskets[u])
            later_kinds, later_items = full.kinds[u][seen:], np.array([b[0] for b in full.baskets[u][seen:]])
            assert full.kinds[u][seen] == VIEW  # cut at a view
            assert set(target) <= set(later_items[later_kinds == PURCHASE])  # targets come after the cut
    # Training (the validation history) never holds a test target's purchase.
    for u in split.test.users:
        assert len(split.valid.history.baskets[u]) <= session_bounds(full.times[u])[-2]  # ends before the test session
    clicks = make_split(data, config.model_copy(update={"session_target": "click"}))
    assert all(len(t) == 1 for t in clicks.test.targets)
    anonymous = make_split(data, config.model_copy(update={"anonymous_test": True}))
    for u in anonymous.test.users[:20]:
        times = anonymous.test.history.times[u]
        assert len(times) and times[-1] - times[0] < 6 * 3600  # only the session's own events
