"""`hyperrec bench`: tail latency of the endpoint under open-loop load, next to the same flow in process.

1. A synthetic-shop registry version with `--items` items (built once, reused from `--registry-root`).
2. For each rate: the request flow called in this process (no HTTP, no Ray), then the real
   endpoint over HTTP (Ray Serve, the config's topology), same request bodies.
3. Latency vs catalogue size: the same at `--size-rate` for each of `--sizes`.
Tables print as they complete and are written (CSV, Markdown, PNG) under `--out`.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import ray
from rich.console import Console

from hyperrec.bench.bundles import synthetic_bundle
from hyperrec.bench.loadgen import StepResult, http_step, open_loop, recommend_bodies
from hyperrec.eval.report import print_table, write_table
from hyperrec.logs import ray_logging
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.runner import start, stop
from hyperrec.serve.schemas import RecommendRequest

SETTLE_S = 10.0  # after a Serve app stops, its replicas exit and free memory for a while: let that pass before measuring again
USERS_PER_ITEM = 0.4  # synthetic buyers per catalogue item (capped), so bigger shops have more users


def ensure_bundle(root: Path, n_items: int, config: ServeConfig, console: Console) -> Path:
    registry_root = root / f"{n_items}"
    if Registry(registry_root).current() is None:
        n_users = int(min(max(n_items * USERS_PER_ITEM, 5_000), 50_000))
        synthetic_bundle(registry_root, n_items, n_users, config.retrieval, log=console.print)
    return registry_root


def serve_config(registry_root: Path, base: ServeConfig) -> ServeConfig:
    return base.model_copy(update={"registry": registry_root, "version": "current", "event_log": None})


async def in_process_step(config: ServeConfig, bodies: list[dict], rate: float, seconds: float) -> StepResult:
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config))
    await flow.start()

    async def send(i: int) -> bool:
        await flow.recommend(RecommendRequest(**bodies[i % len(bodies)]))
        return True

    await open_loop(send, rate, min(2.0, seconds), "warm-up")
    return await open_loop(send, rate, seconds, "in-process")


def measure(config: ServeConfig, rates: list[float], seconds: float, console: Console, n_items: int) -> list[dict]:
    registry = Registry(config.registry)
    users = list(registry.bundle(registry.resolve()).user_baskets())
    rows = []
    for rate in rates:
        bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=int(rate))
        result = asyncio.run(in_process_step(config, bodies, rate, seconds))
        rows.append({"items": n_items} | result.row())
        console.print(f"  in-process {rate:>5.0f} rps: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
    url = start(config)
    try:
        for rate in rates:
            bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=int(rate))
            result = asyncio.run(http_step(url, bodies, rate, seconds))
            rows.append({"items": n_items} | result.row())
            console.print(f"  http       {rate:>5.0f} rps: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, errors {result.errors}")
    finally:
        stop()
        time.sleep(SETTLE_S)
    return rows


def run_bench(
    base: ServeConfig,
    items: int,
    rates: list[float],
    seconds: float,
    sizes: list[int],
    size_rate: float,
    out: Path,
    registry_root: Path,
    console: Console,
) -> pd.DataFrame:
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, **ray_logging())
    try:
        rows = []
        for n_items in dict.fromkeys([items, *sizes]):
            console.rule(f"{n_items:,} items")
            config = serve_config(ensure_bundle(registry_root, n_items, base, console), base)
            step_rates = rates if n_items == items else [size_rate]
            started = time.time()
            rows += measure(config, step_rates, seconds, console, n_items)
            console.print(f"  ({time.time() - started:.0f} s)")
    finally:
        ray.shutdown()
    table = pd.DataFrame(rows).round(2)
    report(table, items, size_rate, out, console)
    return table


def report(table: pd.DataFrame, items: int, size_rate: float, out: Path, console: Console) -> None:
    main = table[table["items"] == items].set_index(["target", "rate"]).drop(columns="items")
    print_table(main.reset_index().set_index("target"), f"latency under open-loop load, {items:,} items", console)
    write_table(main.reset_index().set_index("target"), out, "latency_by_rate")
    sizes = table[table["rate"] == size_rate].set_index(["items", "target"])
    print_table(sizes.reset_index().set_index("items"), f"latency vs catalogue size at {size_rate:g} rps", console)
    write_table(sizes.reset_index().set_index("items"), out, "latency_by_size")
    http = main.xs("http", level="target") if "http" in main.index.get_level_values(0) else None
    local = main.xs("in-process", level="target")
    if http is not None and size_rate in http.index and size_rate in local.index:
        ratio = http.loc[size_rate, "p99_ms"] / max(local.loc[size_rate, "p99_ms"], 1e-9)
        console.print(f"HTTP-through-Serve p99 / in-process p99 at {size_rate:g} rps: {ratio:.2f}x")
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for target, frame in main.reset_index().groupby("target"):
        ax.plot(frame["rate"], frame["p99_ms"], "o-", label=f"{target} p99")
        ax.plot(frame["rate"], frame["p50_ms"], "x--", label=f"{target} p50")
    ax.set_xlabel("requests/s (open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"/recommend latency, {items:,} items")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "latency_by_rate.png", dpi=110)
    plt.close(fig)
    console.print(f"tables and plot in {out}")
