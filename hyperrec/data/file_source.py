"""A shop's own events: a CSV or Parquet file whose columns follow the contract.

Columns are the flat event table (`EVENT_COLUMNS`: context fields `device`, `channel`, `page`
as plain columns); absent columns are missing values. Every row is checked against the
contract; rejected rows are reported with their row number and reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm import tqdm

from hyperrec.data.catalog import catalog_from_items, normalize_catalog
from hyperrec.data.dataset import Dataset
from hyperrec.data.events import EVENT_COLUMNS, events_to_frame, frame_to_records, validate_events

_CHUNK = 50_000


class DataFileError(ValueError):
    """A data file that cannot be used; the message names the file, the rows and the fields."""


def read_table(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return pd.read_csv(path, dtype={c: "str" for c in ("user_id", "session_id", "item_id", "order_id")})
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    raise DataFileError(f"{path}: unsupported file type '{suffix}' (use .csv or .parquet)")


def load_event_file(path: Path, catalog_path: Path | None = None, skip_invalid: bool = False) -> Dataset:
    raw = read_table(path)
    unknown = sorted(set(raw.columns) - set(EVENT_COLUMNS))
    if unknown:
        raise DataFileError(f"{path}: unknown columns {unknown}; event columns are {list(EVENT_COLUMNS)}")
    accepted, rejected = [], []
    for start in tqdm(range(0, len(raw), _CHUNK), desc=f"validating {path.name}", unit="chunk", disable=len(raw) <= _CHUNK):
        report = validate_events(frame_to_records(raw.iloc[start : start + _CHUNK]))
        accepted.extend(report.accepted)
        # Row numbers as a spreadsheet shows them for CSV (header = row 1), 0-based for Parquet.
        offset = start + (2 if path.suffix.lower() == ".csv" else 0)
        rejected.extend((r.index + offset, r.reason) for r in report.rejected)
    if rejected and not skip_invalid:
        shown = "\n  ".join(f"row {row}: {reason}" for row, reason in rejected[:10])
        more = f"\n  ... and {len(rejected) - 10} more" if len(rejected) > 10 else ""
        raise DataFileError(
            f"{path}: {len(rejected)} of {len(raw)} events break the contract:\n  {shown}{more}\n"
            "Fix them, or use the valid rows only: data.skip_invalid=true in a config, --skip-invalid for `hyperrec data ingest`."
        )
    events = events_to_frame(accepted)
    if catalog_path is not None:
        catalog = normalize_catalog(read_table(catalog_path))
        missing = set(events["item_id"].dropna()) - set(catalog["item_id"])
        if missing:
            raise DataFileError(f"{catalog_path}: {len(missing)} item ids in {path} are not in the catalog, e.g. {sorted(missing)[:5]}")
    else:
        catalog = catalog_from_items(events["item_id"].dropna().to_numpy())
    return Dataset(name=path.stem, events=events, catalog=catalog)
