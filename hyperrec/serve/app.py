"""The Ray Serve application: HTTP ingress (FastAPI) -> retrieval deployment -> batched ranking deployment.

    POST /recommend   {user_id, context, k, exclude?}  -> items, scores, reasons, version, trace id
    POST /events      [contract events]                 -> accepted / rejected (4xx if none accepted)
    GET  /healthz /readyz /metrics, OpenAPI at /docs
    POST /admin/model {version}                         -> hot swap (all replicas load, then switch)
    POST /admin/faults {stage, mode, delay_ms}          -> only with `fault_injection: true`
    POST /admin/erase {user_id}                         -> the shopper's online state and logged events deleted
    POST /admin/canary {version, share?}                -> a version answers a share of the shoppers until the monitors decide
    POST /admin/canary/stop                             -> the canary ends (its shoppers back on the current version)

Admin calls need `Authorization: Bearer <token>` (the token from the environment variable
`admin.token_env`); stock and price events the catalog or the admin token (see AdminConfig).
Every error answer has a declared status and body (ErrorBody; every 422 a ValidationErrorBody
naming the field), and the OpenAPI document carries this server's own bounds (max_k,
max_events) and the event contract, so a request the document allows is answered with a 2xx.

The ingress owns the request flow (hyperrec/serve/flow.py) and the online store. With
`topology: single` (the default) the two model stages run inside the ingress replica; with
`topology: deployments` they are deployments of their own that scale on their own, and ranking
calls from concurrent requests are scored together by `@serve.batch`.
"""

import asyncio
import hmac
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Body, Depends, FastAPI, HTTPException, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError
from ray import serve
from ray.serve.handle import DeploymentHandle

from hyperrec.data.events import EVENT_TYPES, MODEL_BY_TYPE, Event
from hyperrec.registry import Registry, RegistryError
from hyperrec.serve import shop_page
from hyperrec.serve.canary import Canary
from hyperrec.serve.config import AdminConfig, ServeConfig
from hyperrec.serve.erasure import erase_user
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.online_store import make_store, shopper_key
from hyperrec.serve.privacy import Pseudonyms
from hyperrec.serve.ray_env import reuse_listening_address
from hyperrec.serve.schemas import (
    CanaryRequest,
    CanaryStatus,
    EraseRequest,
    EraseResponse,
    ErrorBody,
    EventsResponse,
    FaultRequest,
    FaultResponse,
    Health,
    Problem,
    Readiness,
    RecommendRequest,
    RecommendResponse,
    RejectedEvent,
    SwapRequest,
    SwapResponse,
    ValidationErrorBody,
)
from hyperrec.serve.stages import RankingStage, RetrievalStage

QUIET_LOGS = {"log_level": "WARNING", "enable_access_log": False}  # a log line per request costs more than the request
SHOP_SHOPPERS = 8  # known shoppers the storefront page offers
CATALOG_EVENTS = ("stock_change", "price_change")  # sent by the shop's systems, not by shoppers: they need a token
api = FastAPI(title="hyperrec", description="Personalized recommendations: retrieval, ranking and business policy.", version="0.1.0")
bearer = HTTPBearer(
    scheme_name="bearer", auto_error=False, description="the admin token, or for stock and price events the catalog token (AdminConfig)"
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]


def _error(status: int, description: str, model: type[ErrorBody] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": description}}


BAD_BODY = _error(400, "the body is not readable (not UTF-8, not JSON)") | _error(422, "invalid request", ValidationErrorBody)
NEEDS_TOKEN = _error(401, "no bearer token") | _error(403, "wrong token")
ADMIN = NEEDS_TOKEN | _error(404, "admin calls are off: no admin token is set")


def invalid(problems: list[Problem], detail: str = "invalid request") -> JSONResponse:
    """The one 422 answer: what was wrong, field by field."""
    return JSONResponse(status_code=422, content=ValidationErrorBody(detail=detail, problems=problems).model_dump())


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one problem per invalid field, naming it (`body.k`, `body.context.device`)."""
    return invalid([Problem(field=".".join(str(p) for p in e["loc"]), message=e["msg"]) for e in exc.errors()])


@dataclass(frozen=True)
class Tokens:
    """The bearer tokens this server accepts; None = not set (the calls they guard are off)."""

    admin: str | None
    catalog: str | None


def read_tokens(config: AdminConfig) -> Tokens:
    """Read the tokens from the environment of the process that builds the app (`hyperrec serve`, a test)."""

    def read(name: str) -> str | None:
        token = os.environ.get(name, "").strip() or None
        if token is not None and len(token) < config.min_token_length:
            raise ValueError(f"{name} is {len(token)} characters long; use at least {config.min_token_length} (`openssl rand -hex 32`)")
        return token

    return Tokens(admin=read(config.token_env), catalog=read(config.catalog_token_env))


def check_token(credentials: HTTPAuthorizationCredentials | None, accepted: list[str]) -> None:
    """401 without a bearer token, 403 with one that is none of `accepted`; compared in constant time."""
    if credentials is None:
        raise HTTPException(401, detail="this call needs `Authorization: Bearer <token>`", headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode()
    if not any([hmac.compare_digest(given, token.encode()) for token in accepted]):  # a list: every token is compared
        raise HTTPException(403, detail="wrong token")


def require_admin(request: Request, credentials: Credentials) -> None:
    """Runs before the body is validated: without the admin token nothing of an admin call happens."""
    tokens: Tokens = request.app.state.tokens
    if tokens.admin is None:
        raise HTTPException(404, detail=f"admin calls are off: set {request.app.state.admin_env} in the server's environment")
    check_token(credentials, [tokens.admin])


_EVENT_JSON = TypeAdapter(Event)
# The event log stores integers as Int64: a bigger one would fail the append (a 500), so it is refused, and documented.
INT64_MAX = 2**63 - 1
INTEGER_FIELDS = {
    kind: [name for name, f in model.model_fields.items() if f.annotation in (int, int | None)] for kind, model in MODEL_BY_TYPE.items()
}


def json_type_errors(events: list[Any]) -> dict[int, str]:
    """Events whose JSON types break the documented contract although the contract's own (lax) validation would
    coerce them: `"stock": false` or `"stock": "5"` for an integer, a number for a timestamp. An integral number
    (`2.0`) is an integer, as in JSON Schema. Index in the batch -> reason."""
    errors: dict[int, str] = {}
    for index, event in enumerate(events):
        if not isinstance(event, Mapping):
            continue  # the contract check rejects it with its own reason
        kind = event.get("event_type")
        integers = INTEGER_FIELDS.get(kind, []) if isinstance(kind, str) else []
        record = {k: int(v) if k in integers and isinstance(v, float) and v.is_integer() else v for k, v in event.items()}
        try:
            _EVENT_JSON.validate_json(json.dumps(record), strict=True)
        except ValidationError as exc:
            problems = [(e["loc"][1:] if e["loc"] and e["loc"][0] in EVENT_TYPES else e["loc"], e["msg"]) for e in exc.errors()]
            errors[index] = "; ".join(f"{'.'.join(map(str, loc)) or 'event'}: {msg}" for loc, msg in problems)
            continue
        too_big = [name for name in integers if isinstance(record.get(name), int) and record[name] > INT64_MAX]
        if too_big:
            errors[index] = "; ".join(f"{name}: Input should be less than or equal to {INT64_MAX}" for name in too_big)
    return errors


def openapi_document(config: ServeConfig) -> dict[str, Any]:
    """FastAPI's document plus this server's bounds (max_k, max_events) and the event contract as the /events body."""
    doc = get_openapi(title=api.title, version=api.version, description=api.description, routes=api.routes)
    schemas = doc["components"]["schemas"]
    schemas["RecommendRequest"]["properties"]["k"]["maximum"] = config.max_k
    events = TypeAdapter(list[Event]).json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(events.pop("$defs"))
    for kind, names in INTEGER_FIELDS.items():
        for name in names:
            schemas[MODEL_BY_TYPE[kind].__name__]["properties"][name].setdefault("maximum", INT64_MAX)
    events |= {"maxItems": config.max_events, "description": f"a batch of contract events (at most {config.max_events})"}
    doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"] = events
    return doc


def canary_status(canary: Canary) -> CanaryStatus:
    return CanaryStatus(version=canary.version, share=canary.share, started=canary.started)


@serve.deployment
class RetrievalDeployment:
    def __init__(self, config: dict[str, Any]):
        self.config = ServeConfig.model_validate(config)
        self.stage = RetrievalStage(Registry(self.config.registry), self.config)

    def load(self, version: str) -> None:
        self.stage.load(version)

    def set_fault(self, mode: str, delay_ms: float, version: str | None) -> None:
        self.stage.faults.set(mode, delay_ms, version)

    async def candidates(self, version, states, context, blocked, prices, placements):
        return await self.stage.candidates(version, states, context, blocked, prices, placements)


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

    async def candidates(self, version, states, context, blocked, prices, placements):
        return await self.retrieval.candidates.remote(version, states, context, blocked, prices, placements)

    async def score(self, version: str, features: np.ndarray) -> np.ndarray:
        return await self.ranking.score.remote(version, features)


@serve.deployment
@serve.ingress(api)
class Ingress:
    async def __init__(
        self,
        config: dict[str, Any],
        tokens: Tokens,
        pseudonyms: Pseudonyms | None,
        retrieval: DeploymentHandle | None = None,
        ranking: DeploymentHandle | None = None,
    ):
        self.config = ServeConfig.model_validate(config)
        reuse_listening_address()  # before Serve starts this replica's HTTP server
        self.tokens = tokens
        api.state.tokens, api.state.admin_env = tokens, self.config.admin.token_env  # read by require_admin
        document = openapi_document(self.config)
        api.openapi = lambda: document  # type: ignore[method-assign]
        self.metrics = ServeMetrics()
        if retrieval is not None and ranking is not None:
            self.stages: HandleStages | LocalStages = HandleStages(retrieval, ranking)
        else:  # topology: single
            self.stages = LocalStages(Registry(self.config.registry), self.config)
        self.store = make_store(self.config)
        self.flow = RecommendFlow(self.config, self.store, self.stages, self.metrics, pseudonyms)
        await self.flow.start()
        self.shop_page = shop_page.render(self.flow.registry.bundle(self.flow.current).shopper_ids()[:SHOP_SHOPPERS])

    def __del__(self) -> None:
        """Ray Serve calls this when the replica stops (serve.shutdown, SIGTERM): the audit log's queue is written out."""
        self.flow.close()

    @api.post("/recommend", response_model=RecommendResponse, responses=BAD_BODY)
    async def recommend(self, request: RecommendRequest) -> Any:
        if request.k > self.config.max_k:
            self.metrics.bad_requests.labels("/recommend").inc()
            return invalid([Problem(field="body.k", message=f"{request.k} is more than this server's max_k ({self.config.max_k})")])
        started = time.perf_counter()
        response = await self.flow.recommend(request)
        self.metrics.latency.observe(time.perf_counter() - started)
        self.metrics.requests.labels(response.served_by).inc()
        if response.degraded:
            self.metrics.degraded.inc()
        return response

    @api.post(
        "/events",
        response_model=EventsResponse,
        responses=BAD_BODY | NEEDS_TOKEN | _error(413, "more events than max_events in one batch"),
        openapi_extra={"security": [{}]},  # with the bearer scheme FastAPI adds: a token only for stock and price events
    )
    async def events(self, events: Annotated[list[Any], Body()], credentials: Credentials) -> Any:
        if len(events) > self.config.max_events:
            self.metrics.bad_requests.labels("/events").inc()
            raise HTTPException(413, detail=f"body: {len(events)} events in one batch; at most {self.config.max_events}")
        if any(isinstance(e, Mapping) and e.get("event_type") in CATALOG_EVENTS for e in events):
            accepted = [t for t in (self.tokens.catalog, self.tokens.admin) if t is not None]
            if not accepted:
                raise HTTPException(
                    403,
                    detail=f"stock and price events are off: set {self.config.admin.catalog_token_env} or "
                    f"{self.config.admin.token_env} in the server's environment",
                )
            check_token(credentials, accepted)  # the whole batch is refused: no event of it is taken
        wrong_types = json_type_errors(events)
        kept = [i for i in range(len(events)) if i not in wrong_types]
        # Off the event loop: the durable log write takes milliseconds, and /recommend must not wait behind it.
        result = await asyncio.to_thread(self.flow.ingest, [events[i] for i in kept])
        rejected = [RejectedEvent(index=kept[r.index], reason=r.reason) for r in result.rejected]
        rejected += [RejectedEvent(index=i, reason=reason) for i, reason in wrong_types.items()]
        result.rejected = sorted(rejected, key=lambda r: r.index)
        self.metrics.events.labels("accepted").inc(result.accepted)
        self.metrics.events.labels("rejected").inc(len(result.rejected))
        if result.rejected and not result.accepted:
            problems = [Problem(field=f"body.{r.index}", message=r.reason) for r in result.rejected]
            return invalid(problems, detail=f"no event accepted: {len(problems)} broke the contract")
        return result

    @api.get("/shop", response_class=HTMLResponse, include_in_schema=False)  # a page for people, not part of the API
    async def shop(self) -> HTMLResponse:
        return HTMLResponse(self.shop_page)

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        return Health(status="ok")

    @api.get("/readyz", response_model=Readiness, responses=_error(503, "not ready (the online store does not answer)"))
    async def readyz(self) -> Any:
        try:
            self.store.users(["__readyz__"])
        except Exception as exc:
            return JSONResponse(status_code=503, content=ErrorBody(detail=f"not ready: online store: {exc}").model_dump())
        rolled_back = self.flow.rolled_back.describe() if self.flow.rolled_back is not None else None
        return Readiness(
            status="ready",
            model_version=self.flow.current,
            last_good=self.flow.last_good,
            warning=self.flow.fallback_error,
            rolled_back=rolled_back,
            canary=canary_status(self.flow.canary) if self.flow.canary is not None else None,
            canary_outcome=self.flow.canary_outcome.describe() if self.flow.canary_outcome is not None else None,
        )

    @api.get("/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format 0.0.4"}})
    async def metrics(self) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    @api.post(
        "/admin/model",
        response_model=SwapResponse,
        dependencies=[Depends(require_admin)],
        responses=BAD_BODY | ADMIN | _error(409, "no such version, or one that cannot replace the current one"),
    )
    async def swap(self, request: SwapRequest) -> SwapResponse:
        try:
            version = await self.flow.swap(request.version)
        except (RegistryError, ValueError) as exc:
            raise HTTPException(409, detail=f"body.version: {exc}") from None
        return SwapResponse(model_version=version, last_good=self.flow.last_good)

    @api.post(
        "/admin/canary",
        response_model=CanaryStatus,
        dependencies=[Depends(require_admin)],
        responses=BAD_BODY | ADMIN | _error(409, "no such version, the current one, or one with another catalogue"),
    )
    async def start_canary(self, request: CanaryRequest) -> CanaryStatus:
        try:
            canary = await self.flow.start_canary(request.version, request.share)
        except (RegistryError, ValueError) as exc:
            raise HTTPException(409, detail=f"body.version: {exc}") from None
        return canary_status(canary)

    @api.post(
        "/admin/canary/stop",
        response_model=CanaryStatus,
        dependencies=[Depends(require_admin)],
        responses=ADMIN | _error(409, "no canary is being served"),
    )
    async def stop_canary(self) -> CanaryStatus:
        canary = await self.flow.stop_canary()
        if canary is None:
            raise HTTPException(409, detail="no canary is being served")
        return canary_status(canary)

    @api.post(
        "/admin/faults",
        response_model=FaultResponse,
        dependencies=[Depends(require_admin)],
        responses=BAD_BODY | NEEDS_TOKEN | _error(404, "admin calls are off (no admin token), or fault_injection is false"),
    )
    async def faults(self, request: FaultRequest) -> FaultResponse:
        if not self.config.fault_injection:
            raise HTTPException(404, detail="fault injection is off (fault_injection: false)")
        await self.stages.set_fault(request.stage, request.mode, request.delay_ms, request.version)
        return FaultResponse(stage=request.stage, mode=request.mode)

    @api.post("/admin/erase", response_model=EraseResponse, dependencies=[Depends(require_admin)], responses=BAD_BODY | ADMIN)
    async def erase(self, request: EraseRequest) -> EraseResponse:
        """The event log's parts are rewritten off the event loop; requests go on meanwhile."""
        logs = {"event_log": self.flow.event_log} if self.flow.event_log is not None else {}
        result = await asyncio.to_thread(erase_user, request.user_id, self.store, logs)
        for subject in [("user", request.user_id), *(("session", s) for s in result.sessions)]:
            self.flow.cache.drop(shopper_key(subject))  # on the event loop, like every other use of the cache
        return result


def build_app(config: ServeConfig) -> serve.Application:
    """The application; the tokens and the pseudonyms' key are read here, from this process's environment (Ray's workers
    may not share it), and without a key set, one random key is made here for every replica of this server's life."""
    raw = config.model_dump(mode="json")
    tokens = read_tokens(config.admin)
    pseudonyms = Pseudonyms.from_environment(config.privacy) if config.audit.enabled else None
    actor = {"num_cpus": config.cpus_per_replica}
    ingress = Ingress.options(
        num_replicas=config.ingress_replicas, ray_actor_options=actor, max_ongoing_requests=256, logging_config=QUIET_LOGS
    )
    if config.topology == "single":
        return ingress.bind(raw, tokens, pseudonyms)
    # @serve.batch never forms batches larger than the deployment's max_ongoing_requests (measured with Ray 2.60).
    ongoing = max(config.ranking.max_batch_size, 64)
    retrieval = RetrievalDeployment.options(
        num_replicas=config.retrieval_replicas, ray_actor_options=actor, max_ongoing_requests=64, logging_config=QUIET_LOGS
    ).bind(raw)
    ranking = RankingDeployment.options(
        num_replicas=config.ranking_replicas, ray_actor_options=actor, max_ongoing_requests=ongoing, logging_config=QUIET_LOGS
    ).bind(raw)
    return ingress.bind(raw, tokens, pseudonyms, retrieval, ranking)
