"""The log contracts: records round-trip through Parquet; bad records and files are clear errors."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from hyperrec.experiment.records import Exposure, LogError, Outcome, SlateItem, read_log, write_records
from tests.test_layers import PACKAGE, imported_packages

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def exposure(**changes):
    raw = {"trace_id": "t1", "timestamp": NOW, "unit_id": "user:1", "session_id": "s1", "experiment": "e", "arm": "a", "placement": "home"}
    return Exposure(**(raw | {"slate": [SlateItem(item_id="i1", position=0, score=0.9)]} | changes))


def test_round_trip(tmp_path):
    records = [exposure(), exposure(trace_id="t2", explore_item="i7", explore_propensity=0.25)]
    write_records(tmp_path / "exposures.parquet", records)
    frame = read_log([tmp_path / "exposures.parquet"], "exposures")
    assert list(frame["trace_id"]) == ["t1", "t2"] and frame.loc[1, "explore_propensity"] == 0.25
    assert frame.loc[0, "slate"][0]["item_id"] == "i1" and frame.loc[0, "timestamp"] == NOW
    outcome = Outcome(
        unit_id="user:1", session_id="s1", timestamp=NOW, event="purchase", item_id="i1", value=12.5, margin=3.0, trace_id="t1"
    )
    write_records(tmp_path / "outcomes.parquet", [outcome])
    assert read_log([tmp_path / "outcomes.parquet"], "outcomes").loc[0, "value"] == 12.5


def test_record_errors_name_the_field():
    with pytest.raises(ValidationError, match="explore_item and explore_propensity come together"):
        exposure(explore_item="i7")
    with pytest.raises(ValidationError, match="explore_propensity"):
        exposure(explore_item="i7", explore_propensity=1.5)
    with pytest.raises(ValidationError, match="event"):
        Outcome(unit_id="u", session_id="s", timestamp=NOW, event="refund", item_id="i")


def test_unreadable_file_names_it(tmp_path):
    path = tmp_path / "exposures.parquet"
    path.write_text("not parquet")
    with pytest.raises(LogError, match="exposures.parquet: not a readable Parquet file"):
        read_log([path], "exposures")


def test_experiment_reads_logs_only():
    """DESIGN: experiment/ never imports serve/, train/ or export/."""
    wrong = {
        f"{p.name} imports {t}" for p in (PACKAGE / "experiment").rglob("*.py") for t in imported_packages(p) & {"serve", "train", "export"}
    }
    assert not wrong
