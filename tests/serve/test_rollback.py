"""The rollback drill: a deliberately broken version (a ranker that lost its feature scaling) deployed under
traffic is rolled back by the monitors by itself, within a stated number of requests; the good version is not.

(Shuffled item vectors, the issue's example, change nothing the monitors see on this tiny catalogue:
its retrieval hands the ranker nearly the whole catalogue either way. benchmarks/rollback_drill.py
runs that drill on a real bundle.)"""

import asyncio
import shutil

import onnx
import pytest
from onnx import numpy_helper
from prometheus_client.parser import text_string_to_metric_families

from hyperrec.bundle import manifest as files
from hyperrec.registry import Registry
from hyperrec.serve.audit import read_model_events, read_records, verify
from hyperrec.serve.flow import RecommendFlow
from hyperrec.serve.schemas import RecommendRequest, RecommendResponse
from tests.serve.test_flow import make_flow

CHECK_EVERY = 50
MIN_ROWS = 2_000


@pytest.fixture(scope="module")
def broken(exported) -> str:
    """A copy of the exported version whose ranker lost its feature scaling (the stored standard deviations
    a tenth of the true ones, a classic export bug): it still answers, ranked by the wrong scores."""
    registry = Registry(exported.path.parent)
    version, staging = registry.stage()
    shutil.copytree(exported.path, staging, dirs_exist_ok=True)
    ranker = onnx.load(staging / files.RANKER)
    [std] = [init for init in ranker.graph.initializer if init.name == "std"]
    std.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(std) / 10, "std"))
    onnx.save(ranker, staging / files.RANKER)
    registry.commit(version, staging, registry.manifest(exported.version))
    return version


async def traffic(flow: RecommendFlow, users: list[str], n: int) -> list[RecommendResponse]:
    return [await flow.recommend(RecommendRequest(user_id=users[i % len(users)], k=10)) for i in range(n)]


def rollbacks(flow: RecommendFlow, version: str) -> float:
    for family in text_string_to_metric_families(flow.metrics.render().decode()):
        for sample in family.samples:
            if sample.name == "hyperrec_rollbacks_total" and sample.labels["from_version"] == version:
                return sample.value
    return 0.0


def test_a_broken_version_is_rolled_back_by_itself_and_the_good_one_is_not(exported, broken, tmp_path):
    flow = make_flow(exported, tmp_path, monitors={"check_every": CHECK_EVERY, "min_rows": MIN_ROWS})
    users = sorted(flow.registry.bundle(exported.version).user_baskets())

    async def drill() -> tuple[list[RecommendResponse], list[RecommendResponse]]:
        good = await traffic(flow, users, 6 * CHECK_EVERY)
        while flow._checks:  # let the last check finish before deploying
            await asyncio.sleep(0.01)
        await flow.swap(broken)
        return good, await traffic(flow, users, 6 * CHECK_EVERY)

    good, after = asyncio.run(drill())
    assert {a.model_version for a in good} == {exported.version} and sum(a.served_by == "ranker" for a in good) > 0.9 * len(good)
    # the good version's own drift, judged the same way, breaks no bound
    assert flow.monitor.check(exported.version, flow.items[exported.version].drift).broken == []

    assert flow.rolled_back is not None and flow.rolled_back.from_version == broken
    assert flow.rolled_back.to_version == exported.version and flow.rolled_back.reasons[0].startswith("score PSI")
    assert (flow.current, flow.last_good) == (exported.version, exported.version)
    served = [a.model_version for a in after]
    back = served.index(exported.version)
    # rows enough for a verdict after MIN_ROWS / (candidates per answer) answers, a check every CHECK_EVERY answers
    assert back <= 3 * CHECK_EVERY, f"rolled back after {back} answers"
    assert set(served[back:]) == {exported.version}  # and it stays there
    assert rollbacks(flow, broken) == 1
    asyncio.run(flow.swap(broken))  # an admin acts: the note clears
    assert flow.rolled_back is None and flow.current == broken
    flow.close()  # the audit chain holds who changed the version, beside the decisions, and still verifies
    events = [(e.kind, e.from_version, e.to_version) for e in read_model_events(flow.config.audit_folder())]
    assert events == [
        ("start", None, exported.version),
        ("swap", exported.version, broken),
        ("rollback", broken, exported.version),
        ("swap", exported.version, broken),
    ]
    assert next(e for e in read_model_events(flow.config.audit_folder()) if e.kind == "rollback").reasons[0].startswith("score PSI")
    assert verify(flow.config.audit_folder()) is None and len(list(read_records(flow.config.audit_folder()))) == 12 * CHECK_EVERY
