"""The Ray Serve application: HTTP ingress (FastAPI) -> retrieval deployment -> batched ranking deployment.

    POST /recommend   {user_id, context, k, exclude?}  -> items, scores, reasons, version, trace id
    POST /events      [contract events]                 -> accepted / rejected (4xx if none accepted)
    GET  /healthz /readyz /metrics, OpenAPI at /docs
    POST /admin/model {version}                         -> hot swap (all replicas load, then switch)
    POST /admin/faults {stage, mode, delay_ms}          -> only with `fault_injection: true`

The ingress owns the request flow (hyperrec/serve/flow.py) and the online store. With
`topology: single` (the default) the two model stages run inside the ingress replica; with
`topology: deployments` they are deployments of their own that scale on their own, and ranking
calls from concurrent requests are scored together by `@serve.batch`.
"""

import time
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from ray import serve
from ray.serve.handle import DeploymentHandle

from hyperrec.registry import Registry, RegistryError
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.online_store import MemoryStore, OnlineStore
from hyperrec.serve.schemas import EventsResponse, FaultRequest, RecommendRequest, RecommendResponse, SwapRequest
from hyperrec.serve.stages import RankingStage, RetrievalStage

QUIET_LOGS = {"log_level": "WARNING", "enable_access_log": False}  # a log line per request costs more than the request
api = FastAPI(title="hyperrec", description="Personalized recommendations: retrieval, ranking and business policy.", version="0.1.0")


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one readable line per problem, naming the field (`body.k`, `body.context.device`)."""
    problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return JSONResponse(status_code=422, content={"error": "invalid request", "problems": problems})


def make_store(config: ServeConfig) -> OnlineStore:
    if config.store.kind == "redis":
        from hyperrec.serve.redis_store import RedisStore

        return RedisStore(config.store.redis_url, config.store.namespace)
    return MemoryStore()


@serve.deployment
class RetrievalDeployment:
    def __init__(self, config: dict[str, Any]):
        self.config = ServeConfig.model_validate(config)
        self.stage = RetrievalStage(Registry(self.config.registry), self.config)

    def load(self, version: str) -> None:
        self.stage.load(version)

    def set_fault(self, mode: str, delay_ms: float, version: str | None) -> None:
        self.stage.faults.set(mode, delay_ms, version)

    async def candidates(self, version, states, context, blocked, prices):
        return await self.stage.candidates(version, states, context, blocked, prices)


@serve.deployment
class RankingDeployment:
    def __init__(self, config: dict[str, Any]):
        self.config = ServeConfig.model_validate(config)
        self.stage = RankingStage(Registry(self.config.registry), self.config)
        self.score_batch.set_max_batch_size(self.config.ranking.max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(self.config.ranking.batch_wait_ms / 1000)

    def load(self, version: str) -> None:
        self.stage.load(version)

    def set_fault(self, mode: str, delay_ms: float, version: str | None) -> None:
        self.stage.faults.set(mode, delay_ms, version)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def score_batch(self, versions: list[str], features: list[np.ndarray]) -> list[np.ndarray]:
        """Requests of the same version are scored in one ONNX call."""
        out: list[np.ndarray | None] = [None] * len(versions)
        for version in dict.fromkeys(versions):
            rows = [i for i, v in enumerate(versions) if v == version]
            for i, scores in zip(rows, self.stage.score_many(version, [features[i] for i in rows])):
                out[i] = scores
        return out

    async def score(self, version: str, features: np.ndarray) -> np.ndarray:
        await self.stage.faults.check("ranking", version)
        return await self.score_batch(version, features)


class HandleStages:
    """The flow's `Stages` over deployment handles; loads and faults go to every replica."""

    def __init__(self, retrieval: DeploymentHandle, ranking: DeploymentHandle):
        self.retrieval, self.ranking = retrieval, ranking

    async def load(self, version: str) -> None:
        for handle in (self.retrieval, self.ranking):
            await handle.broadcast("load", version).results_async()

    async def set_fault(self, stage: str, mode: str, delay_ms: float, version: str | None) -> None:
        handle = self.retrieval if stage == "retrieval" else self.ranking
        await handle.broadcast("set_fault", mode, delay_ms, version).results_async()

    async def candidates(self, version, states, context, blocked, prices):
        return await self.retrieval.candidates.remote(version, states, context, blocked, prices)

    async def score(self, version: str, features: np.ndarray) -> np.ndarray:
        return await self.ranking.score.remote(version, features)


@serve.deployment
@serve.ingress(api)
class Ingress:
    async def __init__(self, config: dict[str, Any], retrieval: DeploymentHandle | None = None, ranking: DeploymentHandle | None = None):
        self.config = ServeConfig.model_validate(config)
        self.metrics = ServeMetrics()
        if retrieval is not None and ranking is not None:
            self.stages: HandleStages | LocalStages = HandleStages(retrieval, ranking)
        else:  # topology: single
            self.stages = LocalStages(Registry(self.config.registry), self.config)
        self.store = make_store(self.config)
        self.flow = RecommendFlow(self.config, self.store, self.stages)
        await self.flow.start()

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        if request.k > self.config.max_k:
            self.metrics.bad_requests.labels("/recommend").inc()
            raise HTTPException(422, detail=f"body.k: {request.k} is more than this server's max_k ({self.config.max_k})")
        started = time.perf_counter()
        response = await self.flow.recommend(request)
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.requests.labels(response.served_by).inc()
        if response.degraded:
            self.metrics.degraded.inc()
        return response

    @api.post("/events", response_model=EventsResponse)
    async def events(self, events: Annotated[list[dict[str, Any]], Body(description="a batch of contract events")]) -> Any:
        if len(events) > self.config.max_events:
            self.metrics.bad_requests.labels("/events").inc()
            raise HTTPException(413, detail=f"body: {len(events)} events in one batch; at most {self.config.max_events}")
        result = self.flow.ingest(events)
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("rejected").inc(len(result.rejected))
        if result.rejected and not result.accepted:
            return JSONResponse(status_code=422, content=result.model_dump())
        return result

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(self) -> Any:
        try:
            self.store.users(["__readyz__"])
        except Exception as exc:
            return JSONResponse(status_code=503, content={"status": "not ready", "reason": f"online store: {exc}"})
        return {
            "status": "ready",
            "model_version": self.flow.current,
            "last_good": self.flow.last_good,
            "warning": self.flow.fallback_error,
        }

    @api.get("/metrics")
    async def metrics(self) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.post("/admin/model")
    async def swap(self, request: SwapRequest) -> dict[str, Any]:
        if not self.config.admin:
            raise HTTPException(403, detail="admin calls are disabled (admin: false)")
        try:
            version = await self.flow.swap(request.version)
        except (RegistryError, ValueError) as exc:
            raise HTTPException(409, detail=f"body.version: {exc}") from None
        return {"model_version": version, "last_good": self.flow.last_good}

    @api.post("/admin/faults")
    async def faults(self, request: FaultRequest) -> dict[str, str]:
        if not self.config.fault_injection:
            raise HTTPException(403, detail="fault injection is disabled (fault_injection: false)")
        await self.stages.set_fault(request.stage, request.mode, request.delay_ms, request.version)
        return {"stage": request.stage, "mode": request.mode}


def build_app(config: ServeConfig) -> serve.Application:
    raw = config.model_dump(mode="json")
    actor = {"num_cpus": config.cpus_per_replica}
    ingress = Ingress.options(
        num_replicas=config.ingress_replicas, ray_actor_options=actor, max_ongoing_requests=256, logging_config=QUIET_LOGS
    )
    if config.topology == "single":
        return ingress.bind(raw)
    # @serve.batch never forms batches larger than the deployment's max_ongoing_requests (measured with Ray 2.60).
    ongoing = max(config.ranking.max_batch_size, 64)
    retrieval = RetrievalDeployment.options(
        num_replicas=config.retrieval_replicas, ray_actor_options=actor, max_ongoing_requests=64, logging_config=QUIET_LOGS
    ).bind(raw)
    ranking = RankingDeployment.options(
        num_replicas=config.ranking_replicas, ray_actor_options=actor, max_ongoing_requests=ongoing, logging_config=QUIET_LOGS
    ).bind(raw)
    return ingress.bind(raw, retrieval, ranking)
