import pandas as pd
import pyarrow.parquet as pq
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


def _event(kind: str, minute: int, user: str | None, session: str | None, **fields) -> dict:
    record = {"event_type": kind, "timestamp": f"2024-03-0{1 + minute % 2}T12:{minute:02d}:00Z", **fields}
    return record | ({"user_id": user} if user else {}) | ({"session_id": session} if session else {})


def test_erase_removes_the_user_and_their_sessions_anonymous_events_and_keeps_the_rest(tmp_path):
    store = OfflineStore(tmp_path)
    theirs = [
        _event("view", 1, None, "before-login", item_id="i1"),  # anonymous, in a session they later identify
        _event("identify", 2, "gone", "before-login"),
        _event("purchase", 3, "gone", "s2", item_id="i2", order_id="o1"),
        _event("consent", 4, "gone", "s2", purpose="email", granted=True),
    ]
    others = [
        _event("view", 5, "other", "before-login", item_id="i3"),  # another user in a shared session keeps theirs
        _event("view", 6, None, "anon", item_id="i4"),
        _event("price_change", 7, None, None, item_id="i1", price=2.0),
        _event("search", 8, "other", "s3", query="oat milk"),
    ]
    for batch in ([theirs[0], others[0], others[1]], [theirs[1], theirs[2], others[2]], [theirs[3], others[3]]):
        store.append(events_to_frame(validate_events(batch).accepted))
    sessions = store.sessions_of("gone")
    assert sessions == {"before-login", "s2"}
    parts_before = sorted(store.events_dir.rglob("*.parquet"))
    assert store.erase("gone", sessions) == len(theirs)
    left = store.read()
    pd.testing.assert_frame_equal(left, events_to_frame(validate_events(others).accepted))
    assert "gone" not in set(left["user_id"].dropna()) and store.sessions_of("gone") == set()
    assert len(list(store.events_dir.rglob("*.parquet"))) < len(parts_before)  # parts left empty are deleted
    assert not [p for p in store.events_dir.rglob("*") if p.name.startswith(".")]  # no scratch file left behind
    assert store.erase("gone", sessions) == 0


def test_parts_written_before_a_column_existed_read_it_as_missing(tmp_path):
    """An event log from before `consent` (no purpose or granted columns) still reads once a consent event is appended
    (its old part comes first: the dataset would otherwise take its columns from that one)."""
    store = OfflineStore(tmp_path)
    store.append(events_to_frame(validate_events([_event("view", 2, "u", "s", item_id="i1")]).accepted))
    [part] = store.events_dir.rglob("*.parquet")
    pq.write_table(pq.ParquetFile(part).read().drop(["purpose", "granted"]), part)
    store.append(events_to_frame(validate_events([_event("consent", 1, "u", "s", purpose="analytics", granted=False)]).accepted))
    frame = store.read()
    assert frame["event_type"].tolist() == ["view", "consent"]
    assert frame["purpose"].isna().tolist() == [True, False] and frame["granted"].tolist()[1] is False
