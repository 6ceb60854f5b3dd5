"""Canary releases and the CTR bound, in process on the exported bundle: a canary whose answers shoppers click far
less than the current version's is ended by the monitors; one as good is promoted after its answers; a swapped-in
version far worse than the last-good one on CTR is rolled back. Shoppers click the top item of an answer with a
probability that depends on the version that answered (the label the monitors learn from)."""

import asyncio
import random
import shutil
from datetime import UTC, datetime

import pytest

from hyperrec.registry import Registry
from hyperrec.serve.audit import read_model_events
from hyperrec.serve.flow import RecommendFlow
from hyperrec.serve.schemas import RecommendRequest
from tests.serve.test_flow import make_flow

MONITORS = {"check_every": 20, "min_exposures": 100, "quality": {"mature_s": 0}}


@pytest.fixture(scope="module")
def copy(exported) -> str:
    """Another registry version with the same models (nothing the drift monitors see differs)."""
    registry = Registry(exported.path.parent)
    version, staging = registry.stage()
    shutil.copytree(exported.path, staging, dirs_exist_ok=True)
    registry.commit(version, staging, registry.manifest(exported.version))
    return version


def click(user: str, item_id: str) -> dict:
    now = datetime.now(UTC).isoformat()
    return {"event_type": "click", "user_id": user, "session_id": f"s-{user}", "item_id": item_id, "timestamp": now}


async def shop(flow: RecommendFlow, answers: int, click_p: dict[str, float], seed: int, until=lambda: False) -> list[str]:
    """`answers` requests of the bundle's shoppers in turn; each clicks the top item with its version's probability."""
    rng = random.Random(seed)
    users = sorted(flow.registry.bundle(flow.current).user_baskets())
    served = []
    for i in range(answers):
        user = users[i % len(users)]
        answer = await flow.recommend(RecommendRequest(user_id=user, k=10))
        served.append(answer.model_version)
        if rng.random() < click_p.get(answer.model_version, 0.0):
            assert flow.ingest([click(user, answer.items[0].item_id)]).accepted == 1
        if until():
            break
    while flow._checks:
        await asyncio.sleep(0.01)
    return served


def test_a_canary_clicked_far_less_is_ended_by_the_monitors(exported, copy, tmp_path):
    flow = make_flow(exported, tmp_path, monitors=MONITORS, canary={"min_exposures": 400})

    async def drill() -> list[str]:
        await flow.start_canary(copy, share=0.5)
        return await shop(flow, 1_500, {exported.version: 0.6, copy: 0.1}, seed=0, until=lambda: flow.canary is None)

    served = asyncio.run(drill())
    assert copy in served and exported.version in served
    outcome = flow.canary_outcome
    assert outcome is not None and (outcome.version, outcome.outcome) == (copy, "rolled back")
    assert outcome.reasons[0].startswith("CTR ") and f"of {exported.version}'s" in outcome.reasons[0]
    assert flow.canary is None and flow.current == exported.version and flow.rolled_back is None
    after = asyncio.run(shop(flow, 50, {}, seed=1))
    assert set(after) == {exported.version}
    flow.close()
    ended = list(read_model_events(flow.config.audit_folder()))[-1]
    assert (ended.kind, ended.to_version) == ("canary_rolled_back", copy) and ended.reasons == outcome.reasons


def test_a_canary_as_good_as_the_current_version_is_promoted(exported, copy, tmp_path):
    flow = make_flow(exported, tmp_path, monitors=MONITORS, canary={"min_exposures": 200})

    async def drill() -> list[str]:
        await flow.start_canary(copy, share=0.5)
        return await shop(flow, 1_500, {exported.version: 0.9, copy: 0.9}, seed=2, until=lambda: flow.canary is None)

    served = asyncio.run(drill())
    outcome = flow.canary_outcome
    assert outcome is not None and (outcome.version, outcome.outcome) == (copy, "promoted"), outcome
    assert (flow.current, flow.last_good) == (copy, exported.version)
    assert served.count(copy) >= 200  # promoted only after its answers
    assert set(asyncio.run(shop(flow, 50, {}, seed=3))) == {copy}  # every shopper on it now
    flow.close()
    events = [(e.kind, e.from_version, e.to_version) for e in read_model_events(flow.config.audit_folder())]
    assert events == [
        ("start", None, exported.version),
        ("canary_started", exported.version, copy),
        ("canary_promoted", exported.version, copy),
    ]


def test_a_version_clicked_far_less_than_the_last_good_one_is_rolled_back(exported, copy, tmp_path):
    flow = make_flow(exported, tmp_path, monitors=MONITORS)

    async def drill() -> list[str]:
        await shop(flow, 300, {exported.version: 0.6}, seed=4)
        await flow.swap(copy)
        return await shop(flow, 1_000, {exported.version: 0.6, copy: 0.1}, seed=5, until=lambda: flow.rolled_back is not None)

    served = asyncio.run(drill())
    assert flow.rolled_back is not None and flow.rolled_back.from_version == copy
    assert flow.rolled_back.reasons[0].startswith("CTR ")
    assert flow.current == exported.version
    assert served.count(copy) <= 400  # within the evidence it needs: 100 of its exposures, checks every 20 answers
