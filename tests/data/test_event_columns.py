"""The columnar event check agrees with the per-event pydantic check: same accepted rows, same (row, reason) list."""

import numpy as np
import pandas as pd
import pytest

from hyperrec.data.event_columns import validate_frame
from hyperrec.data.file_source import read_table

T = "2024-03-01T12:00:00Z"
USER = {"user_id": "u1", "session_id": "s1", "timestamp": T}
GOOD = {
    "view": {"event_type": "view", **USER, "item_id": "i1", "device": "ios", "page": "home"},
    "click": {"event_type": "click", **USER, "item_id": "i1", "channel": "email"},
    "add_to_cart": {"event_type": "add_to_cart", **USER, "item_id": "i1", "quantity": 2},
    "remove_from_cart": {"event_type": "remove_from_cart", **USER, "item_id": "i1"},
    "purchase": {"event_type": "purchase", **USER, "item_id": "i1", "order_id": "o1", "quantity": 1, "price": 2.5, "position": 1},
    "search": {"event_type": "search", **USER, "query": "oat milk"},
    "consent": {"event_type": "consent", **USER, "purpose": "personalization", "granted": False},
    "price_change": {"event_type": "price_change", "timestamp": T, "item_id": "i1", "price": 1.99},
    "stock_change": {"event_type": "stock_change", "timestamp": T, "item_id": "i1", "stock": 0},
}
# Accepted after coercion, as pydantic's lax mode does.
ALSO_GOOD = [
    ("add_to_cart", {"quantity": 3.0}),
    ("add_to_cart", {"quantity": "4"}),
    ("purchase", {"schema_version": 1.0, "price": 3}),
    ("view", {"timestamp": "2024-03-01 12:00:00.25+01:00"}),
    ("view", {"timestamp": "2024-03-01T12:00Z"}),
    ("click", {"timestamp": "1700000000"}),
    ("price_change", {"price": "1.5"}),
    ("price_change", {"price": 1e7}),
    ("stock_change", {"stock": 1_000_000_000}),
    ("add_to_cart", {"quantity": 10_000}),
    ("view", {"timestamp": "2000-01-01T00:00:00Z"}),
    ("view", {"timestamp": "2099-12-31T23:59:59.999999Z"}),
    ("view", {"timestamp": "2000-01-01T00:30:00+01:00"}),  # the year as written counts, not the UTC one
    ("view", {"timestamp": "2099-12-31T23:30:00-01:00"}),
    ("consent", {"granted": True, "purpose": "email"}),
    ("consent", {"granted": "false"}),
    ("consent", {"granted": 1}),
    ("consent", {"granted": "yes", "user_id": None}),
]
# Each rule broken at least once; None removes the field.
BAD = [
    ("add_to_cart", {"quantity": 0}),
    ("remove_from_cart", {"quantity": -3}),
    ("add_to_cart", {"quantity": 2.5}),
    ("add_to_cart", {"quantity": np.inf}),
    ("add_to_cart", {"quantity": "two"}),
    ("purchase", {"order_id": None}),
    ("view", {"item_id": None}),
    ("search", {"query": None}),
    ("stock_change", {"stock": None}),
    ("price_change", {"price": None}),
    ("click", {"user_id": None, "session_id": None}),
    ("view", {"timestamp": None}),
    ("view", {"timestamp": "2024-03-01T12:00:00"}),
    ("click", {"timestamp": "2024-03-01"}),
    ("click", {"timestamp": "yesterday"}),
    ("click", {"timestamp": "2024-02-30T12:00:00Z"}),
    ("click", {"timestamp": "2024-13-01T12:00:00Z"}),
    ("teleport", {}),
    (None, {}),
    ("view", {"quantity": 1}),
    ("price_change", {"user_id": "u1"}),
    ("stock_change", {"device": "web"}),
    ("stock_change", {"stock": -1}),
    ("purchase", {"price": -0.5}),
    ("price_change", {"price": -np.inf}),
    ("price_change", {"price": np.inf}),
    ("price_change", {"price": 1e7 + 1}),
    ("stock_change", {"stock": 1_000_000_001}),
    ("stock_change", {"stock": 2**63 - 1}),
    ("add_to_cart", {"quantity": 10_001}),
    ("purchase", {"position": 10_001}),
    ("view", {"timestamp": "1999-12-31T23:59:59Z"}),
    ("view", {"timestamp": "2100-01-01T00:00:00Z"}),
    ("view", {"timestamp": "0358-06-07T11:56:16Z"}),
    ("click", {"timestamp": "9999999999999"}),
    ("price_change", {"price": "cheap"}),
    ("purchase", {"position": 0}),
    ("view", {"schema_version": 7}),
    ("view", {"user_id": ""}),
    ("view", {"item_id": "x" * 257}),
    ("search", {"query": ""}),
    ("search", {"query": "q" * 513}),
    ("click", {"channel": "c" * 65}),
    ("click", {"page": "p" * 129}),
    ("view", {"device": "WEB"}),
    ("view", {"user_id": 5}),
    ("purchase", {"quantity": 0, "timestamp": "2024-03-01T12:00:00", "device": "fridge", "order_id": None}),
    ("consent", {"purpose": "marketing"}),
    ("consent", {"purpose": None}),
    ("consent", {"granted": None}),
    ("consent", {"granted": "maybe"}),
    ("consent", {"granted": 0.5}),
    ("consent", {"schema_version": 1}),
    ("consent", {"session_id": None}),
    ("consent", {"item_id": "i1"}),
    ("view", {"granted": True}),
    ("click", {"purpose": "email"}),
]


def row(kind: str | None, change: dict) -> dict:
    base = dict(GOOD.get(kind, GOOD["view"]), event_type=kind)
    return {k: v for k, v in {**base, **change}.items() if v is not None}


def mixed_frame() -> tuple[pd.DataFrame, list[int]]:
    """Good rows of every kind, coerced good rows and every bad row (each twice, with a twin of another value), interleaved."""
    rows, bad = [], []
    cases = [(k, {}, False) for k in GOOD] + [(k, c, False) for k, c in ALSO_GOOD] + [(k, c, True) for k, c in BAD]
    for repeat in range(2):
        for kind, change, is_bad in cases:
            if is_bad:
                bad.append(len(rows))
            rows.append(row(kind, change))
            rows.append(row(list(GOOD)[repeat * 3 % len(GOOD)], {}))
    return pd.DataFrame(rows), bad


def assert_agree(frame: pd.DataFrame) -> list:
    fast, reference = validate_frame(frame), validate_frame(frame, columnar=False)
    assert [(r.index, r.reason) for r in fast.rejected] == [(r.index, r.reason) for r in reference.rejected]
    pd.testing.assert_frame_equal(fast.events, reference.events)
    return fast.rejected


def test_every_broken_rule_is_rejected_with_the_per_event_reason():
    frame, bad = mixed_frame()
    rejected = assert_agree(frame)
    assert [r.index for r in rejected] == bad
    reasons = {r.reason for r in rejected}
    assert any("teleport" in r for r in reasons) and any("discriminator" in r for r in reasons)
    assert any(r.startswith("context: Extra") or "; context: Extra" in r for r in reasons)


def test_the_checks_agree_on_a_csv_round_trip(tmp_path):
    frame, _ = mixed_frame()
    path = tmp_path / "events.csv"
    frame.to_csv(path, index=False)
    assert_agree(read_table(path))  # typed columns: str ids, quantity as strings (one is "two"), floats with NaN


@pytest.mark.parametrize(
    "column, values",
    [
        ("user_id", [7, 8]),  # numbers where ids belong
        ("quantity", [2.0, np.nan]),
        ("quantity", [True, False]),
        ("stock", [3, -2]),
        ("timestamp", pd.to_datetime(["2024-03-01T12:00:00.0000019Z", None], utc=True)),
        ("timestamp", pd.to_datetime(["2024-03-01T12:00:00+01:00"] * 2).tz_convert("Europe/Paris")),
        ("timestamp", pd.to_datetime(["2024-03-01T12:00:00", None])),  # no time zone
        ("timestamp", [1_700_000_000, 1_700_000_001]),
        ("timestamp", pd.to_datetime(["1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z"], utc=True)),  # outside the contract's years
        ("timestamp", pd.to_datetime(["2000-01-01T00:30:00+01:00", "1999-12-31T23:30:00+01:00"]).tz_convert("Europe/Paris")),
        ("stock", [1_000_000_000, 1_000_000_001]),
        ("quantity", [10_000.0, 10_001.0]),
        ("device", pd.Categorical(["web", "tv"])),
        ("granted", [True, False]),
        ("granted", pd.array([True, None], dtype="boolean")),
        ("granted", [1, 2]),
        ("purpose", pd.Categorical(["email", "sms"])),
    ],
)
def test_the_checks_agree_on_typed_columns(column, values):
    kinds = ["add_to_cart", "stock_change"] if column in ("quantity", "stock") else ["view", "view"]
    if column in ("granted", "purpose"):
        kinds = ["consent", "consent"]
    frame = pd.DataFrame([GOOD[k] for k in kinds])
    if column == "stock":
        frame = pd.DataFrame([GOOD["stock_change"]] * 2)
    frame[column] = values
    assert_agree(frame)


def test_an_empty_or_all_bad_frame():
    assert_agree(pd.DataFrame({"event_type": pd.Series([], dtype="str")}))
    assert_agree(pd.DataFrame({"event_type": ["teleport", None]}))
