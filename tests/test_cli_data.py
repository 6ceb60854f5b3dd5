"""`hyperrec data ...`: synthetic shop and ingestion into an offline store, read back as a source."""

import pandas as pd

from hyperrec.cli import main
from hyperrec.config import DataConfig
from hyperrec.data.events import EVENT_TYPES
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.sources import load_dataset


def test_synthetic_store_is_a_source_and_is_never_generated_twice(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["data", "synthetic", "--store", str(store), "n_items=300", "n_users=100"]) == 0
    dataset = load_dataset(DataConfig(source="store", path=store, event_types=list(EVENT_TYPES)))
    assert len(dataset.catalog) == 300 and len(dataset.events) > 1_000
    purchases = load_dataset(DataConfig(source="store", path=store)).events  # a run reads only the kinds it uses
    assert set(purchases["event_type"]) == {"purchase"} and len(purchases) == (dataset.events["event_type"] == "purchase").sum()
    assert main(["data", "synthetic", "--store", str(store), "n_items=300", "n_users=100"]) == 2
    assert "already holds events" in capsys.readouterr().err
    assert len(OfflineStore(store).read()) == len(dataset.events)


def test_ingest_appends_merges_the_catalog_and_refuses_the_same_file_twice(tmp_path, tiny, capsys):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    tiny.events.iloc[:9].to_csv(first, index=False)  # u1's orders: items a-d
    tiny.events.iloc[9:].to_csv(second, index=False)  # u2, u3: items a, c, d, e
    store = tmp_path / "store"
    assert main(["data", "ingest", str(first), "--store", str(store)]) == 0
    assert main(["data", "ingest", str(second), "--store", str(store)]) == 0
    assert main(["data", "ingest", str(first), "--store", str(store)]) == 2
    assert "already ingested" in capsys.readouterr().err
    stored = OfflineStore(store)
    pd.testing.assert_frame_equal(stored.read(), tiny.events)
    assert sorted(stored.read_catalog()["item_id"]) == list("abcde")
    assert main(["data", "ingest", str(first), "--store", str(store), "--force"]) == 0
    assert len(stored.read()) == len(tiny.events) + 9


def test_ingest_reports_bad_rows_with_the_flag_to_skip_them(tmp_path, tiny, capsys):
    bad = tiny.events.copy()
    bad.loc[3, "quantity"] = 0
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    assert main(["data", "ingest", str(path), "--store", str(tmp_path / "s")]) == 2
    assert "row 5: quantity" in capsys.readouterr().err
    assert main(["data", "ingest", str(path), "--store", str(tmp_path / "s"), "--skip-invalid"]) == 0
    assert len(OfflineStore(tmp_path / "s").read()) == len(tiny.events) - 1
