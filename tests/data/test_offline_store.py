import pandas as pd
import pytest

from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.events import events_to_frame, validate_events
from hyperrec.data.offline_store import OfflineStore
from tests.data.test_events import GOOD


def test_events_read_back_exactly_as_appended(tmp_path, instacart):
    store = OfflineStore(tmp_path / "store")
    contract = events_to_frame(validate_events(GOOD).accepted)
    sample = instacart.events.iloc[:5_000]
    assert store.append(sample) == 5_000
    assert store.append(contract) == len(GOOD)
    expected = pd.concat([sample, contract], ignore_index=True)
    pd.testing.assert_frame_equal(store.read(), expected)
    # Partitioned by day and event type on disk.
    assert {p.name.split("=")[0] for p in (tmp_path / "store" / "events").iterdir()} == {"event_date"}
    wanted = contract[contract["event_type"].isin(["search", "stock_change"])].reset_index(drop=True)
    assert len(wanted) == 2
    pd.testing.assert_frame_equal(store.read(["search", "stock_change"]), wanted)


def test_empty_store_unknown_type_and_catalog(tmp_path):
    store = OfflineStore(tmp_path)
    assert store.read().empty
    with pytest.raises(FileNotFoundError):
        store.read_catalog()
    store.append(events_to_frame(validate_events(GOOD[:1]).accepted))
    with pytest.raises(ValueError, match="unknown event types"):
        store.read(["teleport"])
    catalog = catalog_from_items(["a", "b"])
    store.write_catalog(catalog)
    pd.testing.assert_frame_equal(store.read_catalog(), catalog)
