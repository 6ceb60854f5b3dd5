"""Cohort lists: each context's most specific cohort with enough events answers, the coarser ones otherwise."""

import numpy as np
import pandas as pd

from hyperrec.bundle.cohorts import CohortLists

EVENING = pd.Timestamp("2026-11-27T19:00:00Z")  # part of day 3 (UTC 18-23)
MORNING = pd.Timestamp("2026-11-27T07:00:00Z")  # part of day 1


def events(rows: list[tuple[str, str | None, str | None, pd.Timestamp, int]]) -> pd.DataFrame:
    """(item, device, channel, time, how many times) -> event rows."""
    out = [(item, device, channel, at) for item, device, channel, at, times in rows for _ in range(times)]
    return pd.DataFrame(out, columns=["item_id", "device", "channel", "timestamp"])


def test_the_most_specific_cohort_with_enough_events_answers():
    frame = events(
        [
            ("a", "ios", "email", EVENING, 5),
            ("b", "ios", "email", EVENING, 3),
            ("c", "android", "ads", MORNING, 6),
            ("d", "android", None, MORNING, 2),
            ("zzz", "ios", "email", EVENING, 9),  # not in the catalogue: left out
        ]
    )
    cohorts = CohortLists.from_events(frame, pd.Index(["a", "b", "c", "d"]), min_events=4)
    listed, reason = cohorts.for_context("ios", "email", 20)
    assert list(listed) == [0, 1] and reason == "popular on ios via email in the evening"
    listed, reason = cohorts.for_context("android", None, 8)  # no channel: device x part of day
    assert list(listed) == [2, 3] and reason == "popular on android in the morning"
    listed, reason = cohorts.for_context("web", None, 8)  # a device with no events: the part of day alone
    assert list(listed) == [2, 3] and reason == "popular in the morning"
    assert cohorts.for_context("web", None, 2) is None  # nothing at night: the caller's global list
    assert "device=android|channel=ads|part=1" in cohorts.lists  # 6 events
    assert "device=android|channel=ads|part=1" not in CohortLists.from_events(frame, pd.Index(["a", "b", "c", "d"]), min_events=7).lists


def test_cohort_lists_survive_a_save_and_load(tmp_path):
    cohorts = CohortLists({"part=1": np.array([3, 1, 2]), "device=ios": np.array([0])})
    cohorts.save(tmp_path / "cohorts.parquet")
    loaded = CohortLists.load(tmp_path / "cohorts.parquet")
    assert {k: list(v) for k, v in loaded.lists.items()} == {"part=1": [3, 1, 2], "device=ios": [0]}
