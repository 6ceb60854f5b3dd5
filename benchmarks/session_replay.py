"""Served vs offline on an exported run's own held-out task: each test shopper's history is replayed through `/events`,
`/recommend` answers, and the answers are scored as export scores its served path (README table).

    .venv/bin/python benchmarks/session_replay.py REGISTRY [--version V] [--users N] [--url http://127.0.0.1:8000]

Without `--url` the flow runs in this process (`LocalStages`: the code a request runs, without HTTP); with it the
requests go to a running endpoint (`hyperrec serve --registry REGISTRY`) over HTTP. Every shopper is replayed under a
fresh id, so an answer rests on the replayed events alone, not on the seeded history. Offline, over the same states:
the list the policy selects (`policy_lists`, what a request serves) and the ranker's order alone (`ranked_lists`, the
manifest's served metrics). recall@10 of each, paired differences with bootstrap intervals, and the share of
replayed answers identical to the offline policy list.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from hyperrec.bundle.features import ItemTable
from hyperrec.bundle.retrieval import Retrieval
from hyperrec.bundle.store import ModelRuntime
from hyperrec.bundle.user_state import UserState
from hyperrec.data.history_events import history_records
from hyperrec.data.sequences import EvalTask
from hyperrec.eval.metrics import hit_matrix, paired_bootstrap, recall_at_k
from hyperrec.eval.report import print_table
from hyperrec.export.run import load_source
from hyperrec.export.served_ranker import policy_lists, ranked_lists
from hyperrec.models.item_index import single_threaded
from hyperrec.progress import progress
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.policy import Policy
from hyperrec.serve.schemas import RecommendRequest

K = 10


class InProcess:
    """The serving flow in this process over a fresh memory store (nothing seeded: only replayed events count)."""

    def __init__(self, registry: Path, version: str):
        config = ServeConfig(registry=registry, version=version, store={"seed_users": False})
        self.flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(registry), config))
        asyncio.run(self.flow.start())

    def send(self, records: list[dict]) -> None:
        result = self.flow.ingest(records)
        if result.rejected:
            raise ValueError(f"events rejected: {result.rejected[:3]}")

    def ask(self, shopper: str) -> tuple[list[str], str]:
        answer = asyncio.run(self.flow.recommend(RecommendRequest(user_id=shopper, k=K)))
        return [i.item_id for i in answer.items], answer.served_by

    def close(self) -> None:
        self.flow.stages.close()


class OverHttp:
    """A running endpoint."""

    def __init__(self, url: str):
        self.client = httpx.Client(base_url=url, timeout=30)

    def send(self, records: list[dict]) -> None:
        for start in range(0, len(records), 500):
            response = self.client.post("/events", json=records[start : start + 500])
            response.raise_for_status()
            if response.json().get("rejected"):
                raise ValueError(f"events rejected: {response.json()['rejected'][:3]}")

    def ask(self, shopper: str) -> tuple[list[str], str]:
        response = self.client.post("/recommend", json={"user_id": shopper, "k": K})
        response.raise_for_status()
        body = response.json()
        return [i["item_id"] for i in body["items"]], body["served_by"]

    def close(self) -> None:
        self.client.close()


def offline_lists(registry: Registry, version: str, task: EvalTask, catalog: pd.DataFrame) -> dict[str, np.ndarray]:
    """The same states scored without a server: the policy's selection over the version's own item table (the live cart
    dropped first, as the flow drops it), and the ranker's order alone over the test history's table (as export scored)."""
    bundle, runtime = registry.bundle(version), ModelRuntime()
    encoder, scorer, together, config = bundle.encoder(runtime), bundle.scorer(runtime), bundle.bought_together(), bundle.manifest.retrieval
    served_table, test_table = bundle.item_table(), ItemTable.from_history(task.history.orders(), catalog)
    served = Retrieval(encoder, bundle.item_vectors, served_table, config, bought_together=together)
    policy = Policy(ServeConfig(registry=registry.root).policy, served_table, bundle.item_vectors)
    states = [UserState.from_history(task.history, int(u)) for u in task.users]
    carts = [np.fromiter(s.cart, np.int64) for s in states]
    return {
        "offline, policy selection": policy_lists(served, scorer, policy.select, task.history, task.users, states, "home", K, drop=carts),
        "offline, ranker order (manifest)": ranked_lists(Retrieval(encoder, bundle.item_vectors, test_table, config), scorer, task, K),
    }


def main(registry_root: Path, version: str, users: int, url: str | None) -> None:
    single_threaded()
    registry = Registry(registry_root)
    version = registry.resolve(version)
    source = load_source(Path(registry.manifest(version).source_run))
    task, item_ids = source.split.test, source.split.item_ids
    keep = np.sort(np.random.default_rng(0).permutation(len(task.users))[:users])
    task = EvalTask(task.history, task.users[keep], [task.targets[r] for r in keep])
    server = OverHttp(url) if url else InProcess(registry_root, version)
    served, by, started = [], [], time.perf_counter()
    try:
        for u in progress(task.users, desc="replayed shoppers", unit="shopper"):
            shopper = f"replay-{time.time_ns()}-{u}"
            server.send(history_records(task.history, int(u), item_ids, shopper))
            items, served_by = server.ask(shopper)
            served.append(items)
            by.append(served_by)
    finally:
        server.close()
    row_of = {str(item): i for i, item in enumerate(item_ids)}
    lists = {
        "served (replayed through /events, /recommend)": np.array([[row_of[i] for i in row] + [-1] * (K - len(row)) for row in served])
    }
    lists |= offline_lists(registry, version, task, source.dataset.catalog)
    n_targets = np.array([len(t) for t in task.targets])
    per_user = {name: recall_at_k(hit_matrix(recs, task.targets), n_targets, K) for name, recs in lists.items()}
    served_name, policy_name = list(lists)[:2]
    same = float(np.mean([(a == b).all() for a, b in zip(lists[served_name], lists[policy_name])]))
    table = pd.DataFrame({"recall@10": {n: float(v.mean()) for n, v in per_user.items()}})
    for name in list(lists)[1:]:
        mean, low, high = paired_bootstrap(per_user[served_name], per_user[name], samples=2_000)
        table.loc[name, "served - this [95% CI]"] = f"{mean:+.4f} [{low:+.4f}, {high:+.4f}]"
    table.index.name = "lists"
    print_table(
        table.round(4).fillna("—"), f"{version} of {registry_root}: {len(task.users)} test shoppers, {source.config.data.split} task"
    )
    print(f"served answers identical to the offline policy lists: {same:.1%}; served_by: {pd.Series(by).value_counts().to_dict()}")
    print(f"{time.perf_counter() - started:.0f} s ({'HTTP ' + url if url else 'in process'})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("registry", type=Path)
    parser.add_argument("--version", default="current")
    parser.add_argument("--users", type=int, default=500, help="test shoppers replayed (a seeded sample)")
    parser.add_argument("--url", help="a running endpoint; default: the flow in this process")
    args = parser.parse_args()
    main(args.registry, args.version, args.users, args.url)
