"""The default `single` topology on a real Ray cluster, with the online store in a real Redis."""

import httpx
import pytest

from hyperrec.bundle.store import load
from hyperrec.serve.redis_store import RedisStore
from tests.serve.test_endpoint import NOW, serve_config, some_user


@pytest.fixture(scope="module")
def redis_endpoint(ray_cluster, exported, redis_url, tmp_path_factory):
    from hyperrec.serve.runner import start, stop

    config = serve_config(
        exported, tmp_path_factory.mktemp("serve"), store={"kind": "redis", "redis_url": redis_url, "namespace": "endpoint-test"}
    )
    with httpx.Client(base_url=start(config), timeout=30) as client:
        yield client
    stop()


def test_events_land_in_redis_and_change_the_next_answer(redis_endpoint, exported, redis_url):
    client = redis_endpoint
    item = client.post("/recommend", json={"user_id": "redis-user", "k": 3}).json()["items"][0]["item_id"]
    event = {"event_type": "purchase", "user_id": "redis-user", "session_id": "s", "order_id": "o9", "item_id": item, "timestamp": NOW}
    assert client.post("/events", json=[event]).json()["accepted"] == 1
    answer = client.post("/recommend", json={"user_id": "redis-user", "k": 3}).json()
    assert answer["served_by"] == "ranker" and item in [i["item_id"] for i in answer["items"]]
    stored = RedisStore(redis_url, "endpoint-test").users(["redis-user", some_user(exported)])
    assert stored[0] is not None and stored[0].n_baskets == 1
    # the export's users were seeded into Redis at start: the same baskets as the bundle's
    seeded = load(exported.path).user_baskets()[some_user(exported)]
    assert stored[1] is not None and [b.tolist() for b in stored[1].baskets] == [b.tolist() for b in seeded]
    assert client.get("/readyz").status_code == 200


def test_admin_calls_are_off_without_an_admin_token(redis_endpoint, exported):
    """This server has no admin token in its environment: erasure, like every admin call, is off (404), never open."""
    user = some_user(exported)  # seeded from the bundle at start
    assert redis_endpoint.post("/admin/erase", json={"user_id": user}).status_code == 404
    assert redis_endpoint.post("/recommend", json={"user_id": user, "k": 3}).json()["served_by"] == "ranker"  # not erased
