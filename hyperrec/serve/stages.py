"""The two model stages of serving, per registry version, runnable in process or inside a Ray Serve replica.

Each stage keeps every version it was asked to load (the current one and the last-good one it
may fall back to) and can be told to fail or stall on purpose (`Faults`), so that fallbacks are
tested the way they happen: a stage really raising or really overrunning its budget.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from hyperrec.bundle.onnx_models import Scorer
from hyperrec.bundle.placements import Placement
from hyperrec.bundle.retrieval import Candidates, Retrieval
from hyperrec.bundle.user_state import UserState
from hyperrec.models.item_index import single_threaded
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig

KEEP_VERSIONS = 3  # current, last-good, and one being swapped in


class InjectedFault(RuntimeError):
    """Raised by a stage told to fail (fault injection)."""


@dataclass
class Fault:
    mode: str = "none"  # none | error | delay
    delay_ms: float = 0.0
    version: str | None = None  # None = every version


class Faults:
    def __init__(self) -> None:
        self.fault = Fault()

    def set(self, mode: str, delay_ms: float = 0.0, version: str | None = None) -> None:
        self.fault = Fault(mode, delay_ms, version)

    async def check(self, stage: str, version: str) -> None:
        f = self.fault
        if f.mode == "none" or (f.version is not None and f.version != version):
            return
        if f.mode == "error":
            raise InjectedFault(f"{stage} {version}: injected failure")
        await asyncio.sleep(f.delay_ms / 1000)


class _Versioned:
    def __init__(self, registry: Registry, config: ServeConfig):
        self.registry, self.config = registry, config
        self.models: dict[str, object] = {}
        self.faults = Faults()

    def load(self, version: str) -> None:
        """Load (or mark as just used) a version; the least recently loaded go beyond KEEP_VERSIONS."""
        self.models[version] = self.models.pop(version) if version in self.models else self._load(version)
        while len(self.models) > KEEP_VERSIONS:
            self.models.pop(next(iter(self.models)))

    def _load(self, version: str) -> object:
        raise NotImplementedError

    def get(self, version: str):
        """The loaded model of a version; a replica Ray restarted (or added) loads it on first use."""
        if version not in self.models:
            self.load(version)
        return self.models[version]


class RetrievalStage(_Versioned):
    def _load(self, version: str) -> Retrieval:
        single_threaded()
        return self.registry.bundle(version).retrieval(self.config.retrieval, self.config.ranking)

    async def candidates(
        self,
        version: str,
        states: list[UserState],
        context: dict[str, np.ndarray],
        blocked: np.ndarray,
        prices: dict[int, float],
        placements: list[Placement],
    ) -> list[Candidates]:
        await self.faults.check("retrieval", version)
        return self.candidates_now(version, states, context, blocked, prices, placements)

    def candidates_now(
        self,
        version: str,
        states: list[UserState],
        context: dict[str, np.ndarray],
        blocked: np.ndarray,
        prices: dict[int, float],
        placements: list[Placement],
    ) -> list[Candidates]:
        """The model work of `candidates`, on the calling thread (no fault check)."""
        # OpenMP's thread count is a per-thread setting: set it on the thread that searches, not only
        # the one that loaded the index. A FAISS search with the default team (one thread per core)
        # took 5-36 ms p50 on two loaded cores, 0.08 ms with one thread.
        single_threaded()
        return self.get(version).candidates(states, context, blocked, prices, placements)


class RankingStage(_Versioned):
    def _load(self, version: str) -> Scorer:
        return self.registry.bundle(version).scorer(self.config.ranking)

    def score_many(self, version: str, features: list[np.ndarray]) -> list[np.ndarray]:
        """Score several requests' candidates in one model call: one score array per request."""
        if not features:
            return []
        sizes = np.cumsum([len(f) for f in features])[:-1]
        return np.split(np.asarray(self.get(version)(np.concatenate(features))), sizes)
