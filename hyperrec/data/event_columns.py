"""The event contract checked a whole column at a time, for files of millions of events.

`validate_frame(frame)` gives the same accepted rows and the same (row, reason) list as checking
each row with the pydantic models (`validate_frame(frame, columnar=False)`, the reference), at a
fraction of the cost. The rules are read from the models: the kinds and their fields, which are
required, the defaults, the string-length bounds and the bounds on numbers and times; a field or value this module
does not vectorize (literals, strings in number columns, odd timestamps) is checked by that
field's own pydantic validator, once per distinct value.

Every cell gets a code (0: fine, else the kind of fault); rows with the same event type and the
same codes break the contract in the same way, so one row of each such group goes through the
models and its reason is the group's reason. One row of each accepted shape (event type and
filled columns) goes through the models too, and a disagreement raises: the columnar check can
not silently drift from the models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from types import NoneType, UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import numpy as np
import pandas as pd
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from hyperrec.data.events import (
    CONTEXT_KEYS,
    MODEL_BY_TYPE,
    ContractYears,
    Rejection,
    empty_events,
    events_to_frame,
    frame_to_records,
    normalize_events,
    to_python,
    validate_events,
)

# Cell codes; the kind-of-fault codes only need to tell faults apart, the messages come from pydantic.
OK, MISSING, EXTRA, WRONG_TYPE, TOO_SMALL, TOO_LONG, TOO_LARGE, FRACTION, NOT_FINITE, NAIVE, WRONG_YEAR = range(11)
_MESSAGE_CODES: dict[str, int] = {}  # a field validator's message -> its code (from 16 up)
_CHUNK = 50_000  # rows per pydantic batch on the reference path

# Timestamps whose parse pandas and pydantic agree on; any other string goes to pydantic.
_DATE_TIME = r"(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[T ](?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d{1,6})?"
_AWARE = re.compile(_DATE_TIME + r"(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)")
_NAIVE = re.compile(_DATE_TIME)


@dataclass
class FrameReport:
    """Accepted rows as a canonical event table, and each rejected row's position (0-based) and reason."""

    events: pd.DataFrame
    rejected: list[Rejection]


def validate_frame(frame: pd.DataFrame, columnar: bool = True) -> FrameReport:
    """Check an event table against the contract: column by column, or row by row in pydantic (`columnar=False`)."""
    return _validate_columns(frame) if columnar else _validate_rows(frame)


def _validate_rows(frame: pd.DataFrame) -> FrameReport:
    accepted, rejected = [], []
    for start in range(0, len(frame), _CHUNK):
        report = validate_events(frame_to_records(frame.iloc[start : start + _CHUNK]))
        accepted.extend(report.accepted)
        rejected.extend(Rejection(r.index + start, r.reason) for r in report.rejected)
    return FrameReport(events_to_frame(accepted) if accepted else empty_events(), rejected)


def _validate_columns(frame: pd.DataFrame) -> FrameReport:
    frame = frame.reset_index(drop=True)
    n = len(frame)
    required = {name for model in MODEL_BY_TYPE.values() for name, f in model.model_fields.items() if f.is_required()}
    columns = list(frame.columns) + sorted(required - set(frame.columns))
    present = {c: (~frame[c].isna()).to_numpy() if c in frame else np.zeros(n, bool) for c in columns}
    kind_codes, kinds = pd.factorize(frame["event_type"] if "event_type" in frame else pd.Series([None] * n, dtype=object))
    codes = np.zeros((len(columns), n), np.uint16)
    known = np.zeros(n, bool)
    parsed: dict[str, np.ndarray] = {}  # columns whose accepted values differ from the raw ones
    checked: dict[tuple, tuple[np.ndarray, np.ndarray | None]] = {}  # (column, field spec) -> whole-column check
    for k, kind in enumerate(kinds):
        model = MODEL_BY_TYPE.get(kind) if isinstance(kind, str) else None
        if model is None:
            continue  # pydantic names the unknown tag and nothing else
        rows = np.flatnonzero(kind_codes == k)
        known[rows] = True
        for j, column in enumerate(columns):
            if column == "event_type":
                continue
            here = present[column][rows]
            field = _field(model, column)
            if field is None:
                codes[j, rows[here]] = EXTRA
                continue
            if field.is_required():
                codes[j, rows[~here]] = MISSING
            cells = rows[here]
            if len(cells):
                spec = (column, field.annotation, tuple(field.metadata))
                if spec not in checked:  # kinds sharing a field spec share one pass over the column
                    checked[spec] = _check(frame[column], present[column], field)
                column_codes, values = checked[spec]
                codes[j, cells] = column_codes[cells]
                if values is not None:
                    _store(parsed, column, frame[column], cells, values[cells])
    bad = ~known | codes.any(axis=0)
    rejected = _reasons(frame, np.flatnonzero(bad), kind_codes, codes)
    good = np.flatnonzero(~bad)
    _confirm_accepted(frame, good, kind_codes, present, columns)
    return FrameReport(_accepted_frame(frame, good, kinds, kind_codes, parsed), rejected)


def _field(model: type[BaseModel], column: str) -> FieldInfo | None:
    """The model field a column fills (context keys inside `context`), or None where the column is extra."""
    if column in CONTEXT_KEYS and "context" in model.model_fields:
        return model.model_fields["context"].annotation.model_fields[column]
    return model.model_fields.get(column) if column != "context" else None


def _base_type(field: FieldInfo) -> Any:
    """The field's type without `| None` (absent cells never reach a validator)."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _constraints(field: FieldInfo) -> dict[type, Any] | None:
    """The field's bounds by kind, or None when it carries a constraint not vectorized here."""
    known = {
        annotated_types.MinLen: "min_length",
        annotated_types.MaxLen: "max_length",
        annotated_types.Ge: "ge",
        annotated_types.Le: "le",
    }
    if any(type(m) not in known and not isinstance(m, ContractYears) for m in field.metadata):
        return None
    return {type(m): m if isinstance(m, ContractYears) else getattr(m, known[type(m)]) for m in field.metadata}


def _value_kind(values: pd.Series) -> str:
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) or (dtype is np.dtype(object) and pd.api.types.infer_dtype(values, skipna=True) == "string"):
        return "string"
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "floating"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "aware"
    if pd.api.types.is_datetime64_dtype(dtype):
        return "naive"
    return "other"


def _check(column: pd.Series, present: np.ndarray, field: FieldInfo) -> tuple[np.ndarray, np.ndarray | None]:
    """Codes for a whole column as one field (0 where empty), and the accepted values where they differ from the raw ones."""
    base, bounds, kind = _base_type(field), _constraints(field), _value_kind(column)
    if bounds is not None:
        if base is str and kind == "string":
            length = column.str.len().to_numpy(dtype=np.float64, na_value=np.nan)  # NaN where empty: no fault
            too_short = length < bounds.get(annotated_types.MinLen, 0)
            too_long = length > bounds.get(annotated_types.MaxLen, np.inf)
            return np.select([too_short, too_long], [TOO_SMALL, TOO_LONG], OK).astype(np.uint16), None
        if base is str and kind in ("integer", "floating", "boolean", "aware", "naive"):
            return np.where(present, WRONG_TYPE, OK).astype(np.uint16), None
        if base is bool and kind == "boolean":
            return np.zeros(len(column), np.uint16), None
        if base in (int, float) and kind in ("integer", "floating"):
            number = column.to_numpy(dtype=np.float64, na_value=np.nan)
            below = number < bounds.get(annotated_types.Ge, -np.inf)
            above = number > bounds.get(annotated_types.Le, np.inf)
            if base is float or kind == "integer":
                return np.select([below, above], [TOO_SMALL, TOO_LARGE], OK).astype(np.uint16), None
            finite = np.isfinite(number)
            if not (np.abs(number[finite]) < 2**63).all():
                return _check_each(column, field)  # pydantic's own limit on integers from floats
            faults = [present & ~finite, finite & (number != np.floor(number)), below, above]
            return np.select(faults, [NOT_FINITE, FRACTION, TOO_SMALL, TOO_LARGE], OK).astype(np.uint16), None
        if base is AwareDatetime and kind == "aware":
            return _year_codes(column.dt.year, present, bounds), _utc_wall_times(column.dt.tz_convert("UTC"))
        if base is AwareDatetime and kind == "string":
            return _check_timestamp_strings(column, present, field, bounds)
        if base is AwareDatetime and kind == "naive":
            return np.where(present, NAIVE, OK).astype(np.uint16), None
    return _check_each(column, field)


def _utc_wall_times(stamps: pd.Series) -> np.ndarray:
    return stamps.dt.as_unit("us").dt.tz_localize(None).to_numpy()


def _check_timestamp_strings(
    column: pd.Series, present: np.ndarray, field: FieldInfo, bounds: dict[type, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """ISO 8601 strings in the common form parse here; the rest go to pydantic one distinct value at a time."""
    text = column.astype("str")
    aware = text.str.fullmatch(_AWARE.pattern).to_numpy(dtype=bool, na_value=False)
    naive = text.str.fullmatch(_NAIVE.pattern).to_numpy(dtype=bool, na_value=False)
    stamps = _utc_wall_times(pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")).copy()
    codes = np.where(naive, NAIVE, _year_codes(text.str[:4], aware, bounds))
    other = present & (~(aware | naive) | np.isnat(stamps))
    if other.any():
        other_codes, other_stamps = _check_each(column[other], field)
        codes[other], stamps[other] = other_codes, other_stamps
    return codes, stamps


def _year_codes(years: pd.Series, present: np.ndarray, bounds: dict[type, Any]) -> np.ndarray:
    """WRONG_YEAR where a present timestamp's year as written breaks the field's ContractYears, if it has one."""
    rule = bounds.get(ContractYears)
    if rule is None:
        return np.zeros(len(years), np.uint16)
    year = pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(present & ~((year >= rule.first) & (year <= rule.last)), WRONG_YEAR, OK).astype(np.uint16)


def _check_each(column: pd.Series, field: FieldInfo) -> tuple[np.ndarray, np.ndarray | None]:
    """The field's pydantic validator on each distinct value: codes by message, and the validated values."""
    index, uniques = pd.factorize(column)  # -1 where empty
    adapter = _adapter(field)
    codes, results = np.zeros(len(uniques) + 1, np.uint16), np.empty(len(uniques) + 1, object)  # the last: empty
    for u, value in enumerate(uniques):
        try:
            results[u] = adapter.validate_python(to_python(value))
        except ValidationError as error:
            message = "; ".join(e["msg"] for e in error.errors())
            codes[u] = _MESSAGE_CODES.setdefault(message, 16 + len(_MESSAGE_CODES))
    if all(c or (type(r) is type(v) and r == v) for c, r, v in zip(codes, results, map(to_python, uniques), strict=False)):
        return codes[index], None  # the validator changed no value
    out = results[index]
    if _base_type(field) is AwareDatetime:
        out = _utc_wall_times(pd.to_datetime(pd.Series(out, dtype=object), utc=True))
    return codes[index], out


@cache
def _adapter(field: FieldInfo) -> TypeAdapter[Any]:
    return TypeAdapter(Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation)


def _store(parsed: dict[str, np.ndarray], column: str, raw: pd.Series, cells: np.ndarray, values: np.ndarray) -> None:
    if column not in parsed:
        timestamps = values.dtype.kind == "M"
        parsed[column] = np.full(len(raw), np.datetime64("NaT", "us")) if timestamps else raw.to_numpy(dtype=object, copy=True)
    parsed[column][cells] = values


def _reasons(frame: pd.DataFrame, bad: np.ndarray, kind_codes: np.ndarray, codes: np.ndarray) -> list[Rejection]:
    """Each bad row's reason: pydantic's reason for the first row with the same event type and cell codes."""
    if not len(bad):
        return []
    keys = np.vstack([kind_codes[bad].astype(np.int64), codes[:, bad]]).T
    _, first, group = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    reasons = []
    for row in bad[first]:
        report = validate_events(frame_to_records(frame.iloc[[row]]))
        if not report.rejected:
            raise RuntimeError(f"the columnar event check rejects row {row} but the contract's models accept it")
        reasons.append(report.rejected[0].reason)
    return [Rejection(int(row), reasons[g]) for row, g in zip(bad, group.ravel(), strict=True)]


def _confirm_accepted(frame: pd.DataFrame, good: np.ndarray, kind_codes: np.ndarray, present: dict[str, np.ndarray], columns: list) -> None:
    """The models accept one row of each accepted shape (event type and which columns are filled)."""
    shape = kind_codes.astype(np.int64)  # event type in the low 20 bits, one bit per column above
    for j, column in enumerate(columns):
        shape |= present[column].astype(np.int64) << (j + 20)
    for row in good[pd.Series(shape[good]).drop_duplicates().index]:
        report = validate_events(frame_to_records(frame.iloc[[row]]))
        if report.rejected:
            reason = report.rejected[0].reason
            raise RuntimeError(f"the columnar event check accepts row {row} but the contract's models reject it: {reason}")


def _accepted_frame(
    frame: pd.DataFrame, good: np.ndarray, kinds: pd.Index, kind_codes: np.ndarray, parsed: dict[str, np.ndarray]
) -> pd.DataFrame:
    """The accepted rows as the models would dump them: validated values, and field defaults where a cell is empty."""
    out = pd.DataFrame(index=pd.RangeIndex(len(good)))
    keep = np.zeros(len(frame), bool)
    keep[good] = True
    for column in frame.columns:
        values = parsed.get(column)
        if values is not None:
            out[column] = values[good]
        else:
            out[column] = frame[column].array if len(good) == len(frame) else frame[column].array[keep]
    kind_of_row = kind_codes[good]
    for k, kind in enumerate(kinds):
        model = MODEL_BY_TYPE.get(kind) if isinstance(kind, str) else None
        for name, field in (model.model_fields if model else {}).items():
            if field.is_required() or field.default is None or isinstance(field.default, BaseModel) or name == "event_type":
                continue
            if name not in out:
                out[name] = pd.Series([None] * len(out), dtype=object)
            empty = (kind_of_row == k) & out[name].isna().to_numpy()
            out.loc[empty, name] = field.default
    return normalize_events(out)  # parsed timestamps are UTC wall times, which it localizes as UTC
