"""What the online side logs for an experiment and the analysis reads: exposures and outcomes.

An exposure is one decision: a slate shown to a unit in an arm (and, for a bandit's exploration
slot, the item it chose with its propensity). An outcome is something the unit did afterwards
(click, add to cart, purchase) with its value and margin; `trace_id` names the decision it came
from when the shopper acted on a slate. Both live as Parquet, one directory per experiment:
`<logs>/<experiment>/exposures*.parquet` and `outcomes*.parquet` (several part files are read as one).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

Id = Annotated[str, Field(min_length=1, max_length=256)]
OutcomeKind = Literal["click", "add_to_cart", "purchase"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlateItem(_Record):
    item_id: Id
    position: int = Field(ge=0)
    score: float


class Exposure(_Record):
    trace_id: Id
    timestamp: AwareDatetime
    unit_id: Id  # pseudonymous: the same key the outcomes carry, never a name or an address
    session_id: Id
    experiment: Id
    arm: Id
    placement: Id
    model_version: str | None = None
    slate: list[SlateItem]
    explore_item: str | None = None
    explore_propensity: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _explore_pair(self) -> Exposure:
        if (self.explore_item is None) != (self.explore_propensity is None):
            raise ValueError("explore_item and explore_propensity come together (an exploration slot logs both)")
        return self


class Outcome(_Record):
    unit_id: Id
    session_id: Id
    timestamp: AwareDatetime
    event: OutcomeKind
    item_id: Id
    value: float = Field(0.0, ge=0)  # revenue of a purchase (price x quantity); 0 for clicks and carts
    margin: float = 0.0
    trace_id: str | None = None


class LogError(ValueError):
    """An experiment log that cannot be used; the message names the file and the field."""


def _schema(model: type[_Record]) -> pa.Schema:
    slate = pa.list_(pa.struct([("item_id", pa.string()), ("position", pa.int32()), ("score", pa.float64())]))
    types = {"timestamp": pa.timestamp("us", tz="UTC"), "slate": slate}
    floats = {"value", "margin", "explore_propensity"}
    return pa.schema([(name, types.get(name, pa.float64() if name in floats else pa.string())) for name in model.model_fields])


EXPOSURE_SCHEMA, OUTCOME_SCHEMA = _schema(Exposure), _schema(Outcome)


def write_records(path: Path, records: Iterable[Exposure | Outcome]) -> int:
    """Write records (all of one kind) as one Parquet file; returns how many."""
    records = list(records)
    if not records:
        raise LogError(f"{path}: no records to write")
    schema = EXPOSURE_SCHEMA if isinstance(records[0], Exposure) else OUTCOME_SCHEMA
    rows = [record.model_dump() for record in records]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return len(rows)


def write_frame(path: Path, frame: pd.DataFrame, kind: Literal["exposures", "outcomes"]) -> int:
    """Write a whole table at once (a simulator's millions of rows), checked column by column."""
    schema = EXPOSURE_SCHEMA if kind == "exposures" else OUTCOME_SCHEMA
    _check_columns(path, frame.columns, schema)
    frame = frame[schema.names].assign(timestamp=pd.to_datetime(frame["timestamp"], utc=True).dt.floor("us"))  # the log keeps microseconds
    try:
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise LogError(f"{path}: a field has the wrong type: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return len(frame)


def _check_columns(path: Path, columns: Iterable[str], schema: pa.Schema) -> None:
    missing = [name for name in schema.names if name not in set(columns)]
    if missing:
        raise LogError(f"{path}: missing field(s) {missing}; an experiment log has {schema.names}")


def read_log(paths: list[Path], kind: Literal["exposures", "outcomes"]) -> pd.DataFrame:
    """Read part files of one kind into one table, with every field of the contract checked:
    present, of the right type, no missing ids or times, propensities in (0, 1], events known."""
    schema = EXPOSURE_SCHEMA if kind == "exposures" else OUTCOME_SCHEMA
    model = Exposure if kind == "exposures" else Outcome
    frames = []
    for path in paths:
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise LogError(f"{path}: not a readable Parquet file: {exc}") from None
        _check_columns(path, table.column_names, schema)
        try:
            table = table.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            wrong = [f.name for f in schema if not table.schema.field(f.name).type.equals(f.type)]
            raise LogError(f"{path}: field(s) {wrong} have the wrong type ({exc}); expected {schema}") from None
        frame = table.to_pandas()
        required = [name for name, field in model.model_fields.items() if field.is_required()]
        for name in required:
            if frame[name].isna().any():
                raise LogError(f"{path}: field '{name}' is empty in {int(frame[name].isna().sum())} row(s)")
        if kind == "outcomes":
            bad = ~frame["event"].isin(OutcomeKind.__args__)
            if bad.any():
                found = sorted(frame.loc[bad, "event"].unique())
                raise LogError(f"{path}: field 'event' has {found}; expected one of {OutcomeKind.__args__}")
            if (frame["value"] < 0).any():
                raise LogError(f"{path}: field 'value' is negative in {int((frame['value'] < 0).sum())} row(s)")
        else:
            p = frame["explore_propensity"]
            if ((p <= 0) | (p > 1)).any():
                raise LogError(f"{path}: field 'explore_propensity' must lie in (0, 1]")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def log_files(logs: Path, experiment: str) -> tuple[list[Path], list[Path]]:
    """The exposure and outcome part files of one experiment; a clear error when there are none."""
    folder = logs / experiment
    exposures, outcomes = sorted(folder.glob("exposures*.parquet")), sorted(folder.glob("outcomes*.parquet"))
    if not exposures:
        known = sorted(p.name for p in logs.iterdir() if p.is_dir() and any(p.glob("exposures*.parquet"))) if logs.is_dir() else []
        raise LogError(
            f"experiment '{experiment}': no exposure log (exposures*.parquet) in {folder}; "
            + (f"experiments with logs in {logs}: {known}" if known else f"{logs} holds no experiment logs")
        )
    if not outcomes:
        raise LogError(f"experiment '{experiment}': no outcome log (outcomes*.parquet) in {folder}")
    return exposures, outcomes
