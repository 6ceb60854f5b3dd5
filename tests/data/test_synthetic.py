import time

import numpy as np
import pandas as pd
import pytest

from hyperrec.config import SyntheticConfig
from hyperrec.data.catalog import CATALOG_COLUMNS
from hyperrec.data.events import EVENT_COLUMNS, frame_to_records, validate_events
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.synthetic import SyntheticShop, write_synthetic

SMALL = SyntheticConfig(n_users=400, n_items=300, n_categories=8, chunk_users=150, days=30)


@pytest.fixture(scope="module")
def shop() -> SyntheticShop:
    return SyntheticShop(SMALL)


@pytest.fixture(scope="module")
def events(shop: SyntheticShop) -> pd.DataFrame:
    return shop.dataset().events


def indices(ids: pd.Series) -> np.ndarray:
    return ids.str[1:].astype(int).to_numpy()


def test_same_config_same_output_other_seed_differs(shop: SyntheticShop, events: pd.DataFrame) -> None:
    again = SyntheticShop(SMALL).dataset()
    pd.testing.assert_frame_equal(again.events, events)
    pd.testing.assert_frame_equal(again.catalog, shop.catalog)
    other = SyntheticShop(SMALL.model_copy(update={"seed": 1})).dataset()
    assert other.fingerprint() != again.fingerprint()


def test_events_follow_the_contract(events: pd.DataFrame) -> None:
    assert tuple(events.columns) == EVENT_COLUMNS
    sample = pd.concat([events.groupby("event_type").head(200), events.sample(2_000, random_state=0)])
    report = validate_events(frame_to_records(sample))
    assert report.rejected == []
    assert set(events["event_type"]) == {"view", "click", "add_to_cart", "remove_from_cart", "purchase", "search"}
    assert events["user_id"].str.fullmatch(r"u\d+").all()
    assert set(events["device"]) <= {"web", "ios", "android"}


def test_catalog(shop: SyntheticShop) -> None:
    catalog = shop.catalog
    assert tuple(catalog.columns) == CATALOG_COLUMNS and len(catalog) == SMALL.n_items
    assert (catalog["item_id"] == [f"i{i}" for i in range(SMALL.n_items)]).all()
    assert catalog["category"].nunique() == SMALL.n_categories
    assert catalog["margin"].between(0.05, 0.6).all() and (catalog["price"] > 0).all()
    assert 0 < (catalog["stock"] == 0).sum() < 0.1 * len(catalog)
    assert catalog["title"].str.fullmatch(r".+ item \d+").all()


def test_chunks_are_time_sorted(shop: SyntheticShop) -> None:
    chunks = list(shop.iter_event_chunks())
    assert len(chunks) == shop.n_chunks == 3
    assert all(chunk["timestamp"].is_monotonic_increasing for chunk in chunks)
    assert chunks[0]["timestamp"].min() >= pd.Timestamp("2024-01-01", tz="UTC")


def test_funnel(events: pd.DataFrame, shop: SyntheticShop) -> None:
    counts = events["event_type"].value_counts()
    assert counts["view"] > counts["click"] > counts["add_to_cart"] > counts["purchase"] > 0
    assert counts["add_to_cart"] > counts["remove_from_cart"] > 0
    purchases = events[events["event_type"] == "purchase"]
    assert purchases["order_id"].notna().all() and (purchases["quantity"] >= 1).all()
    assert not purchases.duplicated(["order_id", "item_id"]).any()
    # Positions number each basket 1..n; prices are catalog prices; nothing out of stock is sold.
    positions = purchases.groupby("order_id")["position"].agg(["min", "max", "size"])
    assert (positions["min"] == 1).all() and (positions["max"] == positions["size"]).all()
    items = indices(purchases["item_id"])
    np.testing.assert_allclose(purchases["price"].to_numpy(), shop.catalog["price"].to_numpy()[items])
    assert (shop.catalog["stock"].to_numpy()[items] > 0).all()
    assert purchases.groupby("order_id")["session_id"].nunique().eq(1).all()
    assert events.loc[events["event_type"] == "search", "query"].isin(set(shop.category_names)).all()


def test_repeat_buying(events: pd.DataFrame) -> None:
    purchases = events[events["event_type"] == "purchase"]
    share = purchases.duplicated(["user_id", "item_id"]).mean()
    assert 0.1 < share < 0.6
    none = SyntheticShop(SMALL.model_copy(update={"repeat_prob": 0.0})).dataset().events
    assert none[none["event_type"] == "purchase"].duplicated(["user_id", "item_id"]).mean() < share / 2


def test_events_scale_linearly_with_users() -> None:
    sizes = [len(SyntheticShop(SMALL.model_copy(update={"n_users": n})).dataset().events) for n in (500, 2_000)]
    assert 3.0 < sizes[1] / sizes[0] < 5.0


def test_large_catalog_is_fast() -> None:
    start = time.perf_counter()
    shop = SyntheticShop(SyntheticConfig(n_items=100_000, n_categories=50, n_users=1_000))
    events = shop.dataset().events
    assert time.perf_counter() - start < 10
    assert indices(events["item_id"].dropna()).max() < 100_000 and len(events) > 10_000


def test_purchases_follow_true_preference(shop: SyntheticShop, events: pd.DataFrame) -> None:
    purchases = events[events["event_type"] == "purchase"]
    users, items = indices(purchases["user_id"]), indices(purchases["item_id"])
    scores = shop.preference(np.arange(SMALL.n_users))
    assert scores.shape == (SMALL.n_users, SMALL.n_items)
    assert scores[users, items].mean() > scores.mean() + 1.0
    assert shop.preference(np.array([3, 5]), np.array([0, 7, 9]), day=10.5).shape == (2, 3)


def test_views_match_softmax_of_preference() -> None:
    """A session's first view is a draw from softmax(preference), up to the candidate sampling."""
    update = {"n_users": 1, "n_items": 50, "sessions_per_user": 3_000, "taste_drift": 0.0, "repeat_prob": 0.0}
    shop = SyntheticShop(SMALL.model_copy(update=update))
    events = shop.dataset().events
    first_views = events[events["event_type"] == "view"].drop_duplicates("session_id")
    observed = np.bincount(indices(first_views["item_id"]), minlength=50) / len(first_views)
    expected = np.exp(shop.preference(np.array([0]))[0])
    expected /= expected.sum()
    assert len(first_views) > 1_000
    assert 0.5 * np.abs(observed - expected).sum() < 0.06


def test_true_top_items(shop: SyntheticShop) -> None:
    users = np.array([0, 1, 7])
    top = shop.true_top_items(users, k=10)
    scores = shop.preference(users)
    assert top.shape == (3, 10)
    np.testing.assert_allclose(np.take_along_axis(scores, top, axis=1), -np.sort(-scores, axis=1)[:, :10])


def test_drift() -> None:
    users = np.arange(50)
    drifting = SyntheticShop(SMALL)
    assert not np.allclose(drifting.preference(users, day=0), drifting.preference(users))
    np.testing.assert_allclose(drifting.preference(users, day=12.0), SyntheticShop(SMALL).preference(users, day=12.0))
    # The walk is continuous, also across day boundaries.
    np.testing.assert_allclose(drifting.preference(users, day=13 - 1e-6), drifting.preference(users, day=13), atol=1e-4)
    still = SyntheticShop(SMALL.model_copy(update={"taste_drift": 0.0}))
    np.testing.assert_array_equal(still.preference(users, day=0), still.preference(users))
    with pytest.raises(ValueError, match="day"):
        still.preference(users, day=SMALL.days + 1)


def test_write_synthetic(tmp_path, events: pd.DataFrame) -> None:
    store = OfflineStore(tmp_path / "store")
    assert write_synthetic(SMALL, store, show_progress=False) == len(events)
    pd.testing.assert_frame_equal(store.read(), events)
    assert len(store.read_catalog()) == SMALL.n_items
