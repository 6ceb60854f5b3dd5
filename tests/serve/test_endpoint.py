"""The HTTP endpoint end to end on the session's real Ray cluster (Ray Serve, direct ingress).

The main app runs the `deployments` topology (retrieval and @serve.batch ranking deployments behind
the ingress), so the handle path, batching and fault broadcast are what these tests go through;
test_endpoint_redis.py checks the default `single` topology with the Redis-backed online store.
"""

import io
import os
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pandas as pd
import pytest
from rich.console import Console

from hyperrec.bench.loadgen import http_step_in_this_process, recommend_bodies
from hyperrec.bench.monitor_report import run_monitor
from hyperrec.export.run import ExportConfig, export_run
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from tests.conftest import SERVE_PORT

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC).isoformat()
ADMIN_ENV, CATALOG_ENV = "HYPERREC_TEST_ADMIN_TOKEN", "HYPERREC_TEST_CATALOG_TOKEN"
ID_KEY_ENV, ID_KEY = "HYPERREC_TEST_ID_KEY", "id-key-0123456789abcdef"
ADMIN = {"Authorization": "Bearer admin-token-0123456789abcdef"}
CATALOG = {"Authorization": "Bearer catalog-token-0123456789abcdef"}


def serve_config(exported, tmp_path, **settings) -> ServeConfig:
    base = {
        "registry": str(exported.path.parent),
        "version": exported.version,
        "port": SERVE_PORT,
        "event_log": str(tmp_path / "log"),
        "fault_injection": True,
        "budgets": {"ranking_ms": 300, "retrieval_ms": 300},
        "admin": {"token_env": ADMIN_ENV, "catalog_token_env": CATALOG_ENV},
        "privacy": {"id_key_env": ID_KEY_ENV},
        # checks often and labels counted at once, for the monitor report; no rollback amid the fault tests
        "monitors": {"check_every": 10, "min_rows": 100, "quality": {"mature_s": 0}, "rollback": False},
    }
    return ServeConfig.model_validate(base | settings)


@pytest.fixture(scope="module")
def endpoint_config(exported, tmp_path_factory) -> ServeConfig:
    ranking = {"max_batch_size": 8, "batch_wait_ms": 2}
    return serve_config(exported, tmp_path_factory.mktemp("serve"), topology="deployments", ranking=ranking)


@pytest.fixture(scope="module")
def endpoint(ray_cluster, endpoint_config):
    """The app with both tokens and the pseudonyms' key: they are read from the environment when it starts, and only
    then (the session's Ray cluster, started before, never had them in its workers' environment)."""
    from hyperrec.serve.runner import start, stop

    config = endpoint_config
    secrets = {ADMIN_ENV: ADMIN["Authorization"].split()[1], CATALOG_ENV: CATALOG["Authorization"].split()[1], ID_KEY_ENV: ID_KEY}
    os.environ.update(secrets)
    try:
        url = start(config)
    finally:
        for name in secrets:
            del os.environ[name]
    with httpx.Client(base_url=url, timeout=30) as client:
        yield client
    stop()


@pytest.fixture(scope="module")
def second(exported):
    """A second registry version (same catalogue) to swap to."""
    return export_run(
        Path(exported.manifest.source_run),
        ExportConfig(registry=exported.path.parent, cutoffs=2, ranker={"epochs": 1, "hidden": [8]}, promote=False),
        log=lambda *_: None,
    )


def some_user(exported, position: int = 0) -> str:
    import pandas as pd

    return str(pd.read_parquet(exported.path / "user_baskets.parquet")["user_id"].unique()[position])


def test_recommend_health_metrics_and_docs(endpoint, exported):
    answer = endpoint.post("/recommend", json={"user_id": some_user(exported), "k": 7, "context": {"device": "ios"}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["served_by"] == "ranker" and body["model_version"] == exported.version and len(body["items"]) == 7
    assert {"item_id", "score", "reason"} <= set(body["items"][0]) and body["trace_id"]
    assert endpoint.get("/healthz").json() == {"status": "ok"}
    assert endpoint.get("/readyz").json()["model_version"] == exported.version
    assert 'hyperrec_recommend_requests_total{served_by="ranker"}' in endpoint.get("/metrics").text
    assert "/recommend" in endpoint.get("/openapi.json").json()["paths"]


def test_bad_input_gets_a_4xx_naming_the_field(endpoint):
    bad_json = endpoint.post("/recommend", content=b"{not json", headers={"content-type": "application/json"})
    assert bad_json.status_code == 422
    wrong_type = endpoint.post("/recommend", json={"user_id": "u", "k": "ten"})
    assert wrong_type.status_code == 422 and [p["field"] for p in wrong_type.json()["problems"]] == ["body.k"]
    bad_device = endpoint.post("/recommend", json={"user_id": "u", "context": {"device": "fridge"}})
    assert bad_device.status_code == 422 and [p["field"] for p in bad_device.json()["problems"]] == ["body.context.device"]
    assert endpoint.post("/recommend", json={"k": 3}).status_code == 422
    too_long = endpoint.post("/recommend", json={"user_id": "u", "k": 1000})
    assert too_long.status_code == 422
    assert too_long.json()["problems"] == [{"field": "body.k", "message": "1000 is more than this server's max_k (100)"}]
    oversize = endpoint.post("/events", json=[{"event_type": "view"}] * 1001)
    assert oversize.status_code == 413 and "at most 1000" in oversize.json()["detail"]
    all_bad = endpoint.post("/events", json=[{"event_type": "view"}, {"event_type": "purchase", "user_id": "u"}])
    assert all_bad.status_code == 422 and [p["field"] for p in all_bad.json()["problems"]] == ["body.0", "body.1"]
    assert "timestamp: Field required" in all_bad.json()["problems"][1]["message"]
    assert endpoint.post("/events", json={"not": "a list"}).status_code == 422


def test_placements_answer_over_http_and_bad_placements_get_a_422_naming_the_field(endpoint, exported):
    def problems(body: dict) -> list[str]:
        answer = endpoint.post("/recommend", json={"session_id": "s-placements"} | body)
        assert answer.status_code == 422, answer.text
        return [p["field"] for p in answer.json()["problems"]]

    assert problems({"context": {"page": "checkout"}}) == ["body.context.page"]
    assert problems({"context": {"page": "product"}}) == ["body.item_id"]
    assert problems({"context": {"page": "search"}}) == ["body.query"]
    assert problems({"context": {"page": "search"}, "query": ""}) == ["body.query"]
    assert problems({"context": {"page": "search"}, "query": "   "}) == ["body.query"]
    anchor = Registry(exported.path.parent).bundle(exported.version).item_table().item_ids[0]
    product = endpoint.post("/recommend", json={"session_id": "s-placements", "context": {"page": "product"}, "item_id": anchor, "k": 5})
    assert product.status_code == 200 and product.json()["placement"] == "product" and product.json()["served_by"] == "ranker"
    assert anchor not in [i["item_id"] for i in product.json()["items"]]
    assert all({"bought_with", "similar"} & set(i["sources"]) for i in product.json()["items"])
    rules = endpoint.get("/openapi.json").json()["components"]["schemas"]["RecommendRequest"]["allOf"]
    assert [rule["anyOf"][0]["required"] for rule in rules] == [["item_id"], ["query"]]


def test_the_audit_log_holds_the_pseudonyms_of_the_key_the_server_was_started_with(endpoint, endpoint_config):
    from hyperrec.serve.audit import read_records
    from hyperrec.serve.privacy import Pseudonyms

    user = Registry(endpoint_config.registry).bundle(endpoint_config.version).shopper_ids()[0]
    trace = endpoint.post("/recommend", json={"user_id": user, "k": 5}).json()["trace_id"]
    deadline, records = time.time() + 20, []
    while time.time() < deadline and not records:  # the writer appends off the request path, in batches
        records = [r for r in read_records(endpoint_config.audit_folder()) if r.decision_id == trace]  # torn lines skipped
        time.sleep(0.2)
    assert records and records[0].user == Pseudonyms(ID_KEY.encode()).of(user)


def test_the_bench_session_step_sends_views_then_asks_for_the_session(endpoint, exported):
    users = [some_user(exported, 0), some_user(exported, 1)]
    items = [str(i) for i in Registry(exported.path.parent).bundle(exported.version).item_table().item_ids[:20]]
    step = http_step_in_this_process(str(endpoint.base_url), recommend_bodies(users, 20, k=5), rate=20, seconds=1, view_items=items)
    assert step.target == "http session" and step.sent == 20 and step.errors == 0, step.first_error
    session = endpoint.post("/recommend", json={"session_id": f"bench-{users[0]}", "k": 3}).json()  # the session alone
    assert session["served_by"] == "ranker"  # its views reached the online store


def test_the_openapi_document_carries_the_bounds_the_contract_and_every_error(endpoint):
    doc = endpoint.get("/openapi.json").json()
    assert doc["components"]["schemas"]["RecommendRequest"]["properties"]["k"]["maximum"] == 100
    body = doc["paths"]["/events"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["maxItems"] == 1000 and set(body["items"]["discriminator"]["mapping"]) >= {"view", "purchase", "stock_change"}
    assert set(doc["paths"]["/admin/model"]["post"]["responses"]) == {"200", "400", "401", "403", "404", "409", "422"}
    assert set(doc["paths"]["/admin/erase"]["post"]["responses"]) == {"200", "400", "401", "403", "404", "422"}
    assert doc["paths"]["/admin/erase"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/admin/model"]["post"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/events"]["post"]["security"] == [{"bearer": []}, {}]  # a token only for stock and price events
    assert set(doc["paths"]["/events"]["post"]["responses"]) == {"200", "400", "401", "403", "413", "422"}
    assert "text/plain" in doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]


def test_unknown_user_and_events_that_change_the_next_answer(endpoint, exported):
    cold = endpoint.post("/recommend", json={"user_id": "brand-new", "k": 5}).json()
    assert cold["served_by"] == "popularity" and len(cold["items"]) == 5
    bought = cold["items"][-1]["item_id"]
    event = {"event_type": "purchase", "user_id": "brand-new", "session_id": "s1", "order_id": "o1", "item_id": bought, "timestamp": NOW}
    assert endpoint.post("/events", json=[event]).json() == {"accepted": 1, "rejected": [], "unknown_items": 0}
    warm = endpoint.post("/recommend", json={"user_id": "brand-new", "k": 5}).json()
    assert warm["served_by"] == "ranker"
    assert bought in [i["item_id"] for i in warm["items"] if i["reason"] == "you bought this before"]
    sold_out = {"event_type": "stock_change", "item_id": bought, "stock": 0, "timestamp": NOW}
    assert endpoint.post("/events", json=[sold_out], headers=CATALOG).status_code == 200
    assert bought not in [i["item_id"] for i in endpoint.post("/recommend", json={"user_id": "brand-new", "k": 20}).json()["items"]]


def test_ranking_failure_and_timeout_fall_back_and_say_so(endpoint, exported):
    user = some_user(exported)
    try:
        assert endpoint.post("/admin/faults", json={"stage": "ranking", "mode": "error"}, headers=ADMIN).status_code == 200
        # each on a device of its own: a candidate-cache miss (a hit reuses the scores it was served with, no ranker call)
        failed = endpoint.post("/recommend", json={"user_id": user, "k": 5, "context": {"device": "ios"}}).json()
        assert failed["served_by"] == "popularity" and "injected failure" in failed["degraded"][0] and len(failed["items"]) == 5
        endpoint.post("/admin/faults", json={"stage": "ranking", "mode": "delay", "delay_ms": 2000}, headers=ADMIN)
        slow = endpoint.post("/recommend", json={"user_id": user, "k": 5, "context": {"device": "android"}}).json()
        assert slow["served_by"] == "popularity" and "budget" in slow["degraded"][0]
    finally:
        endpoint.post("/admin/faults", json={"stage": "ranking", "mode": "none"}, headers=ADMIN)
    assert endpoint.post("/recommend", json={"user_id": user, "k": 5}).json()["served_by"] == "ranker"
    assert 'hyperrec_recommend_requests_total{served_by="popularity"}' in endpoint.get("/metrics").text


def test_hot_swap_under_load_fails_no_request(endpoint, exported, second):
    user = some_user(exported)
    statuses, versions, stop = [], set(), threading.Event()

    def load() -> None:
        with httpx.Client(base_url=str(endpoint.base_url), timeout=30) as client:
            while not stop.is_set():
                response = client.post("/recommend", json={"user_id": user, "k": 5})
                statuses.append(response.status_code)
                versions.add(response.json().get("model_version"))
                time.sleep(0.01)

    workers = [threading.Thread(target=load) for _ in range(3)]
    for w in workers:
        w.start()
    time.sleep(0.5)
    swapped = endpoint.post("/admin/model", json={"version": second.version}, headers=ADMIN)
    deadline = time.monotonic() + 20  # until the load has seen the new version (a busy machine answers slowly)
    while second.version not in versions and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for w in workers:
        w.join()
    assert swapped.status_code == 200 and swapped.json() == {"model_version": second.version, "last_good": exported.version}
    assert statuses and set(statuses) == {200}
    assert versions == {exported.version, second.version}
    assert endpoint.post("/admin/model", json={"version": "v0999"}, headers=ADMIN).status_code == 409
    assert endpoint.post("/admin/model", json={"version": exported.version}, headers=ADMIN).status_code == 200


def test_admin_calls_need_the_admin_token_and_do_nothing_without_it(endpoint, exported, second):
    swap = {"version": second.version}
    missing = endpoint.post("/admin/model", json=swap)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert endpoint.post("/admin/model", json=swap, headers={"Authorization": "Basic YWRtaW46YWRtaW4="}).status_code == 401
    assert endpoint.post("/admin/model", json=swap, headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    assert endpoint.post("/admin/model", json=swap, headers=CATALOG).status_code == 403  # the catalog token is not an admin token
    assert endpoint.post("/admin/model", json={"not": "a swap"}).status_code == 401  # the token is checked before the body
    assert endpoint.post("/admin/faults", json={"stage": "ranking", "mode": "error"}, headers=CATALOG).status_code == 403
    assert endpoint.get("/readyz").json()["model_version"] == exported.version  # not swapped
    user = some_user(exported)
    assert endpoint.post("/recommend", json={"user_id": user, "k": 5}).json()["served_by"] == "ranker"  # no fault set


def test_erasure_needs_the_admin_token_and_then_deletes_the_shopper(endpoint):
    user, recommend = "erase-me", {"user_id": "erase-me", "k": 3}
    item = endpoint.post("/recommend", json=recommend).json()["items"][0]["item_id"]
    view = {"event_type": "view", "user_id": user, "session_id": "erase-visit", "item_id": item, "timestamp": NOW}
    assert endpoint.post("/events", json=[view]).json()["accepted"] == 1
    assert endpoint.post("/recommend", json=recommend).json()["served_by"] == "ranker"
    body = {"user_id": user}
    missing = endpoint.post("/admin/erase", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert endpoint.post("/admin/erase", json=body, headers={"Authorization": "Bearer not-the-token"}).status_code == 403
    assert endpoint.post("/admin/erase", json=body, headers=CATALOG).status_code == 403
    assert endpoint.post("/recommend", json=recommend).json()["served_by"] == "ranker"  # nothing was deleted
    assert endpoint.post("/admin/erase", json={"user_id": ""}, headers=ADMIN).status_code == 422
    erased = endpoint.post("/admin/erase", json=body, headers=ADMIN)
    assert erased.status_code == 200
    assert erased.json() == {"user_id": user, "sessions": ["erase-visit"], "removed": {"online_store": 2, "event_log": 1}}
    assert endpoint.post("/recommend", json=recommend).json()["served_by"] == "popularity"


def test_stock_and_price_events_need_a_token_and_are_not_taken_without_one(endpoint, exported):
    user = some_user(exported, -1)  # one the other tests have not shown items to (frequency caps would change the answer)
    shown = [i["item_id"] for i in endpoint.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]]
    view = {"event_type": "view", "user_id": user, "session_id": "s9", "item_id": shown[1], "timestamp": NOW}
    sold_out = {"event_type": "stock_change", "item_id": shown[0], "stock": 0, "timestamp": NOW}
    assert endpoint.post("/events", json=[view, sold_out]).status_code == 401
    assert endpoint.post("/events", json=[view, sold_out], headers={"Authorization": "Bearer wrong"}).status_code == 403
    after = [i["item_id"] for i in endpoint.post("/recommend", json={"user_id": user, "k": 5}).json()["items"]]
    assert after == shown  # the refused batches changed nothing: neither the stock nor the view (a view changes the answer)
    assert endpoint.post("/events", json=[view]).json()["accepted"] == 1  # shoppers' events need no token
    price = {"event_type": "price_change", "item_id": shown[0], "price": 1.5, "timestamp": NOW}
    assert endpoint.post("/events", json=[price], headers=ADMIN).json()["accepted"] == 1  # the admin token works too
    assert endpoint.post("/events", json=[sold_out], headers=CATALOG).json()["accepted"] == 1
    assert shown[0] not in [i["item_id"] for i in endpoint.post("/recommend", json={"user_id": user, "k": 20}).json()["items"]]
    back = {"event_type": "stock_change", "item_id": shown[0], "stock": 10, "timestamp": NOW}
    assert endpoint.post("/events", json=[back], headers=CATALOG).status_code == 200


def test_a_canary_answers_its_share_of_the_shoppers_sticky_until_an_admin_ends_it(endpoint, exported, second):
    canary = {"version": second.version, "share": 0.5}
    assert endpoint.post("/admin/canary", json=canary).status_code == 401
    assert endpoint.post("/admin/canary", json={"version": exported.version}, headers=ADMIN).status_code == 409  # the current one
    started = endpoint.post("/admin/canary", json=canary, headers=ADMIN)
    assert started.status_code == 200 and started.json()["version"] == second.version
    assert endpoint.get("/readyz").json()["canary"] | {"started": 0} == {"version": second.version, "share": 0.5, "started": 0}
    users = [some_user(exported, i) for i in range(40)]
    served = {u: endpoint.post("/recommend", json={"user_id": u, "k": 5}).json()["model_version"] for u in users}
    assert set(served.values()) == {exported.version, second.version}  # both versions answer (40 shoppers, half each)
    again = {u: endpoint.post("/recommend", json={"user_id": u, "k": 5}).json()["model_version"] for u in users}
    assert again == served  # sticky
    assert endpoint.post("/admin/canary/stop", headers=ADMIN).json()["version"] == second.version
    assert endpoint.post("/admin/canary/stop", headers=ADMIN).status_code == 409
    ready = endpoint.get("/readyz").json()
    assert ready["canary"] is None and ready["model_version"] == exported.version
    assert {endpoint.post("/recommend", json={"user_id": u, "k": 5}).json()["model_version"] for u in users} == {exported.version}


def online_ctr(metrics: str, version: str) -> float:
    line = next((x for x in metrics.splitlines() if x.startswith(f'hyperrec_online_ctr{{version="{version}"}}')), None)
    return float(line.split()[-1]) if line else 0.0


def test_the_monitor_report_reads_the_live_monitors(endpoint, exported, tmp_path):
    user = some_user(exported, 3)
    answer = endpoint.post("/recommend", json={"user_id": user, "session_id": "monitor-s", "k": 5}).json()
    assert answer["served_by"] == "ranker"
    click = {"event_type": "click", "user_id": user, "session_id": "monitor-s", "item_id": answer["items"][0]["item_id"], "timestamp": NOW}
    assert endpoint.post("/events", json=[click]).json()["accepted"] == 1
    current = endpoint.get("/readyz").json()["model_version"]
    deadline = time.time() + 30
    while not online_ctr(endpoint.get("/metrics").text, current):  # a check after the click, off the request path
        assert time.time() < deadline, "no monitor check reported the click"
        endpoint.post("/recommend", json={"user_id": some_user(exported, 4), "k": 5})
    files = run_monitor(str(endpoint.base_url).rstrip("/"), tmp_path, Console(file=io.StringIO()))
    versions = pd.read_csv(tmp_path / "versions.csv", index_col="version")
    assert versions.loc[current, "role"] == "current"
    assert versions.loc[current, "exposures"] >= 1 and 0 < versions.loc[current, "CTR"] <= 1
    drift = pd.read_csv(tmp_path / "drift.csv")
    assert "score" in set(drift["column"]) and (drift["PSI"] >= 0).all()
    assert {f.name for f in files} >= {"versions.csv", "online_quality.png", "drift_psi.png", "event_lag.png"}
