import pandas as pd

from hyperrec.data.events import EVENT_COLUMNS, events_to_frame, frame_to_records, validate_events

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
    {"event_type": "price_change", "timestamp": T, "item_id": "i1", "price": 1.99},
    {"event_type": "stock_change", "timestamp": T, "item_id": "i1", "stock": 0},
]


def test_every_event_kind_is_accepted_with_a_schema_version():
    report = validate_events(GOOD)
    assert report.rejected == []
    assert [e.event_type for e in report.accepted] == [g["event_type"] for g in GOOD]
    assert all(e.schema_version == 1 for e in report.accepted)


def test_bad_events_are_rejected_with_index_and_reason_and_good_ones_kept_in_order():
    batch = [
        GOOD[0],
        {**GOOD[4], "quantity": 0},  # 1: quantity must be >= 1
        {k: v for k, v in GOOD[4].items() if k != "order_id"},  # 2: purchase without order id
        {**GOOD[1], "timestamp": "2024-03-01T12:00:00"},  # 3: no time zone
        {**GOOD[1], "event_type": "teleport"},  # 4: unknown kind
        {**GOOD[1], "colour": "red"},  # 5: unknown field
        {**GOOD[7], "stock": -1},  # 6
        {**GOOD[1], "schema_version": 7},  # 7: unsupported version
        "not an object",  # 8
        GOOD[5],
    ]
    report = validate_events(batch)
    assert report.accepted_index == [0, 9]
    assert [e.event_type for e in report.accepted] == ["view", "search"]
    reasons = {r.index: r.reason for r in report.rejected}
    assert sorted(reasons) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert reasons[1].startswith("quantity:")
    assert "order_id: Field required" in reasons[2]
    assert reasons[3].startswith("timestamp:") and "timezone" in reasons[3]
    assert "teleport" in reasons[4]
    assert "colour" in reasons[5]
    assert reasons[6].startswith("stock:")
    assert reasons[7].startswith("schema_version:")
    assert "expected an object" in reasons[8]


def test_frame_round_trip_keeps_every_field():
    accepted = validate_events(GOOD).accepted
    frame = events_to_frame(accepted)
    assert list(frame.columns) == list(EVENT_COLUMNS)
    assert frame.loc[0, "device"] == "ios" and frame.loc[0, "page"] == "home"
    assert frame.loc[4, "price"] == 2.5 and frame.loc[7, "stock"] == 0
    assert frame["timestamp"].dt.tz is not None
    again = validate_events(frame_to_records(frame))
    assert again.rejected == [] and again.accepted == accepted
    pd.testing.assert_frame_equal(events_to_frame(again.accepted), frame)
