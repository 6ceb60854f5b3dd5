"""How the simulator reaches an arm's serving side: the in-process flow or its HTTP endpoint, one interface.

Both take the endpoint's request body and return its response body, and both hand the shoppers'
events to the serving side's ingestion (`RecommendFlow.ingest` / `POST /events`), so everything
else in the simulator runs the same code in both modes.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

from hyperrec.config import set_dotted, validate
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import EventsResponse, RecommendRequest, RecommendResponse
from hyperrec.sim.config import SimArm


class ArmClient(Protocol):
    async def recommend(self, request: RecommendRequest) -> RecommendResponse: ...

    async def ingest(self, records: list[dict[str, Any]]) -> EventsResponse: ...

    async def close(self) -> None: ...


def arm_serve_config(arm: SimArm) -> ServeConfig:
    """The arm's serve settings: its registry and version, no event or audit log of its own (the simulator
    writes the experiment's logs), then its dotted `serve` settings."""
    raw: dict[str, Any] = {"registry": str(arm.registry), "version": arm.version, "event_log": None, "audit": {"enabled": False}}
    for key, value in arm.serve.items():
        set_dotted(raw, key.split("."), value)
    return validate(raw, f"arms.{arm.name}.serve", ServeConfig)


class InProcessArm:
    """An arm served by a `RecommendFlow` in this process (memory online store, both stages local)."""

    def __init__(self, flow: RecommendFlow, stages: LocalStages):
        self.flow, self.stages = flow, stages

    @classmethod
    async def start(cls, arm: SimArm) -> InProcessArm:
        config = arm_serve_config(arm)
        stages = LocalStages(Registry(config.registry), config)
        flow = RecommendFlow(config, MemoryStore(consent=config.privacy.consent), stages)
        await flow.start()
        if arm.popularity:  # every retrieval fails: the flow answers with its popularity fallback
            await stages.set_fault("retrieval", "error", 0.0, None)
        return cls(flow, stages)

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        return await self.flow.recommend(request)

    async def ingest(self, records: list[dict[str, Any]]) -> EventsResponse:
        return self.flow.ingest(records)

    async def close(self) -> None:
        self.stages.worker.shutdown()


class HttpArm:
    """An arm served by a running endpoint (`hyperrec serve`)."""

    def __init__(self, url: str, max_events: int = 1000):
        self.client = httpx.AsyncClient(base_url=url, timeout=30.0)
        self.max_events = max_events

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        answer = await self.client.post("/recommend", json=request.model_dump(mode="json"))
        answer.raise_for_status()
        return RecommendResponse.model_validate(answer.json())

    async def ingest(self, records: list[dict[str, Any]]) -> EventsResponse:
        """In batches of the endpoint's `max_events`; the first batch with a rejected event is returned as is."""
        accepted = unknown = 0
        for lo in range(0, len(records), self.max_events):
            answer = await self.client.post("/events", json=records[lo : lo + self.max_events])
            answer.raise_for_status()
            part = EventsResponse.model_validate(answer.json())
            if part.rejected:
                return part
            accepted, unknown = accepted + part.accepted, unknown + part.unknown_items
        return EventsResponse(accepted=accepted, rejected=[], unknown_items=unknown)

    async def close(self) -> None:
        await self.client.aclose()


async def connect(arm: SimArm, mode: str) -> ArmClient:
    return await InProcessArm.start(arm) if mode == "in_process" else HttpArm(arm.url or "")
