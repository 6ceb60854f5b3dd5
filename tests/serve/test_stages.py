"""The model stages: versions loaded, kept (KEEP_VERSIONS) and reloaded on demand; batched scoring;
fault injection that really raises or really stalls, for one version or all."""

import asyncio
import shutil
import time

import numpy as np
import pytest

from hyperrec.bundle.placements import HOME
from hyperrec.bundle.retrieval import context_arrays
from hyperrec.bundle.user_state import UserState
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.stages import KEEP_VERSIONS, InjectedFault, RankingStage, RetrievalStage

VERSIONS = ["v0001", "v0002", "v0003", "v0004"]


@pytest.fixture(scope="module")
def registry(exported, tmp_path_factory) -> Registry:
    """A registry of four versions (copies of the exported one, without its Triton repository)."""
    root = tmp_path_factory.mktemp("stages-registry")
    for version in VERSIONS:
        shutil.copytree(exported.path, root / version, ignore=shutil.ignore_patterns("triton"))
    return Registry(root)


def stage_of(kind, registry: Registry):
    return kind(registry, ServeConfig(registry=registry.root, event_log=None))


def features(registry: Registry, n: int, seed: int) -> np.ndarray:
    width = len(registry.manifest(VERSIONS[0]).feature_names)
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def test_a_stage_keeps_the_most_recently_loaded_versions(registry):
    assert KEEP_VERSIONS == 3
    stage = stage_of(RankingStage, registry)
    for version in VERSIONS:
        stage.load(version)
    assert list(stage.models) == ["v0002", "v0003", "v0004"]  # the oldest went
    kept = stage.models["v0002"]
    stage.load("v0002")  # already loaded: marked as just used, not loaded again
    assert list(stage.models) == ["v0003", "v0004", "v0002"] and stage.models["v0002"] is kept
    stage.load("v0001")
    assert list(stage.models) == ["v0004", "v0002", "v0001"]
    scorer = stage.get("v0003")  # a version it no longer holds is loaded on first use (a restarted replica)
    assert list(stage.models) == ["v0002", "v0001", "v0003"] and stage.models["v0003"] is scorer
    x = features(registry, 5, 0)
    np.testing.assert_array_equal(scorer(x), stage.get("v0001")(x))  # copies of one version score alike


def test_score_many_splits_one_model_call_back_into_the_requests(registry):
    stage = stage_of(RankingStage, registry)
    requests = [features(registry, 4, 1), features(registry, 0, 2), features(registry, 7, 3)]
    scores = stage.score_many("v0001", requests)
    assert [len(s) for s in scores] == [4, 0, 7]
    scorer = stage.get("v0001")
    for got, request in zip(scores, requests):
        if len(request):
            np.testing.assert_allclose(got, scorer(request), rtol=0, atol=1e-6)
    assert stage.score_many("v0001", []) == []
    assert [len(s) for s in stage.score_many("v0001", [features(registry, 0, 4)])] == [0]  # every candidate blocked


def user_states(registry: Registry) -> list[UserState]:
    baskets = registry.bundle(VERSIONS[0]).user_baskets()
    return [UserState(baskets[u]) for u in sorted(baskets)[:2]]


def test_retrieval_faults_raise_or_stall_for_the_version_they_name(registry):
    stage = stage_of(RetrievalStage, registry)
    states = user_states(registry)
    context = context_arrays([{}, {}], np.zeros(2))
    blocked = np.empty(0, np.int64)

    def candidates(version: str):
        return asyncio.run(stage.candidates(version, states, context, blocked, {}, [HOME] * len(states)))

    plain = candidates("v0001")
    direct = stage.get("v0001").candidates(states, context, blocked, {})
    assert [c.items.tolist() for c in plain] == [c.items.tolist() for c in direct]
    stage.faults.set("error", version="v0001")
    with pytest.raises(InjectedFault, match="retrieval v0001: injected failure"):
        candidates("v0001")
    assert len(candidates("v0002")) == 2  # another version is not affected
    stage.faults.set("error")  # every version
    with pytest.raises(InjectedFault):
        candidates("v0002")
    stage.faults.set("delay", delay_ms=300)
    started = time.perf_counter()
    stalled = candidates("v0001")
    assert time.perf_counter() - started >= 0.3
    assert [c.items.tolist() for c in stalled] == [c.items.tolist() for c in plain]  # late, but the same answer
    stage.faults.set("none")
    started = time.perf_counter()
    candidates("v0001")
    assert time.perf_counter() - started < 0.3


def test_ranking_fault_checks_use_the_stage_name(registry):
    stage = stage_of(RankingStage, registry)
    stage.faults.set("error", version="v0002")
    asyncio.run(stage.faults.check("ranking", "v0001"))  # not the faulty version: no error
    with pytest.raises(InjectedFault, match="ranking v0002"):
        asyncio.run(stage.faults.check("ranking", "v0002"))
