"""HTTP request and response bodies of the endpoint (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from hyperrec.bundle.placements import Page, Source
from hyperrec.data.events import Context, NonEmpty

# One character that is whitespace to none of the regex engines that read the schema: `\S` alone differs between
# ECMAScript (a client's, schemathesis': U+0085 is not whitespace, U+FEFF is), the server's (Rust's Unicode
# White_Space: the other way round) and Python's (U+001C-U+001F are whitespace too), so "\u0085" was schema-valid and
# rejected.
NOT_BLANK = r"[^\s\u001c-\u001f\u0085\ufeff]"

ServedBy = Literal["ranker", "last_good", "popularity"]
VERSION_SPEC = r"^(current|last-good|latest|v[0-9]{4,12})$"  # what Registry.resolve reads


PAGES: tuple[Page, ...] = get_args(Page)


def needs(field: str, page: Page) -> dict[str, Any]:
    """JSON Schema: `field` (a string) is given, or the page is not `page`."""
    other_pages = [p for p in PAGES if p != page] + [None]
    return {
        "anyOf": [
            {"required": [field], "properties": {field: {"type": "string"}}},
            {"properties": {"context": {"properties": {"page": {"enum": other_pages}}}}},
        ]
    }


# At least one of user_id and session_id, as a string; a product page's item, a search's query: said in
# the OpenAPI document too, so that a request the document calls valid is one the endpoint accepts.
REQUEST_RULES = {
    "anyOf": [{"required": [name], "properties": {name: {"type": "string"}}} for name in ("user_id", "session_id")],
    "allOf": [needs("item_id", "product"), needs("query", "search")],
}


class RecommendContext(Context):
    page: Page | None = Field(
        None,
        description="the placement: home (the default), discover (new for you), product (needs item_id), cart (completes the "
        "shopper's live cart), search (needs query)",
    )


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=REQUEST_RULES)

    user_id: NonEmpty | None = Field(None, description="the shop's user id; leave it out for an anonymous shopper (then session_id)")
    session_id: NonEmpty | None = Field(
        None, validate_default=True, description="the shopper's session: its own events personalize the answer (with user_id, both)"
    )
    context: RecommendContext = RecommendContext()
    k: int = Field(10, ge=1, description="list length (at most the server's max_k)")
    exclude: list[NonEmpty] = Field([], max_length=1000, description="item ids not to recommend (e.g. already in the cart)")
    item_id: NonEmpty | None = Field(None, validate_default=True, description="the item the product page shows (page: product)")
    query: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        pattern=NOT_BLANK,
        validate_default=True,
        description="what the shopper searched (page: search)",
    )

    @field_validator("session_id")
    @classmethod
    def _a_shopper(cls, session_id: str | None, info: ValidationInfo) -> str | None:
        if session_id is None and info.data.get("user_id", "") is None:  # user_id absent, not merely invalid
            raise ValueError("give session_id (an anonymous shopper), user_id, or both")
        return session_id

    @field_validator("item_id")
    @classmethod
    def _a_product(cls, item_id: str | None, info: ValidationInfo) -> str | None:
        if item_id is None and cls._page(info) == "product":
            raise ValueError("a product page needs item_id: the item the page shows")
        return item_id

    @field_validator("query")
    @classmethod
    def _a_query(cls, query: str | None, info: ValidationInfo) -> str | None:
        if query is None and cls._page(info) == "search":
            raise ValueError("a search page needs query: what the shopper searched")
        return query

    @staticmethod
    def _page(info: ValidationInfo) -> Page | None:
        context = info.data.get("context")
        return context.page if isinstance(context, RecommendContext) else None

    @property
    def page(self) -> Page:
        return self.context.page or "home"


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(
        description="the ranker's score plus business weights; the list is in the policy's order (diversity may put a lower score first)"
    )
    reason: str
    title: str | None = Field(None, description="the catalogue's title (null when it has none)")
    price: float | None = Field(None, description="the current price: the latest price event's, else the catalogue's (null: unknown)")
    sources: list[Source] = Field(
        description="the candidate sources that brought it: ann (the shopper's embedding), repeat (their own items), popularity, "
        "bought_with (the page's items), similar (the product page item's neighbours), search (title match)"
    )


class SlotCandidate(BaseModel):
    item_id: str
    probability: float = Field(ge=0, le=1, description="the exploration policy's probability of putting this item in the slot")
    features: list[float] = Field(description="the bandit's features of this item in this context (names: Exploration.feature_names)")


class Exploration(BaseModel):
    """The exploration slot's decision, for off-policy evaluation: what it could have shown, and with which probability."""

    kind: Literal["bandit", "random"]
    item_id: str = Field(description="the item the slot shows")
    position: int = Field(ge=0, description="its place in `items` (0 = first)")
    propensity: float = Field(gt=0, le=1, description="the probability the policy gave it (IPS weights divide by this)")
    feature_names: list[str]
    pool: list[SlotCandidate] = Field(description="every item the slot chose among, best-scored first")


class RecommendResponse(BaseModel):
    user_id: str | None
    session_id: str | None = None
    placement: Page = Field(description="the placement that answered: the request's page, or home when it could not (see degraded)")
    items: list[RecommendedItem]
    model_version: str
    served_by: ServedBy
    degraded: list[str] = Field(description="why the answer is not the current model's (empty when it is)")
    trace_id: str
    latency_ms: float
    stage_ms: dict[str, float] = Field(
        default_factory=dict,
        description="the server's own timer of each stage that ran: online_store, retrieval (encoder, ann, features; "
        "absent on a candidate-cache hit), ranker, policy, response",
    )
    experiment: str | None = Field(None, description="the experiment the endpoint runs (the serve config's `experiment`), else null")
    arm: str | None = Field(None, description="the shopper's arm of it (sticky: a salted hash of the user, else the session), or holdout")
    exploration: Exploration | None = Field(None, description="the exploration slot's draw (explore.kind bandit or random), else null")


class RejectedEvent(BaseModel):
    index: int = Field(description="position in the batch (0 = first)")
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    rejected: list[RejectedEvent] = Field(description="index in the batch and reason of each event that broke the contract")
    unknown_items: int = Field(
        0, description="accepted events about items the served model does not know (kept in the log, not used online)"
    )


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_SPEC, description="registry version: current, last-good, latest or vNNNN")


class CanaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_SPEC, description="registry version to release to a share of the shoppers: latest or vNNNN")
    share: float | None = Field(None, gt=0, lt=1, description="share of the shoppers it answers; null = the server's canary.share")


class CanaryStatus(BaseModel):
    version: str
    share: float = Field(description="share of the shoppers it answers")
    started: float = Field(description="Unix time")


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["retrieval", "ranking"]
    mode: Literal["error", "delay", "none"]
    delay_ms: float = Field(0.0, ge=0, le=60_000)
    version: str | None = Field(None, description="only this registry version; null = every version")


class FaultResponse(BaseModel):
    stage: str
    mode: str


class SwapResponse(BaseModel):
    model_version: str
    last_good: str | None


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: NonEmpty = Field(description="the shop's user id of the shopper whose data is to be deleted")


class EraseResponse(BaseModel):
    user_id: str
    sessions: list[str] = Field(description="the sessions linked to the user (by the online store or the event log), erased with them")
    removed: dict[str, int] = Field(
        description="what was deleted, per place: online_store = subjects (the user, their sessions) it held; "
        "event_log, offline_store = events"
    )


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    model_version: str
    last_good: str | None
    warning: str | None = Field(description="why the last-good model was not loaded, if it was not")
    rolled_back: str | None = Field(
        None, description="the broken monitor bounds for which the server left a version by itself (it stays until an admin swaps)"
    )
    canary: CanaryStatus | None = Field(None, description="the canary being served, and to which share of the shoppers")
    canary_outcome: str | None = Field(None, description="how the last canary ended (promoted or rolled back, and why)")


class Problem(BaseModel):
    field: str = Field(description="where: `body.k`, `body.context.device`, `body.3` (the 4th event of a batch)")
    message: str


class ErrorBody(BaseModel):
    """The body of every error answer (400, 401, 403, 404, 409, 413, 503)."""

    detail: str = Field(description="what was wrong and, where there is something to do, what to do")


class ValidationErrorBody(ErrorBody):
    """The body of every 422: one problem per invalid field."""

    problems: list[Problem] = Field(min_length=1)
