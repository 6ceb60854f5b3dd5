import pytest

from hyperrec.config import DataConfig, ExperimentConfig
from hyperrec.data.file_source import DataFileError, load_event_file
from hyperrec.data.sequences import make_split
from hyperrec.data.sources import load_dataset


def test_a_shops_csv_loads_through_the_contract(tmp_path, tiny):
    path = tmp_path / "events.csv"
    tiny.events.to_csv(path, index=False)
    dataset = load_dataset(DataConfig(source="file", path=path))
    assert len(dataset.events) == len(tiny.events)
    assert set(dataset.catalog["item_id"]) == set("abcde")  # ids seen in the events
    split = make_split(dataset, ExperimentConfig(name="x").data)
    assert len(split.test.users) == 2


def test_parquet_with_a_catalog(tmp_path, tiny):
    events, catalog = tmp_path / "events.parquet", tmp_path / "catalog.csv"
    tiny.events.to_parquet(events)
    tiny.catalog.assign(price=1.0, category="dairy").to_csv(catalog, index=False)
    dataset = load_event_file(events, catalog)
    assert len(dataset.catalog) == 6 and (dataset.catalog["category"] == "dairy").all()


def test_bad_rows_name_the_file_row_and_field(tmp_path, tiny):
    bad = tiny.events.copy()
    bad.loc[2, "quantity"] = 0
    bad.loc[5, "order_id"] = None
    path = tmp_path / "events.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(DataFileError) as error:
        load_event_file(path)
    message = str(error.value)
    assert str(path) in message and "2 of 14 events" in message
    assert "row 4: quantity" in message and "row 7: order_id" in message  # CSV rows, header = 1
    kept = load_event_file(path, skip_invalid=True)
    assert len(kept.events) == 12


def test_unknown_columns_unsupported_type_and_items_missing_from_catalog(tmp_path, tiny):
    path = tmp_path / "events.csv"
    tiny.events.assign(colour="red").to_csv(path, index=False)
    with pytest.raises(DataFileError, match="unknown columns.*colour"):
        load_event_file(path)
    (tmp_path / "events.json").touch()
    with pytest.raises(DataFileError, match="unsupported file type"):
        load_event_file(tmp_path / "events.json")
    tiny.events.to_csv(path, index=False)
    catalog = tmp_path / "catalog.csv"
    tiny.catalog.iloc[:2].to_csv(catalog, index=False)
    with pytest.raises(DataFileError, match="not in the catalog"):
        load_event_file(path, catalog)
