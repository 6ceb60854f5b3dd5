"""HTTP request and response bodies of the endpoint (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hyperrec.data.events import Context, NonEmpty

ServedBy = Literal["ranker", "last_good", "popularity"]


class RecommendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: NonEmpty
    context: Context = Context()
    k: int = Field(10, ge=1, description="list length (at most the server's max_k)")
    exclude: list[NonEmpty] = Field([], max_length=1000, description="item ids not to recommend (e.g. already in the cart)")


class RecommendedItem(BaseModel):
    item_id: str
    score: float = Field(
        description="the ranker's score plus business weights; the list is in the policy's order (diversity may put a lower score first)"
    )
    reason: str


class RecommendResponse(BaseModel):
    user_id: str
    items: list[RecommendedItem]
    model_version: str
    served_by: ServedBy
    degraded: list[str] = Field(description="why the answer is not the current model's (empty when it is)")
    trace_id: str
    latency_ms: float


class EventsResponse(BaseModel):
    accepted: int
    rejected: list[dict] = Field(description="index in the batch and reason of each event that broke the contract")
    unknown_items: int = Field(
        0, description="accepted events about items the served model does not know (kept in the log, not used online)"
    )


class SwapRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: NonEmpty = Field(description="registry version: current, last-good, latest or vNNNN")


class FaultRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: Literal["retrieval", "ranking"]
    mode: Literal["error", "delay", "none"]
    delay_ms: float = Field(0.0, ge=0, le=60_000)
    version: str | None = Field(None, description="only this registry version; null = every version")
