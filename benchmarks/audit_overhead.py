"""The audit log's cost to a request: p50/p99 of `RecommendFlow.recommend` in process, audit on vs off.

    .venv/bin/python benchmarks/audit_overhead.py [--registry experiments/registry] [--version current] [--requests 3000]

Two flows over the same version and shoppers (memory store, seeded from the bundle), one writing the
audit log to a temporary folder, one without it; requests go one at a time, alternating between the two
in blocks so that a noisy neighbour on the machine slows both alike. The shoppers repeat, so after the
first round their candidates come from the cache: the fastest answers, where the audit's share is largest.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from hyperrec.registry import Registry
from hyperrec.serve.audit import read_records, verify
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.schemas import RecommendRequest

BLOCK = 100  # requests per flow before switching to the other
SHOPPERS = 500


async def started(config: ServeConfig, metrics: ServeMetrics) -> RecommendFlow:
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config), metrics)
    await flow.start()
    return flow


async def timed(flow: RecommendFlow, requests: list[RecommendRequest]) -> list[float]:
    out = []
    for request in requests:
        begun = time.perf_counter()
        await flow.recommend(request)
        out.append(1000 * (time.perf_counter() - begun))
    return out


async def run(registry: Path, version: str, n: int, audit_folder: Path) -> tuple[dict[str, np.ndarray], int, float, str]:
    base = {"registry": registry, "version": version, "event_log": None}
    metrics = ServeMetrics()
    flows = {
        "off": await started(ServeConfig(**base, audit={"enabled": False}), ServeMetrics()),
        "on": await started(ServeConfig(**base, audit={"path": audit_folder}), metrics),
    }
    users = sorted(flows["on"].registry.bundle(flows["on"].current).user_baskets())[:SHOPPERS]
    requests = [RecommendRequest(user_id=u, k=10, context={"page": "home"}) for u in users]
    times: dict[str, list[float]] = {"off": [], "on": []}
    for flow in flows.values():
        await timed(flow, requests[:200])  # warm-up (its records are written, not timed)
    for start in range(0, n, BLOCK):
        block = [requests[i % len(requests)] for i in range(start, min(start + BLOCK, n))]
        for name, flow in flows.items():
            times[name] += await timed(flow, block)
    for flow in flows.values():
        flow.close()
        flow.stages.close()
    written = sum(1 for _ in read_records(audit_folder))
    dropped = metrics.registry.get_sample_value("hyperrec_audit_dropped_total") or 0.0
    broken = verify(audit_folder)
    return {k: np.array(v) for k, v in times.items()}, written, dropped, "intact" if broken is None else str(broken)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    parser.add_argument("--version", default="current")
    parser.add_argument("--requests", type=int, default=3000, help="timed requests per flow")
    args = parser.parse_args()
    os.environ.setdefault("HYPERREC_ID_KEY", secrets.token_hex(32))  # the pseudonyms' key (a real server's comes from its setup)
    with tempfile.TemporaryDirectory() as folder:
        times, written, dropped, chain = asyncio.run(run(args.registry, args.version, args.requests, Path(folder) / "audit"))
    table = Table(title=f"flow.recommend in process, {args.registry} ({args.version}), k=10, one request at a time")
    for column in ("audit", "requests", "p50 ms", "p99 ms", "mean ms"):
        table.add_column(column, justify="left" if column == "audit" else "right")
    for name, ms in times.items():
        table.add_row(name, str(len(ms)), f"{np.percentile(ms, 50):.3f}", f"{np.percentile(ms, 99):.3f}", f"{ms.mean():.3f}")
    on, off = times["on"], times["off"]
    deltas = [np.percentile(on, 50) - np.percentile(off, 50), np.percentile(on, 99) - np.percentile(off, 99), on.mean() - off.mean()]
    table.add_row("on - off", "", *(f"{d:+.3f}" for d in deltas))
    console = Console()
    console.print(table)
    console.print(f"audit records written {written:,} (warm-up included), dropped {dropped:.0f}, chain {chain}")


if __name__ == "__main__":
    main()
