import pandas as pd
import pyarrow as pa

from hyperrec.data.event_columns import validate_frame
from hyperrec.data.events import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    SCHEMA_VERSION,
    events_to_frame,
    events_to_table,
    frame_to_records,
    validate_events,
)

T = "2024-03-01T12:00:00Z"
GOOD = [
    {
        "event_type": "view",
        "user_id": "u1",
        "session_id": "s1",
        "timestamp": T,
        "item_id": "i1",
        "context": {"device": "ios", "page": "home"},
    },
    {"event_type": "click", "user_id": "u1", "session_id": "s1", "timestamp": T, "item_id": "i1"},
    {"event_type": "add_to_cart", "user_id": "u1", "session_id": "s1", "timestamp": T, "item_id": "i1", "quantity": 2},
    {"event_type": "remove_from_cart", "user_id": "u1", "session_id": "s1", "timestamp": T, "item_id": "i1"},
    {
        "event_type": "purchase",
        "user_id": "u1",
        "session_id": "s1",
        "timestamp": T,
        "item_id": "i1",
        "order_id": "o1",
        "quantity": 1,
        "price": 2.5,
    },
    {"event_type": "search", "user_id": "u1", "session_id": "s1", "timestamp": T, "query": "oat milk"},
    {"event_type": "identify", "user_id": "u1", "session_id": "s0", "timestamp": T},
    {"event_type": "price_change", "timestamp": T, "item_id": "i1", "price": 1.99},
    {"event_type": "stock_change", "timestamp": T, "item_id": "i1", "stock": 0},
]


def test_every_event_kind_is_accepted_with_a_schema_version():
    report = validate_events(GOOD)
    assert report.rejected == []
    assert [e.event_type for e in report.accepted] == [g["event_type"] for g in GOOD]
    assert SCHEMA_VERSION == 2 and all(e.schema_version == 2 for e in report.accepted)  # left out: the current version


def test_version_1_events_are_still_accepted_and_identify_is_version_2():
    v1 = [{**g, "schema_version": 1} for g in GOOD if g["event_type"] != "identify"]
    report = validate_events(v1)
    assert report.rejected == [] and {e.schema_version for e in report.accepted} == {1}
    report = validate_events([{**GOOD[6], "schema_version": 1}, {**GOOD[6], "schema_version": 2}, {**GOOD[6], "schema_version": 3}])
    assert report.accepted_index == [1]
    assert [r.reason for r in report.rejected] == ["schema_version: Input should be 2"] * 2


def test_an_anonymous_shoppers_events_have_no_user_id_and_identify_needs_both_ids():
    anonymous = [{k: v for k, v in g.items() if k != "user_id"} for g in GOOD[:6]]
    report = validate_events(anonymous)
    assert report.rejected == [] and all(e.user_id is None for e in report.accepted)
    no_session = {k: v for k, v in GOOD[6].items() if k != "session_id"}
    no_user = {k: v for k, v in GOOD[6].items() if k != "user_id"}
    reasons = [r.reason for r in validate_events([no_session, no_user, {**GOOD[6], "item_id": "i1"}]).rejected]
    assert reasons == ["session_id: Field required", "user_id: Field required", "item_id: Extra inputs are not permitted"]


def test_the_columnar_check_agrees_on_identify_and_anonymous_rows():
    rows = [*GOOD[:6], *({k: v for k, v in g.items() if k != "user_id"} for g in GOOD[:6]), GOOD[6], {**GOOD[6], "schema_version": 1}]
    rows += [{k: v for k, v in GOOD[6].items() if k != "session_id"}, {**GOOD[6], "event_type": "teleport"}]
    frame = pd.DataFrame([{k: v for k, v in r.items() if k != "context"} for r in rows])
    fast, reference = validate_frame(frame), validate_frame(frame, columnar=False)
    assert [(r.index, r.reason) for r in fast.rejected] == [(r.index, r.reason) for r in reference.rejected]
    assert [r.index for r in fast.rejected] == [13, 14, 15]
    pd.testing.assert_frame_equal(fast.events, reference.events)


def test_bad_events_are_rejected_with_index_and_reason_and_good_ones_kept_in_order():
    batch = [
        GOOD[0],
        {**GOOD[4], "quantity": 0},  # 1: quantity must be >= 1
        {k: v for k, v in GOOD[4].items() if k != "order_id"},  # 2: purchase without order id
        {**GOOD[1], "timestamp": "2024-03-01T12:00:00"},  # 3: no time zone
        {**GOOD[1], "event_type": "teleport"},  # 4: unknown kind
        {**GOOD[1], "colour": "red"},  # 5: unknown field
        {**GOOD[8], "stock": -1},  # 6
        {**GOOD[1], "schema_version": 7},  # 7: unsupported version
        "not an object",  # 8
        GOOD[5],
        {k: v for k, v in GOOD[1].items() if k != "event_type"},  # 10: no kind
    ]
    report = validate_events(batch)
    assert report.accepted_index == [0, 9]
    assert [e.event_type for e in report.accepted] == ["view", "search"]
    reasons = {r.index: r.reason for r in report.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8, 10]
    assert reasons[1].startswith("quantity:")
    assert "order_id: Field required" in reasons[2]
    assert reasons[3].startswith("timestamp:") and "timezone" in reasons[3]
    assert reasons[4].startswith("event_type:") and "teleport" in reasons[4]
    assert reasons[10].startswith("event_type:")
    assert "colour" in reasons[5]
    assert reasons[6].startswith("stock:")
    assert reasons[7].startswith("schema_version:")
    assert "expected an object" in reasons[8]


def test_frame_round_trip_keeps_every_field():
    accepted = validate_events(GOOD).accepted
    frame = events_to_frame(accepted)
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert frame.loc[0, "device"] == "ios" and frame.loc[0, "page"] == "home"
    assert frame.loc[4, "price"] == 2.5 and frame.loc[8, "stock"] == 0 and frame.loc[6, "user_id"] == "u1"
    assert frame["timestamp"].dt.tz is not None
    again = validate_events(frame_to_records(frame))
    assert again.rejected == [] and again.accepted == accepted
    pd.testing.assert_frame_equal(events_to_frame(again.accepted), frame)


def test_the_arrow_table_is_the_frame_in_arrow():
    """The endpoint logs `events_to_table` (no pandas); it must hold what `events_to_frame` holds, value for value."""
    accepted = validate_events(GOOD).accepted
    table = events_to_table(accepted)
    assert table.schema == EVENT_SCHEMA
    assert table.equals(pa.Table.from_pandas(events_to_frame(accepted), schema=EVENT_SCHEMA, preserve_index=False))
