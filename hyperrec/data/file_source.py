"""A shop's own events: a CSV or Parquet file whose columns follow the contract.

Columns are the flat event table (`EVENT_COLUMNS`: context fields `device`, `channel`, `page`
as plain columns); absent columns are missing values. Every row is checked against the
contract, a whole column at a time (`event_columns`); rejected rows are reported with their row
number and reason.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hyperrec.data.catalog import catalog_from_items, normalize_catalog
from hyperrec.data.dataset import Dataset
from hyperrec.data.event_columns import validate_frame
from hyperrec.data.events import EVENT_COLUMNS


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
    report = validate_frame(raw)
    # Row numbers as a spreadsheet shows them for CSV (header = row 1), 0-based for Parquet.
    offset = 2 if path.suffix.lower() == ".csv" else 0
    rejected = [(r.index + offset, r.reason) for r in report.rejected]
    if rejected and not skip_invalid:
        shown = "\n  ".join(f"row {row}: {reason}" for row, reason in rejected[:10])
        more = f"\n  ... and {len(rejected) - 10} more" if len(rejected) > 10 else ""
        raise DataFileError(
            f"{path}: {len(rejected)} of {len(raw)} events break the contract:\n  {shown}{more}\n"
            "Fix them, or use the valid rows only: data.skip_invalid=true in a config, --skip-invalid for `hyperrec data ingest`."
        )
    events = report.events
    if catalog_path is not None:
        catalog = normalize_catalog(read_table(catalog_path))
        missing = set(events["item_id"].dropna()) - set(catalog["item_id"])
        if missing:
            raise DataFileError(f"{catalog_path}: {len(missing)} item ids in {path} are not in the catalog, e.g. {sorted(missing)[:5]}")
    else:
        catalog = catalog_from_items(events["item_id"].dropna().to_numpy())
    return Dataset(name=path.stem, events=events, catalog=catalog)
