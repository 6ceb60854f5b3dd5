"""`hyperrec bench`: tail latency of the endpoint under open-loop load, next to the same flow in process.

1. What is measured: a registry version given with `--registry DIR --version vNNNN` (a real
   export, its own shoppers' histories), else a synthetic-shop version with `--items` items, its
   shoppers shaped by a `HistoryProfile` and its encoder by the committed config (built once,
   reused from `--registry-root`).
2. In process (no HTTP, no Ray): one request at a time on a candidate-cache miss and on a hit,
   then, for each rate, open-loop load on the request flow called in this process (the load
   generator shares its event loop: that is what "in process" means).
3. Over HTTP: the real endpoint (Ray Serve, the config's topology), same request bodies, the load
   generator in a process of its own (`--client process`, the default) or in this one.
4. Synthetic versions only: latency vs catalogue size at `--size-rate` for each of `--sizes`.
Every step reports its errors and degraded share next to p50/p99, whether it meets its target,
and the per-stage p50/p99 of the server's own timers. Tables print as they complete and are
written (CSV, Markdown, PNG) under `--out`.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import matplotlib.pyplot as plt
import pandas as pd
import ray
from rich.console import Console

from hyperrec.bench.bundles import HistoryProfile, encoder_config, synthetic_bundle
from hyperrec.bench.loadgen import NEW_USER, Reply, StepResult, http_step_in_this_process, open_loop, recommend_bodies, reply_of, serial
from hyperrec.bench.machine import measure_machine
from hyperrec.eval.report import print_table, save_figure, write_table
from hyperrec.logs import init_ray
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.runner import start, stop
from hyperrec.serve.schemas import RecommendRequest

SETTLE_S = 10.0  # after a Serve app stops, its replicas exit and free memory for a while: let that pass before measuring again
USERS_PER_ITEM = 0.4  # synthetic buyers per catalogue item (capped), so bigger shops have more users
SERIAL_REQUESTS = 300  # one-at-a-time requests per cache case
Client = Literal["process", "inline"]
PLACEMENT = {
    "in-process": "the bench's own event loop (no HTTP)",
    "process": "a process of its own (spawned), same cores, not pinned",
    "inline": "the bench's process, not the server's",
}


def ensure_bundle(root: Path, n_items: int, config: ServeConfig, profile: HistoryProfile, console: Console) -> Path:
    shape = f"{profile.orders_per_user:g}x{profile.items_per_order:g}-len{encoder_config().max_len}"
    registry_root = root / f"{n_items}-{shape}"
    if Registry(registry_root).current() is None:
        n_users = int(min(max(n_items * USERS_PER_ITEM, 5_000), 50_000))
        synthetic_bundle(registry_root, n_items, n_users, config.retrieval, profile, log=console.print)
    return registry_root


def serve_config(registry_root: Path, base: ServeConfig, version: str = "current") -> ServeConfig:
    return base.model_copy(update={"registry": registry_root, "version": version, "event_log": None})


async def started_flow(config: ServeConfig) -> RecommendFlow:
    flow = RecommendFlow(config, MemoryStore(consent=config.privacy.consent), LocalStages(Registry(config.registry), config))
    await flow.start()
    return flow


def flow_sender(flow: RecommendFlow, bodies: list[dict], clear_cache: bool = False):
    async def send(i: int) -> Reply:
        body = bodies[i % len(bodies)]
        if clear_cache:
            flow.cache.clear()
        answer = await flow.recommend(RecommendRequest(**body))
        return reply_of(body, answer.served_by, answer.degraded, answer.stage_ms)

    return send


async def serial_steps(config: ServeConfig, bodies: list[dict]) -> list[StepResult]:
    """One request at a time, in process: every request a candidate-cache miss, then the same requests again, all hits.
    One request per shopper: the cache keeps a shopper's last candidates, so a shopper asked twice with another device
    would miss in the hit pass (27% of it did, drawn at random, before)."""
    known = list({b["user_id"]: b for b in bodies if not b["user_id"].startswith(NEW_USER)}.values())[:SERIAL_REQUESTS]
    flow = await started_flow(config)
    try:
        await serial(flow_sender(flow, known[:20]), 20, "warm-up")
        miss = await serial(flow_sender(flow, known, clear_cache=True), len(known), "in-process serial miss")
        await serial(flow_sender(flow, known), len(known), "warm-up")  # every request's candidates cached
        hit = await serial(flow_sender(flow, known), len(known), "in-process serial hit")
    finally:
        flow.stages.close()
    return [miss, hit]


async def in_process_step(config: ServeConfig, bodies: list[dict], rate: float, seconds: float) -> StepResult:
    flow = await started_flow(config)
    try:
        await open_loop(flow_sender(flow, bodies), rate, min(2.0, seconds), "warm-up")
        return await open_loop(flow_sender(flow, bodies), rate, seconds, "in-process")
    finally:
        flow.stages.close()


def client_step(
    client: Client, url: str, bodies: list[dict], rate: float, seconds: float, view_items: list[str] | None = None
) -> StepResult:
    """One open-loop HTTP step (with `view_items`, the session step), its load generator placed as `client` says."""
    if client == "inline":
        return http_step_in_this_process(url, bodies, rate, seconds, view_items)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(http_step_in_this_process, url, bodies, rate, seconds, view_items).result()


def http_steps(
    config: ServeConfig, users: list[str], rates: list[float], seconds: float, client: Client, console: Console, session_step: bool = True
) -> list:
    """Per rate, the HTTP step, then (`session_step`) the same rate with 1-3 view events before each request."""
    registry = Registry(config.registry)
    table = registry.bundle(registry.resolve(config.version)).item_table()
    view_items = [str(i) for i in table.item_ids[table.in_stock]] if session_step else []
    url = start(config)
    results = []
    try:
        for rate in rates:
            bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=int(rate))
            results.append(client_step(client, url, bodies, rate, seconds))
            console.print(f"  {_line(results[-1])}")
            if view_items:
                results.append(client_step(client, url, bodies, rate, seconds, view_items))
                console.print(f"  {_line(results[-1])}")
    finally:
        stop()
        time.sleep(SETTLE_S)
    return results


def _line(r: StepResult) -> str:
    rate = "serial" if not r.rate else f"{r.rate:>5.0f} rps"
    latency = f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms"
    return f"{r.target:<24} {rate}: {latency}, errors {r.errors}, degraded {r.degraded_pct:.2f}% ({r.verdict})"


def measure(
    config: ServeConfig, rates: list[float], seconds: float, console: Console, label: str, client: Client, serial_too: bool = True
) -> list[StepResult]:
    """The steps of one version: serial (`serial_too`), in process, over HTTP, and over HTTP with the session step
    (`serial_too` too: the main catalogue's table has them, the catalogue-size rows do not)."""
    registry = Registry(config.registry)
    users = list(registry.bundle(registry.resolve(config.version)).user_baskets())
    results = asyncio.run(serial_steps(config, recommend_bodies(users, 2 * SERIAL_REQUESTS, seed=1))) if serial_too else []
    for rate in rates:
        bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=int(rate))
        results.append(asyncio.run(in_process_step(config, bodies, rate, seconds)))
    for result in results:
        console.print(f"  {_line(result)}")
    results += http_steps(config, users, rates, seconds, client, console, session_step=serial_too)
    console.print(f"  [{label}] load generator: in-process steps in {PLACEMENT['in-process']}; http in {PLACEMENT[client]}")
    return results


def rows_of(results: list[StepResult], client: Client, **columns) -> tuple[list[dict], list[dict]]:
    placement = {"in-process": PLACEMENT["in-process"], "http": PLACEMENT[client], "http session": PLACEMENT[client]}
    rows = [columns | r.row() | {"client": placement.get(r.target, PLACEMENT["in-process"])} for r in results]
    return rows, [columns | r.stage_row() for r in results]


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
    version: str | None = None,
    registry: Path | None = None,
    profile: HistoryProfile | None = None,
    client: Client = "process",
) -> pd.DataFrame:
    """A registry version (`registry` and `version`) with its own shoppers, else synthetic bundles of `items` and `sizes` items."""
    out.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        init_ray(include_dashboard=False, log_to_driver=False)
    rows, stage_rows, machine = [], [], [measure_machine()]
    console.print(f"  {machine[0].line()} (at the start)")
    try:
        if registry is not None:
            config = serve_config(registry, base, version or "current")
            resolved = Registry(registry).resolve(config.version)
            label = f"{registry}/{resolved}"
            console.rule(label)
            n_items = Registry(registry).bundle(resolved).manifest.n_items
            rows, stage_rows = rows_of(measure(config, rates, seconds, console, label, client), client, version=label, items=n_items)
        else:
            profile = profile or HistoryProfile()
            for n_items in dict.fromkeys([items, *sizes]):
                console.rule(f"{n_items:,} items")
                config = serve_config(ensure_bundle(registry_root, n_items, base, profile, console), base)
                main = n_items == items
                started = time.time()
                step = measure(config, rates if main else [size_rate], seconds, console, f"{n_items:,} items", client, serial_too=main)
                more, more_stages = rows_of(step, client, version=f"synthetic {n_items}", items=n_items)
                rows, stage_rows = rows + more, stage_rows + more_stages
                console.print(f"  ({time.time() - started:.0f} s)")
    finally:
        ray.shutdown()
    machine.append(measure_machine())
    console.print(f"  {machine[1].line()} (at the end)")
    write_table(pd.DataFrame([m.row() for m in machine], index=pd.Index(["start", "end"], name="when")), out, "machine")
    table = pd.DataFrame(rows).round(2)
    report(table, pd.DataFrame(stage_rows), items if registry is None else int(table["items"].iloc[0]), size_rate, out, console)
    return table


def report(table: pd.DataFrame, stages: pd.DataFrame, items: int, size_rate: float, out: Path, console: Console) -> None:
    main = table[table["items"] == items].drop(columns="items").set_index("target")
    print_table(main, f"latency, {items:,} items ({main['version'].iloc[0]})", console)
    write_table(main, out, "latency_by_rate")
    main_stages = stages[stages["items"] == items].drop(columns="items").set_index("target")
    print_table(main_stages, "per stage, server timers, p50 / p99 ms", console)
    write_table(main_stages, out, "latency_by_stage")
    sizes = table[table["rate"] == size_rate]
    if sizes["items"].nunique() > 1:
        print_table(sizes.set_index("items"), f"latency vs catalogue size at {size_rate:g} rps", console)
        write_table(sizes.set_index("items"), out, "latency_by_size")
    rated = main[main["rate"] > 0].reset_index()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for target, frame in rated.groupby("target"):
        ax.plot(frame["rate"], frame["p99_ms"], "o-", label=f"{target} p99")
        ax.plot(frame["rate"], frame["p50_ms"], "x--", label=f"{target} p50")
    ax.set_xlabel("requests/s (open loop)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"/recommend latency, {items:,} items")
    ax.legend()
    save_figure(fig, out / "latency_by_rate.png", dpi=110)
    console.print(f"tables and plot in {out}")
