"""One request, start to end: state -> retrieval -> ranking -> policy, with budgets and fallbacks.

The flow does not know whether its stages run in this process (`LocalStages`: the default
`single` topology, the benchmark's in-process baseline, and tests) or in Ray Serve replicas of
their own (`hyperrec/serve/app.py`): it awaits them through the `Stages` interface. Every stage
call has a time budget. A ranking overrun or error falls back to the last-good version's ranker,
then to popularity; a retrieval or online-store failure to popularity. The response says which
path served it and why, and how long each stage took (`stage_ms`, the server's own timers).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from hyperrec.bundle.cohorts import CohortLists
from hyperrec.bundle.placements import HOME, Placement
from hyperrec.bundle.retrieval import Candidates, context_arrays
from hyperrec.bundle.user_state import UserState
from hyperrec.data.basket_examples import hour_and_weekday
from hyperrec.data.events import events_to_table, frame_to_records, validate_events
from hyperrec.data.offline_store import OfflineStore
from hyperrec.models.item_index import single_threaded
from hyperrec.registry import Registry
from hyperrec.serve.audit import Decision, ModelEventKind, ModelEventRecord, candidate_pool
from hyperrec.serve.audit_writer import AuditWriter
from hyperrec.serve.bandit import SLOT_FEATURES, Explorer
from hyperrec.serve.canary import Canary, CanaryOutcome
from hyperrec.serve.candidate_cache import CandidateCache
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.event_log import GroupCommitLog
from hyperrec.serve.experiments import ServedExperiment
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.monitors import Monitor, Verdict
from hyperrec.serve.online_store import Action, OnlineStore, Subject, shopper_key
from hyperrec.serve.policy import Pick, Policy, popular_picks
from hyperrec.serve.privacy import NO_CONSENT, ConsentSnapshot, Pseudonyms
from hyperrec.serve.schemas import EventsResponse, Exploration, RecommendContext, RecommendRequest, RecommendResponse, SlotCandidate
from hyperrec.serve.stages import RankingStage, RetrievalStage

logger = logging.getLogger(__name__)
REPLAY_CHUNK = 50_000  # events validated and applied at a time when the log is replayed


class Stages(Protocol):
    async def load(self, version: str) -> None: ...

    async def candidates(
        self,
        version: str,
        states: list[UserState],
        context: dict,
        blocked: np.ndarray,
        prices: dict[int, float],
        placements: list[Placement],
    ) -> list[Candidates]: ...

    async def score(self, version: str, features: np.ndarray) -> np.ndarray: ...


class LocalStages:
    """Both stages in this process.

    The model calls run on one worker thread (the default), so that the flow's budget can give up
    on a call that is still running while the event loop goes on serving. That thread sets FAISS's
    OpenMP team to one thread for itself (`single_threaded` is a per-thread setting): with the
    default team a search took 5-36 ms on two loaded cores instead of 0.1 ms, the worker's queue
    grew and the budgets expired (README, "stalls"). `threaded=False` runs them inline on the
    caller's event loop: measured as fast in process, far slower inside a Ray Serve replica (HTTP
    p50 646 ms vs 15 ms at 200 req/s); there a budget bounds only a fault's delay and the time a
    call waits on the loop before it starts (`RecommendFlow._stage` sheds it), not a running call.
    """

    def __init__(self, registry: Registry, config: ServeConfig, threaded: bool = True):
        self.retrieval = RetrievalStage(registry, config)
        self.ranking = RankingStage(registry, config)
        self.threaded = threaded
        # One worker thread: model calls queue there instead of fighting over the cores.
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyperrec-stages", initializer=single_threaded)

    async def _run(self, fn, *args):
        if not self.threaded:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    async def load(self, version: str) -> None:
        await asyncio.to_thread(self.retrieval.load, version)  # not the worker: requests go on meanwhile
        await asyncio.to_thread(self.ranking.load, version)

    async def set_fault(self, stage: str, mode: str, delay_ms: float, version: str | None) -> None:
        (self.retrieval if stage == "retrieval" else self.ranking).faults.set(mode, delay_ms, version)

    async def candidates(self, version, states, context, blocked, prices, placements) -> list[Candidates]:
        await self.retrieval.faults.check("retrieval", version)
        return await self._run(self.retrieval.candidates_now, version, states, context, blocked, prices, placements)

    async def score(self, version: str, features: np.ndarray) -> np.ndarray:
        await self.ranking.faults.check("ranking", version)
        return (await self._run(self.ranking.score_many, version, [features]))[0]

    def close(self) -> None:
        """Stop the worker thread, if one started (after the requests queued on it)."""
        self.worker.shutdown()


class VersionItems:
    """What the flow itself needs of a version: its item table, id lookup and policy."""

    def __init__(self, registry: Registry, version: str, config: ServeConfig, explorer: Explorer):
        bundle = registry.bundle(version)
        self.table = bundle.item_table()
        self.index = {item_id: i for i, item_id in enumerate(self.table.item_ids)}
        self.popular_in_stock = self.table.popular_in_stock()
        self.item_vectors = bundle.item_vectors
        self.policy = Policy(config.policy, self.table, self.item_vectors, explorer)
        self.drift = bundle.drift_reference()
        cohorts = bundle.cohorts()
        self.cohorts = CohortLists({key: listed[self.table.in_stock[listed]] for key, listed in cohorts.lists.items()})
        self.reads_events = "kinds" in bundle.manifest.encoder_inputs  # a multi-behaviour encoder: every event changes it

    def cold_list(self, context: RecommendContext, now: float) -> tuple[np.ndarray, str]:
        """What a shopper with nothing to go on gets in this context: their cohort's list (cohorts.py), else the global one."""
        found = self.cohorts.for_context(context.device, context.channel, int(hour_and_weekday(np.array([now]))[0][0]))
        return found if found is not None else (self.popular_in_stock, "popular right now")


def _last_event(state: UserState) -> tuple[int, ...]:
    """The newest event (time, kind, item) and how many there are: what a multi-behaviour encoder's input changes with."""
    e = state.events
    return (len(e), int(e.times[-1]), int(e.kinds[-1]), int(e.items[-1])) if len(e) else (0,)


class StageFailed(Exception):
    pass


@dataclass(frozen=True)
class RolledBack:
    """The flow left `from_version` by itself for `to_version`, for `reasons` (broken monitor bounds)."""

    from_version: str
    to_version: str
    reasons: list[str]
    at: float  # Unix time

    def describe(self) -> str:
        return f"rolled back from {self.from_version} to {self.to_version}: {'; '.join(self.reasons)}"


class RecommendFlow:
    def __init__(
        self,
        config: ServeConfig,
        store: OnlineStore,
        stages: Stages,
        metrics: ServeMetrics | None = None,
        pseudonyms: Pseudonyms | None = None,
    ):
        """`pseudonyms`: the audit log's key; None = read from this process's environment (a flow in process). An
        endpoint reads it once where the app is built and hands it to every replica, so that all of them write the
        same pseudonym for a shopper, also on a cluster whose workers do not share the server's environment."""
        self.config = config
        self.store = store
        self.stages = stages
        self.registry = Registry(config.registry)
        self.event_log = OfflineStore(config.event_log) if config.event_log is not None else None
        self.log_writer = GroupCommitLog(self.event_log) if self.event_log is not None else None
        self.cache = CandidateCache(config.candidate_cache)
        self.explorer = Explorer(config.policy.explore)  # one for every version: a swap keeps what the slot learned
        self.experiment: ServedExperiment | None = None
        self.arm_versions: dict[str, str] = {}  # experiment arms with a model_version of their own: the version it resolved to
        self.items: dict[str, VersionItems] = {}
        self.current: str | None = None
        self.last_good: str | None = None
        self._swap_lock = asyncio.Lock()
        self.fallback_error: str | None = None
        self.metrics = metrics or ServeMetrics()
        self.audit = (
            AuditWriter(
                config.audit_folder(), config.audit, pseudonyms or Pseudonyms.from_environment(config.privacy), self.metrics.audit_dropped
            )
            if config.audit.enabled
            else None
        )
        self.monitor = Monitor(config.monitors, self.metrics) if config.monitors.enabled else None
        self.rolled_back: RolledBack | None = None  # set by a rollback, cleared by the next swap an admin asks for
        self.canary: Canary | None = None
        self.canary_outcome: CanaryOutcome | None = None  # how the last canary ended, cleared by the next swap or canary
        self._checks: set[asyncio.Task] = set()  # at most one monitor check at a time (referenced until it ends)
        self._store_checks: set[asyncio.Task] = set()  # at most one check that the store still holds the start-up state
        self._next_store_check = 0.0
        self._no_fallback: set[str] = set()  # versions that broke a bound with nothing to roll back to

    # -- models ------------------------------------------------------------------------------

    async def start(self) -> None:
        version = self.registry.resolve(self.config.version)
        fallback = self.registry.last_good()
        await self.swap(version)
        if fallback is not None and fallback != version and self.config.ranking.backend != "triton":
            try:
                await self.stages.load(fallback)
                self.items[fallback] = VersionItems(self.registry, fallback, self.config, self.explorer)
                self.last_good = fallback
            except Exception as exc:  # serve without a fallback model rather than not at all
                self.fallback_error = f"last-good {fallback} not loaded: {type(exc).__name__}: {exc}"[:300]
                logger.warning(self.fallback_error)
        if self.config.experiment is not None:
            await self._start_experiment(self.config.experiment)
        if self.config.store.seed_users:
            self.store.seed(self.registry.bundle(version).user_baskets())
        try:
            self.store.mark_started()
        except Exception as exc:  # unreachable now: the periodic check puts the start-up state in once it answers
            logger.warning("online store: not reachable at start (%s); answers degrade until it is", exc)
        if self.config.store.kind == "memory" and self.config.store.replay_event_log and self.event_log is not None:
            started = time.perf_counter()
            if replayed := self.replay():  # the events acknowledged before a restart or a crash
                logger.info(
                    "online store: %d events replayed from %s in %.1f s", replayed, self.config.event_log, time.perf_counter() - started
                )
        # The bundles and the seeded histories live as long as the server: out of the collector's
        # way, a full collection no longer walks them (a pause of its own in the middle of a request).
        gc.collect()
        gc.freeze()

    async def _start_experiment(self, path: Path) -> None:
        """Load the experiment's arms and the versions they serve (they stay loaded while it runs)."""
        experiment = ServedExperiment.load(path, self.config.policy)
        for name, arm in experiment.arms.items():
            if arm.model_version is None:
                continue
            version = self.registry.resolve(arm.model_version)
            if version not in self.items:
                self.items[version] = await self._load_items(version)
                await self.stages.load(version)
            self.arm_versions[name] = version
        self.experiment = experiment

    @property
    def explorers(self) -> list[Explorer]:
        """Every exploration slot that may wait for a reward: the endpoint's own and each experiment arm's."""
        arms = [arm.explorer for arm in self.experiment.arms.values()] if self.experiment is not None else []
        return [self.explorer, *arms]

    async def swap(self, spec: str) -> str:
        """Load a version into every stage, then switch to it; requests in flight finish on the old one. A canary ends."""
        self.rolled_back, self.canary, self.canary_outcome = None, None, None  # an admin acted
        before = self.current
        version = await self._switch(spec)
        if version != before:
            self._model_event("start" if before is None else "swap", before, version, [])
        return version

    def _model_event(self, kind: ModelEventKind, from_version: str | None, to_version: str, reasons: list[str]) -> None:
        """A change of what is served, into the audit chain beside the decisions it explains."""
        if self.audit is not None:
            event = ModelEventRecord(time=datetime.now(UTC), kind=kind, from_version=from_version, to_version=to_version, reasons=reasons)
            self.audit.put(event)

    async def start_canary(self, spec: str, share: float | None = None) -> Canary:
        """Load a version beside the current one and let it answer `share` of the shoppers (see serve/canary.py)."""
        async with self._swap_lock:
            version = self.registry.resolve(spec)
            if version == self.current:
                raise ValueError(f"{version} is the current version already")
            items = await self._load_items(version)
            await self.stages.load(version)
            self.items[version] = items
            self.canary = Canary(version, share if share is not None else self.config.canary.share)
            self.canary_outcome = None
            self._forget_unused()
        self._model_event("canary_started", self.current, version, [self.canary.describe()])
        logger.warning("canary: %s", self.canary.describe())
        return self.canary

    async def stop_canary(self) -> Canary | None:
        """An admin ends the canary (its shoppers go back to the current version); returns it."""
        async with self._swap_lock:
            canary, self.canary = self.canary, None
            self._forget_unused()
        if canary is not None:
            self._model_event("canary_stopped", self.current, canary.version, ["an admin stopped it"])
        return canary

    async def _load_items(self, version: str) -> VersionItems:
        items = await asyncio.to_thread(VersionItems, self.registry, version, self.config, self.explorer)
        if self.current is not None and not np.array_equal(items.table.item_ids, self.items[self.current].table.item_ids):
            raise ValueError(f"{version} has another catalogue than {self.current}: the online store's item indices would not match")
        return items

    async def _switch(self, spec: str) -> str:
        async with self._swap_lock:
            version = self.registry.resolve(spec)
            if version == self.current:
                return version
            if self.current is not None and self.config.ranking.backend == "triton":
                raise ValueError(
                    "the triton backend serves one version's repository: start Triton on the new version's triton/ "
                    "folder and restart `hyperrec serve --version ...`"
                )
            items = self.items[version] if self.canary is not None and version == self.canary.version else await self._load_items(version)
            await self.stages.load(version)
            self.items[version] = items
            self.last_good, self.current = self.current or self.last_good, version
            if self.canary is not None and self.canary.version == version:
                self.canary = None  # promoted
            self.cache.clear()
            self._forget_unused()
            return version

    def _forget_unused(self) -> None:
        canary = self.canary.version if self.canary is not None else None
        for old in [v for v in self.items if v not in (self.current, self.last_good, canary, *self.arm_versions.values())]:
            del self.items[old]
            if self.monitor is not None:
                self.monitor.forget(old)
            if self.experiment is not None:
                self.experiment.forget(old)

    async def roll_back(self, version: str, reasons: list[str]) -> None:
        """`version` broke a monitored bound: serve the last-good version, and stay there until an admin swaps."""
        async with self._swap_lock:
            target = self.last_good
            if version != self.current or target is None or target == version:
                if version not in self._no_fallback:  # said once per version, not at every check
                    self._no_fallback.add(version)
                    logger.error("monitors: %s broke %s, and there is no last-good version to roll back to", version, "; ".join(reasons))
                return
        await self._switch(target)
        self.last_good = target  # the broken version is no fallback
        if self.canary is not None:  # judged against a version that is gone
            self._end_canary("rolled back", [f"the current version {version} was rolled back"])
        self._forget_unused()
        self.rolled_back = RolledBack(version, target, reasons, time.time())
        self._model_event("rollback", version, target, reasons)
        self.metrics.rollbacks.labels(version).inc()
        logger.error("monitors: %s", self.rolled_back.describe())

    def _after_answer(self, version: str, fell_back: bool) -> None:
        """Count the answer; when a check is due and none runs, judge the version in a thread, then roll back if it broke a bound."""
        if self.monitor is None or not self.monitor.observe_answer(version, fell_back) or self._checks:
            return
        task = asyncio.get_running_loop().create_task(self._check(version))
        self._checks.add(task)
        task.add_done_callback(self._checks.discard)

    async def _check(self, version: str) -> None:
        items = self.items.get(version)
        if self.monitor is None or items is None:
            return
        canary = self.canary if self.canary is not None and self.canary.version == version else None
        baseline = self.current if canary is not None else self.last_good
        try:
            verdict = await asyncio.to_thread(self.monitor.check, version, items.drift, baseline, time.time())
            if canary is not None and canary is self.canary:
                await self._judge_canary(canary, verdict)
            elif verdict.broken and version == self.current and self.config.monitors.rollback and self.rolled_back is None:
                await self.roll_back(version, verdict.broken)
        except Exception:  # a monitor must never take the endpoint down
            logger.exception("monitors: the check of %s failed", version)

    async def _judge_canary(self, canary: Canary, verdict: Verdict) -> None:
        """A broken bound ends the canary; enough answers with none broken promote it (when `canary.promote`)."""
        if verdict.broken:
            self._end_canary("rolled back", verdict.broken)
            return
        quality = verdict.quality
        if not self.config.canary.promote or quality is None or quality.exposures < self.config.canary.min_exposures:
            return
        assert self.monitor is not None and self.current is not None  # a check of the canary ran
        base = self.monitor.quality.of(self.current, time.time())
        reasons = [f"{quality.exposures:,} answers with no bound broken (CTR {quality.ctr:.4f}, {self.current}'s {base.ctr:.4f})"]
        await self._switch(canary.version)
        self._end_canary("promoted", reasons, canary)

    def _end_canary(self, outcome: Literal["promoted", "rolled back"], reasons: list[str], canary: Canary | None = None) -> None:
        canary = canary or self.canary
        assert canary is not None
        self.canary = None
        self.canary_outcome = CanaryOutcome(canary.version, outcome, reasons)
        self.metrics.canary_outcomes.labels(canary.version, outcome).inc()
        if outcome == "promoted":  # the canary is current now: it took over from the last-good
            self._model_event("canary_promoted", self.last_good, canary.version, reasons)
        else:
            self._model_event("canary_rolled_back", self.current, canary.version, reasons)
        self._forget_unused()
        (logger.warning if outcome == "promoted" else logger.error)("monitors: %s", self.canary_outcome.describe())

    # -- recommend ---------------------------------------------------------------------------

    async def recommend(self, request: RecommendRequest) -> RecommendResponse:
        started = time.perf_counter()
        subjects = _subjects(request)
        shoppers = [shopper_key(s) for s in subjects]
        degraded: list[str] = []
        fell_back = False  # a stage or the store failed (not a consent choice, nor a shopper with nothing to go on)
        store_down = False  # its read failed: no impression write either (and no log line per request while it is down)
        timer = StageTimer(started)
        try:
            state, subject, consent = self._state(request)
            out_of_stock = np.fromiter(self.store.out_of_stock(), np.int64)
            prices = self.store.prices()
        except Exception as exc:  # the store is down: answer without personal data, as if every consent were withdrawn
            degraded.append(f"online store: {type(exc).__name__}: {exc}"[:300])
            fell_back = store_down = True
            state, out_of_stock, prices, consent = None, np.empty(0, np.int64), {}, NO_CONSENT
            subject = subjects[0]
        # in an experiment only with analytics consent (its logs hold the shopper's pseudonym); else the default answer
        arm = self.experiment.arm_of(request.user_id, request.session_id) if self.experiment is not None and consent.analytics else None
        version = self.arm_versions.get(arm or "") or self._version_for(shoppers[0])
        items = self.items[version]
        arm_policy = self.experiment.policy(arm, version, items.table, items.item_vectors) if self.experiment and arm else None
        policy = arm_policy or items.policy
        excluded = np.array([items.index[i] for i in request.exclude if i in items.index], np.int64)
        placement, unplaced = _placement(request, items, version)
        if unplaced:
            degraded.append(unplaced)
        if consent.known and not consent.personalization:  # a non-personal answer (popularity), saying why
            defaulted = "personalization" in consent.defaulted
            degraded.append(f"consent: personalization {'not given (the default)' if defaulted else 'withdrawn'}")
            state = None
        if state is None and placement.seeded:  # the page itself says what to show: a list for it, with nothing personal
            state = UserState()
        timer.lap("online_store")
        picks: list[Pick] | None = None
        served_by, served_version = "popularity", version
        in_cart = np.fromiter(state.cart, np.int64, len(state.cart)) if state is not None else np.empty(0, np.int64)
        anchor = np.array([placement.anchor] if placement.anchor >= 0 else [], np.int64)
        blocked = np.concatenate([out_of_stock, excluded, in_cart, anchor])  # the cart's items, the page's item: no recommendation
        candidates: Candidates | None = None
        if state is not None and (state.has_signal or placement.seeded):  # else nothing bought, viewed or carted yet
            try:
                candidates, hit = await self._candidates(version, subject, request, placement, state, out_of_stock, prices)
                timer.lap("retrieval")
                if not hit:
                    timer.ms.update(candidates.stage_ms)
                if candidates.note is not None:
                    degraded.append(candidates.note)
                retrieved = candidates
                keep = ~np.isin(retrieved.items, blocked)
                candidates = retrieved.take(keep)
                fallback = self.current if version != self.current else self.last_good  # a canary falls back to the current
                for attempt in dict.fromkeys([version, fallback]):
                    if attempt is None:
                        continue
                    try:
                        scores = (await self._scores(attempt, retrieved))[keep]
                    except StageFailed as failure:
                        degraded.append(str(failure))
                        fell_back = True
                        timer.lap("ranker")
                        continue
                    timer.lap("ranker")
                    if attempt == version and self.monitor is not None:
                        self.monitor.observe_ranking(version, candidates.features, scores)
                    picks = policy.select(candidates, scores, state, request.k)
                    timer.lap("policy")
                    served_by, served_version = ("ranker" if attempt == version else "last_good"), attempt
                    break
            except StageFailed as failure:
                degraded.append(str(failure))
                fell_back = True
                timer.lap("retrieval")
        if picks is None:
            ranked, reason = items.cold_list(request.context, time.time())
            picks = popular_picks(items.table, ranked, blocked, request.k, reason)
        if len(picks) < request.k:
            taken = np.array([p.item for p in picks], np.int64)
            picks += popular_picks(items.table, items.popular_in_stock, np.concatenate([blocked, taken]), request.k - len(picks))
        try:
            if not store_down:
                self.store.add_shown(subject, [p.item for p in picks])
        except Exception as exc:  # a lost impression count must not fail the answer
            logger.warning("online store: impressions of %s %s not recorded: %s", *subject, exc)
        table = items.table
        answer = [
            {
                "item_id": table.item_ids[p.item],
                "score": round(p.score, 6),
                "reason": p.reason,
                "title": table.title[p.item] or None,
                "price": prices.get(p.item, None if np.isnan(table.price[p.item]) else float(table.price[p.item])),
                "sources": p.sources,
            }
            for p in picks
        ]
        trace_id = uuid.uuid4().hex[:16]
        exploration = self._exploration(picks, items, policy, shoppers[0], placement.page, trace_id)
        timer.lap("response")
        response = RecommendResponse(
            user_id=request.user_id,
            session_id=request.session_id,
            placement=placement.page if candidates is None or candidates.note is None else "home",
            items=answer,
            model_version=served_version,
            served_by=served_by,
            degraded=degraded,
            trace_id=trace_id,
            latency_ms=round(1000 * (time.perf_counter() - started), 3),
            stage_ms={name: round(ms, 4) for name, ms in timer.ms.items()},
            exploration=exploration,
            experiment=self.experiment.spec.name if self.experiment is not None else None,
            arm=arm,
        )
        now = time.time()
        if self.audit is not None:
            pool = candidate_pool(candidates) if candidates is not None else None
            self.audit.put(Decision(request, response, pool, consent, now))
        if self.monitor is not None and served_by != "popularity" and consent.analytics:
            self.monitor.quality.expose(shoppers, served_version, [p.item for p in picks], now)
        self._after_answer(version, fell_back)
        self._check_store()
        return response

    def _check_store(self) -> None:
        """Every `store.restart_check_s`, in a thread: a store that lost its start-up state gets it again."""
        every = self.config.store.restart_check_s
        if every is None or self._store_checks or time.monotonic() < self._next_store_check:
            return
        self._next_store_check = time.monotonic() + every
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.restore_if_lost))
        self._store_checks.add(task)
        task.add_done_callback(self._store_checks.discard)

    def restore_if_lost(self) -> bool:
        """Seed the store again and replay the event log into it if it lost what the start put there; returns whether it did.
        Events that arrive meanwhile are applied as usual, and again by the replay if the log has them by then: baskets,
        events and consent are idempotent, a cart line added in that moment may count twice."""
        try:
            if self.store.holds_start():
                return False
            self.store.mark_started()  # first: a check meanwhile finds it in hand
            assert self.current is not None
            seeded = self.store.seed(self.registry.bundle(self.current).user_baskets()) if self.config.store.seed_users else 0
            replayed = self.replay() if self.event_log is not None else 0
        except Exception as exc:  # the store is down: answers say so; the next check tries again
            logger.debug("online store: the start-up state check failed: %s", exc)
            return False
        self.cache.clear()
        logger.warning("online store: lost its start-up state (restarted empty?): %d users seeded, %d events replayed", seeded, replayed)
        return True

    @staticmethod
    def _exploration(picks: list[Pick], items: VersionItems, policy: Policy, shopper: str, page: str, trace_id: str) -> Exploration | None:
        """The exploration slot's draw as the answer states it; the policy's explorer now waits for the shopper's reward."""
        position, draw = next(((p, pick.slot) for p, pick in enumerate(picks) if pick.slot is not None), (None, None))
        if draw is None or position is None:
            return None
        chosen = int(draw.pool[draw.chosen])
        policy.explorer.opened(shopper, page, trace_id, chosen, draw.features[draw.chosen])
        ids = items.table.item_ids
        return Exploration(
            kind=policy.config.explore.kind,
            item_id=ids[chosen],
            position=position,
            propensity=draw.propensity,
            feature_names=list(SLOT_FEATURES),
            pool=[
                SlotCandidate(item_id=ids[int(i)], probability=float(p), features=[round(float(f), 6) for f in x])
                for i, p, x in zip(draw.pool, draw.probabilities, draw.features, strict=True)
            ],
        )

    def _version_for(self, shopper: str) -> str:
        """The canary's version for the shoppers it takes, else the current one."""
        assert self.current is not None, "start() first"
        canary = self.canary
        return canary.version if canary is not None and canary.takes(shopper) else self.current

    def _state(self, request: RecommendRequest) -> tuple[UserState | None, Subject, ConsentSnapshot]:
        """The shopper's state and whose it is: the user's (with the session's added when the request names both and
        the store knows both), else the session's; impressions go to the user when there is one. Their consent: the
        newest record per purpose of the user's and the session's, else the configured default."""
        subjects = _subjects(request)
        states = self.store.states(subjects)
        consent = self.config.privacy.consent.snapshot(*(s.consent for s in states if s is not None))
        if len(states) == 2 and states[0] is not None and states[1] is not None:
            return states[0].with_session(states[1]), subjects[0], consent
        return next((s for s in states if s is not None), None), subjects[0], consent

    async def _candidates(
        self,
        version: str,
        subject: Subject,
        request: RecommendRequest,
        placement: Placement,
        state: UserState,
        out_of_stock: np.ndarray,
        prices: dict[int, float],
    ) -> tuple[Candidates, bool]:
        """The shopper's candidates, and whether they came from the cache."""
        now = time.time()
        context = context_arrays([request.context.model_dump()], np.array([now]))
        last = state.baskets[-1] if state.baskets else np.empty(0, np.int64)
        key = (
            version,
            state.n_baskets,
            len(last),
            int(last[-1]) if len(last) else -1,
            int(context["device"][0]),
            int(context["hour"][0]),
            int(context["weekday"][0]),
            state.live_items().tobytes(),
            _last_event(state) if self.items[version].reads_events else (),
            placement.key,
            tuple(state.cart) if placement.page == "cart" else (),
        )
        shopper = shopper_key(subject)
        cached = self.cache.get(shopper, key, state)
        if cached is not None:
            return cached, True
        call = self.stages.candidates(version, [state], context, out_of_stock, prices, [placement])
        candidates = (await self._stage(call, self.config.budgets.retrieval_ms, f"retrieval {version}"))[0]
        self.cache.put(shopper, key, candidates, state)
        return candidates, False

    async def _scores(self, version: str, candidates: Candidates) -> np.ndarray:
        """`version`'s ranker scores of `candidates`, kept with them: a candidate-cache hit has the same features, so the
        ranker (a function of them alone) is not run again."""
        scores = candidates.scores.get(version)
        if scores is None:
            call = self.stages.score(version, candidates.features)
            scores = candidates.scores[version] = await self._stage(call, self.config.budgets.ranking_ms, f"ranking {version}")
        return scores

    @staticmethod
    async def _stage(call: Any, budget_ms: float, name: str) -> Any:
        try:
            return await asyncio.wait_for(_awaited(call, time.perf_counter() + budget_ms / 1000), budget_ms / 1000)
        except TimeoutError:
            raise StageFailed(f"{name}: over its {budget_ms:g} ms budget") from None
        except Exception as exc:  # a failing stage degrades the answer, it never fails the request
            cause = getattr(exc, "cause", None) or exc  # a Ray task error wraps the stage's own exception
            raise StageFailed(f"{name}: {type(cause).__name__}: {cause}".splitlines()[0][:300]) from None

    def close(self) -> None:
        """Write the audit records still queued (server stop); the stages are their owner's to close."""
        if self.audit is not None:
            self.audit.close()

    # -- events ------------------------------------------------------------------------------

    def ingest(self, records: list[Any]) -> EventsResponse:
        """Validate against the contract, append the accepted events to the log, then update the online store.

        Safe to call from several threads at once (the endpoint runs it off its event loop): their log writes
        are shared (GroupCommitLog), the stores and the candidate cache take their own locks.

        Every accepted event goes to the log, a consenting shopper's or not: it is the shop's record of what happened
        (erasure deletes from it). Personalization consent only decides what the online store keeps for answers: a
        withdrawal drops the shopper's state and cached candidates, and their later behaviour is not stored there.
        """
        report = validate_events(records)
        if report.accepted and self.log_writer is not None:
            self.log_writer.append(events_to_table(report.accepted))  # on disk before anything else sees them
        arrived = time.time()
        unknown = self._apply(report.accepted, arrived)
        if self.monitor is not None and report.accepted:
            self.monitor.observe_events(np.array([arrived - e.timestamp.timestamp() for e in report.accepted]), unknown)
        rejected = [{"index": r.index, "reason": r.reason} for r in report.rejected]
        return EventsResponse(accepted=len(report.accepted), rejected=rejected, unknown_items=unknown)

    def replay(self) -> int:
        """Rebuild the online state from the event log (a memory store starts empty); returns the events applied."""
        assert self.event_log is not None
        events = self.event_log.read()
        for start in range(0, len(events), REPLAY_CHUNK):
            self._apply(validate_events(frame_to_records(events.iloc[start : start + REPLAY_CHUNK])).accepted)
        return len(events)

    def _apply(self, accepted: list[Any], arrived: float = float("-inf")) -> int:
        """Accepted events into the online store and the candidate cache (and, arrived at `arrived`, the online-quality
        labels: a replayed event labels nothing); returns how many name an unknown item."""
        index = self.items[self.current].index if self.current else {}
        unknown = 0
        actions: list[Action] = []
        explorers = self.explorers
        for event in accepted:
            item_id = getattr(event, "item_id", None)
            item = index.get(item_id) if item_id is not None else -1
            if item is None:
                unknown += 1
                continue
            kind = event.event_type
            if kind == "stock_change":
                self.store.set_stock(item, event.stock)
                if event.stock <= 0:
                    self.cache.invalidate_item(item)
                else:  # back in stock: it may belong in anyone's candidates, cached ones were retrieved without it
                    self.cache.clear()  # (an item the catalogue itself lists as out of stock stays out until the next export)
            elif kind == "price_change":
                self.store.set_price(item, event.price)
                self.cache.invalidate_item(item)
            else:  # every user event, identify and consent: the shoppers' online state
                action = Action.of(event, item)
                actions.append(action)
                if item >= 0 and arrived > float("-inf"):  # a delayed label of an answer that showed the item (not a replayed one)
                    keys = [shopper_key(s) for s in action.subjects()]
                    if self.monitor is not None:
                        self.monitor.quality.label(keys, kind, item, arrived)
                    for explorer in explorers:
                        explorer.rewarded(keys, kind, item, float(getattr(event, "price", 0.0) or 0.0) * action.quantity)
                if kind == "consent" and event.purpose == "personalization" and not event.granted:
                    for subject in action.subjects():
                        self.cache.drop(shopper_key(subject))
        self.store.apply(sorted(actions, key=lambda a: a.time_us))  # a batch in time order (stable), as export orders the log
        return unknown


class StageTimer:
    """Milliseconds per stage of one request, each lap from the end of the previous one."""

    def __init__(self, started: float):
        self.last = started
        self.ms: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.ms[stage] = self.ms.get(stage, 0.0) + 1000 * (now - self.last)
        self.last = now


def _subjects(request: RecommendRequest) -> list[Subject]:
    """The user, then the session, of those the request names."""
    named: list[Subject] = [("user", request.user_id), ("session", request.session_id)]
    return [(kind, name) for kind, name in named if name is not None]


async def _awaited(call: Any, deadline: float) -> Any:
    """Await a stage call, unless it waited on a busy event loop past its budget before it could start:
    then it is shed (a TimeoutError, as if it had overrun) and its model work is never done."""
    if time.perf_counter() > deadline:
        if hasattr(call, "close"):
            call.close()  # a coroutine never started: no "never awaited" warning
        raise TimeoutError
    return await call


def _placement(request: RecommendRequest, items: VersionItems, version: str) -> tuple[Placement, str | None]:
    """The request's placement in item indices, or home and why when its page item is one the version does not know."""
    page = request.page
    if page == "product":
        assert request.item_id is not None  # the request's own validation
        anchor = items.index.get(request.item_id)
        if anchor is None:
            return HOME, f"product page: {request.item_id} is not in {version}'s catalogue; the home list"
        return Placement("product", anchor=anchor), None
    if page == "search":
        return Placement("search", query=request.query or ""), None
    return Placement(page), None
