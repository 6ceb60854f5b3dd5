"""`make demo` / `hyperrec demo`: the whole path on the real Instacart sample, from data to an endpoint.

baselines (full ranking) -> a short SASRec run on Ray Train -> export (ONNX + parity, served
ranker, Triton repository, registry) -> the endpoint on Ray Serve -> an example request, an event,
and the answer it changes. The endpoint then stays up until Ctrl-C (`--no-wait`: it stops).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from rich.console import Console

from hyperrec.config import load_config
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import prepare_environment

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BASELINES = CONFIGS / "eval" / "instacart_baselines.yaml"
TRAINING = CONFIGS / "train" / "sasrec_demo.yaml"


def run_demo(console: Console, port: int, wait: bool, registry: Path, overrides: list[str]) -> None:
    serve_config = ServeConfig(registry=registry, port=port)
    prepare_environment(serve_config)  # before Ray starts: the endpoint shares the cluster training starts
    from hyperrec.eval.run import run_eval
    from hyperrec.export.report import print_export
    from hyperrec.export.run import ExportConfig, export_run
    from hyperrec.serve.runner import start, stop, wait_then_stop
    from hyperrec.train.launcher import run_training

    console.rule("1/4 baselines on the real Instacart sample (full ranking, last basket held out)")
    run_eval(load_config(BASELINES, overrides), console)

    console.rule(f"2/4 a short SASRec run on Ray Train ({TRAINING.relative_to(CONFIGS.parent)})")
    config = load_config(TRAINING)
    record = run_training(config)
    run_dir = Path(config.tracking.runs_dir).resolve() / record["run"]
    console.print(f"run {run_dir}: test recall@10 {record['test']['recall@10']:.4f} ({record['wall_seconds']:.0f} s)")

    console.rule("3/4 export: ONNX + parity, the served ranker, Triton repository, registry")
    result = export_run(run_dir, ExportConfig(registry=registry), log=console.print)
    print_export(result, console)

    console.rule("4/4 the endpoint (Ray Serve)")
    url = start(serve_config, handle_signals=wait)  # a supervisor's early SIGTERM stops it cleanly too
    try:
        show_requests(console, url, result.path)
    except BaseException:
        stop()
        raise
    if wait:
        console.print(f"serving at [bold]{url}[/] (API docs: {url}/docs). Ctrl-C or SIGTERM stops.")
        wait_then_stop()
    else:
        stop()


def show_requests(console: Console, url: str, version_dir: Path) -> None:
    from hyperrec.bundle.store import load

    user = next(iter(load(version_dir).user_baskets()))
    body = {"user_id": user, "k": 5, "context": {"device": "web"}}
    with httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/recommend", json=body).json()
        console.print(f"$ curl -s -X POST {url}/recommend -H 'content-type: application/json' -d '{json.dumps(body)}'")
        console.print_json(data=answer)
        new_item = answer["items"][-1]["item_id"]
        # a shopper no earlier demo has seen: the server keeps what it was told (its event log is replayed at start)
        shopper = f"demo-shopper-{uuid.uuid4().hex[:8]}"
        event = {
            "event_type": "purchase",
            "user_id": shopper,
            "session_id": f"{shopper}-s1",
            "order_id": f"{shopper}-o1",
            "item_id": new_item,
            "timestamp": datetime.now(UTC).isoformat(),
        }
        before = client.post("/recommend", json={"user_id": shopper, "k": 3}).json()
        console.print(f"a new shopper gets {before['served_by']}: {[i['item_id'] for i in before['items']]}")
        console.print(f"$ curl -s -X POST {url}/events -H 'content-type: application/json' -d '{json.dumps([event])}'")
        console.print_json(data=client.post("/events", json=[event]).json())
        after = client.post("/recommend", json={"user_id": shopper, "k": 3}).json()
        console.print(f"the next answer ({after['served_by']}): " + ", ".join(f"{i['item_id']} ({i['reason']})" for i in after["items"]))
        # an anonymous session: its first view personalizes it, and its product page shows what goes with the item
        visit = f"demo-visit-{uuid.uuid4().hex[:8]}"
        view = {"event_type": "view", "session_id": visit, "item_id": new_item, "timestamp": datetime.now(UTC).isoformat()}
        client.post("/events", json=[view])
        console.print(f"an anonymous session views {new_item}:")
        for page in ({"page": "home"}, {"page": "product"}):
            ask = {"session_id": visit, "k": 3, "context": page} | ({"item_id": new_item} if page["page"] == "product" else {})
            seen = client.post("/recommend", json=ask).json()
            listed = ", ".join(f"{i['item_id']} ({i['reason']})" for i in seen["items"])
            console.print(f"  {page['page']} page ({seen['served_by']}): {listed}")
        console.print(f"the storefront page: [bold]{url}/shop[/] (pick a shopper or browse anonymously; every click is an event)")
