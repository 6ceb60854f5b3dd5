"""The event contract: what a shop sends, one pydantic model per event kind.

User events (view, click, add_to_cart, remove_from_cart, purchase, search) share the session id,
the user id (absent for an anonymous shopper, since version 2), timestamp and context; `identify`
(version 2) says a session belongs to a user (a shopper who logs in); `consent` (version 2) grants or
withdraws one purpose of the shopper's data (personalization, analytics, email); catalog events (price_change,
stock_change) concern an item. Every event carries `schema_version`: 2 is the current contract,
1 (no `identify`, a user id on every user event) is still accepted; left out, it is 2. Inside hyperrec, events travel as a columnar table
(`EVENT_COLUMNS`) so that millions of them stay cheap; `events_to_frame` and `frame_to_records`
convert between the two (`events_to_table`: the same table in Arrow, `EVENT_SCHEMA`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetJsonSchemaHandler, TypeAdapter, ValidationError
from pydantic_core import CoreSchema, core_schema

SCHEMA_VERSION = 2
Version = Literal[1, 2]  # every version still accepted
NonEmpty = Annotated[str, Field(min_length=1, max_length=256)]


class ContractYears:
    """A timestamp's year, as written (before any conversion to UTC), is 2000 to 2099.

    The rule is on the written year so that the OpenAPI document can state it exactly (a pattern),
    which a bound on the UTC instant cannot; either way every accepted time fits the event log.
    """

    first, last = 2000, 2099
    # RFC 3339 in full, the years spelled out: a schema fuzzer draws from it, and a bare prefix left it
    # drawing "20dd-" and noise that its date-time check then threw away (its health check failed)
    pattern = r"^20\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)$"

    def check(self, moment: datetime) -> datetime:
        if not self.first <= moment.year <= self.last:
            raise ValueError(f"the year must be {self.first} to {self.last}")
        return moment

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict[str, Any]:
        return handler(schema) | {"pattern": self.pattern, "description": f"RFC 3339 with a UTC offset, years {self.first} to {self.last}"}


# Upper bounds on every number and on time: a value outside them is a broken sender, and inside
# them every accepted value fits the event log's columns (int64, microsecond timestamps).
Timestamp = Annotated[AwareDatetime, ContractYears()]
MAX_QUANTITY = 10_000
MAX_STOCK = 1_000_000_000
MAX_PRICE = 10_000_000.0


class Context(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["web", "ios", "android", "other"] | None = None
    channel: str | None = Field(None, max_length=64)
    page: str | None = Field(None, max_length=128)


class _Event(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Version = SCHEMA_VERSION
    timestamp: Timestamp


class _UserEvent(_Event):
    user_id: NonEmpty | None = Field(None, description="the shop's user id; absent for an anonymous shopper (version 2)")
    session_id: NonEmpty
    context: Context = Context()


class View(_UserEvent):
    event_type: Literal["view"]
    item_id: NonEmpty


class Click(_UserEvent):
    event_type: Literal["click"]
    item_id: NonEmpty


class AddToCart(_UserEvent):
    event_type: Literal["add_to_cart"]
    item_id: NonEmpty
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)


class RemoveFromCart(_UserEvent):
    event_type: Literal["remove_from_cart"]
    item_id: NonEmpty
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)


class Purchase(_UserEvent):
    event_type: Literal["purchase"]
    item_id: NonEmpty
    order_id: NonEmpty
    quantity: int = Field(1, ge=1, le=MAX_QUANTITY)
    price: float | None = Field(None, ge=0, le=MAX_PRICE)
    position: int | None = Field(None, ge=1, le=MAX_QUANTITY, description="order of the item within the basket")


class Search(_UserEvent):
    event_type: Literal["search"]
    query: str = Field(min_length=1, max_length=512)


class Identify(_Event):
    """The session's shopper is this user (they logged in): the session's events join the user's history."""

    schema_version: Literal[2] = SCHEMA_VERSION
    event_type: Literal["identify"]
    session_id: NonEmpty
    user_id: NonEmpty


ConsentPurpose = Literal["personalization", "analytics", "email"]
CONSENT_PURPOSES: tuple[str, ...] = get_args(ConsentPurpose)


class Consent(_Event):
    """The shopper granted or withdrew one purpose from `timestamp` on; the latest by time counts (hyperrec/serve/privacy.py)."""

    schema_version: Literal[2] = SCHEMA_VERSION
    event_type: Literal["consent"]
    session_id: NonEmpty
    user_id: NonEmpty | None = Field(None, description="the shop's user id; absent for an anonymous shopper (the session's consent)")
    purpose: ConsentPurpose = Field(
        description="personalization: their behaviour shapes their answers; analytics: experiments and exposure logs; email: email lists"
    )
    granted: bool = Field(description="true: granted; false: withdrawn")


class PriceChange(_Event):
    event_type: Literal["price_change"]
    item_id: NonEmpty
    price: float = Field(ge=0, le=MAX_PRICE)


class StockChange(_Event):
    event_type: Literal["stock_change"]
    item_id: NonEmpty
    stock: int = Field(ge=0, le=MAX_STOCK)


Event = Annotated[
    View | Click | AddToCart | RemoveFromCart | Purchase | Search | Identify | Consent | PriceChange | StockChange,
    Field(discriminator="event_type"),
]
# Each event kind's model by its `event_type` tag, read from the union above (the one list of kinds).
MODEL_BY_TYPE: dict[str, type[_Event]] = {
    get_args(model.model_fields["event_type"].annotation)[0]: model for model in get_args(get_args(Event)[0])
}
EVENT_TYPES = tuple(MODEL_BY_TYPE)
_EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)

# The columnar form: one row per event, absent fields missing.
STRING_COLUMNS = ("event_type", "user_id", "session_id", "item_id", "order_id", "query", "purpose", "device", "channel", "page")
EVENT_COLUMNS = (
    "event_type",
    "schema_version",
    "timestamp",
    "user_id",
    "session_id",
    "item_id",
    "order_id",
    "quantity",
    "position",
    "price",
    "stock",
    "query",
    "purpose",
    "granted",
    "device",
    "channel",
    "page",
)
CONTEXT_KEYS = tuple(Context.model_fields)


def _arrow_type(column: str) -> pa.DataType:
    if column in STRING_COLUMNS:
        return pa.large_string()
    return {"timestamp": pa.timestamp("us", tz="UTC"), "price": pa.float64(), "granted": pa.bool_()}.get(column, pa.int64())


EVENT_SCHEMA = pa.schema([(column, _arrow_type(column)) for column in EVENT_COLUMNS])  # the table's columns in Arrow (the event log's)


@dataclass(frozen=True)
class Rejection:
    index: int
    reason: str


@dataclass
class ValidationReport:
    """What a batch validation accepted (in input order) and why each rejected event failed."""

    accepted: list[Any] = field(default_factory=list)
    accepted_index: list[int] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _reason(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        loc = [str(p) for p in e["loc"]]
        # Drop the union tag pydantic inserts (e.g. 'purchase') so the field path reads naturally.
        if loc and loc[0] in EVENT_TYPES:
            loc = loc[1:]
        if e["type"] in ("union_tag_invalid", "union_tag_not_found"):  # an unknown or missing kind
            loc = ["event_type"]
        parts.append(f"{'.'.join(loc) or 'event'}: {e['msg']}")
    return "; ".join(parts)


def validate_event(record: Mapping[str, Any]) -> Any:
    """One event or a ValidationError."""
    return _EVENT_ADAPTER.validate_python(record)


def validate_events(records: Iterable[Mapping[str, Any]]) -> ValidationReport:
    report = ValidationReport()
    for index, record in enumerate(records):
        if not isinstance(record, Mapping):
            report.rejected.append(Rejection(index, f"event: expected an object, got {type(record).__name__}"))
            continue
        try:
            report.accepted.append(validate_event(record))
            report.accepted_index.append(index)
        except ValidationError as exc:
            report.rejected.append(Rejection(index, _reason(exc)))
    return report


def empty_events() -> pd.DataFrame:
    return normalize_events(pd.DataFrame({c: [] for c in EVENT_COLUMNS}))


def normalize_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Give an event table the canonical columns, order and dtypes (missing columns = missing values)."""
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in EVENT_COLUMNS:
        # `.array` keeps string and datetime columns as they are (no round trip through Python objects).
        values = frame[col].array if col in frame else np.full(len(frame), None, dtype=object)
        if col in STRING_COLUMNS:
            out[col] = pd.array(values, dtype="str")
        elif col == "timestamp":
            out[col] = pd.to_datetime(values, utc=True).as_unit("us")
        elif col == "price":
            out[col] = pd.array(values, dtype="float64")
        elif col == "granted":
            out[col] = pd.array(values, dtype="boolean")
        else:  # schema_version, quantity, position, stock: nullable integers
            out[col] = pd.array(values, dtype="Int64")
    out["schema_version"] = out["schema_version"].fillna(SCHEMA_VERSION)
    return out


def _rows(events: Iterable[BaseModel]) -> list[dict[str, Any]]:
    rows = []
    for event in events:
        row = event.model_dump(exclude={"context"})
        context = getattr(event, "context", None)
        if context is not None:
            row.update(context.model_dump())
        rows.append(row)
    return rows


def events_to_frame(events: Iterable[BaseModel]) -> pd.DataFrame:
    return normalize_events(pd.DataFrame(_rows(events), columns=list(EVENT_COLUMNS)))


def events_to_table(events: Iterable[BaseModel]) -> pa.Table:
    """The same table in Arrow, built without pandas: what the endpoint logs (a pandas table of one event costs
    ~15 ms of CPU to build and convert, its Arrow table ~0.1 ms)."""
    return pa.Table.from_pylist(_rows(events), schema=EVENT_SCHEMA)


def frame_to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows of an event table as contract records (missing fields left out), ready to validate."""
    records = []
    for row in frame.to_dict(orient="records"):
        record: dict[str, Any] = {}
        context: dict[str, Any] = {}
        for key, value in row.items():
            if not is_missing(value):
                (context if key in CONTEXT_KEYS else record)[key] = to_python(value)
        if context:
            record["context"] = context
        records.append(record)
    return records


def is_missing(value: Any) -> bool:
    """A table cell that stands for an absent field (None, NaN, NaT, NA)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def to_python(value: Any) -> Any:
    """A table cell as the plain Python value the contract's models are given."""
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value
