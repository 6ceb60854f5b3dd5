"""Soak: the endpoint under steady open-loop load for many minutes, with events, minute by minute.

    .venv/bin/python benchmarks/soak.py --registry experiments/registry --minutes 10 --rate 200

`hyperrec serve`'s app (default config, this process starts it) serves a registry version; a client
process of its own sends `--rate` /recommend per second for the bundle's shoppers and, alongside,
`--rate / 4` /events per second (a view of a random item by one of those shoppers, so the online
state and the candidate cache keep changing). Each minute prints a row: requests, errors, degraded
share, p50 / p99 of /recommend, p99 of /events, and the ingress replica's RSS. Target (issue 12):
zero errors, and RSS growth under 10% from the end of the first minute (warm-up) to the last.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pandas as pd

from hyperrec.bench.loadgen import Reply, StepResult, open_loop, post_json, recommend_bodies, recommend_sender
from hyperrec.bench.machine import measure_machine
from hyperrec.eval.report import print_table, write_table
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import prepare_environment


def replica_rss_mib() -> float:
    """Resident memory of the ingress replica process(es) of this machine's Ray Serve app, from /proc."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and b"ServeReplica:hyperrec:Ingress" in (entry / "cmdline").read_bytes():
                line = next(x for x in (entry / "status").read_text().splitlines() if x.startswith("VmRSS:"))
                total += int(line.split()[1]) / 1024
        except (OSError, StopIteration):
            continue
    return total


async def one_minute(url: str, users: list[str], items: list[str], rate: float, seconds: float, seed: int) -> tuple[StepResult, StepResult]:
    bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=seed)
    rng = random.Random(seed)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:

        async def view(i: int) -> Reply:
            user = rng.choice(users)
            event = {"event_type": "view", "user_id": user, "session_id": f"soak-{user}", "item_id": rng.choice(items)}
            event["timestamp"] = datetime.now(UTC).isoformat()
            await post_json(session, f"{url}/events", [event])
            return Reply(False)

        recommend = recommend_sender(session, url, bodies)
        return tuple(await asyncio.gather(open_loop(recommend, rate, seconds, "recommend"), open_loop(view, rate / 4, seconds, "events")))


def one_minute_in_this_process(*args) -> tuple[StepResult, StepResult]:
    return asyncio.run(one_minute(*args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    parser.add_argument("--version", default="current")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0, help="/recommend per second (events: a quarter of it)")
    parser.add_argument("--port", type=int, default=8600)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/soak"))
    args = parser.parse_args()
    config = ServeConfig(registry=args.registry, version=args.version, port=args.port, event_log=args.out / "event_log")
    prepare_environment(config)  # before Ray Serve is imported
    from hyperrec.serve.runner import start, stop

    bundle = Registry(args.registry).bundle(Registry(args.registry).resolve(args.version))
    users, items = sorted(bundle.user_baskets()), [str(i) for i in bundle.item_table().item_ids]
    print(measure_machine().line(), "(at the start)", flush=True)
    url, rows = start(config), []
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
            for minute in range(1, args.minutes + 1):
                rec, ev = client.submit(one_minute_in_this_process, url, users, items, args.rate, 60.0, minute).result()
                rows.append(
                    {
                        "minute": minute,
                        "recommend": rec.sent,
                        "events": ev.sent,
                        "errors": rec.errors + ev.errors,
                        "degraded %": rec.degraded_pct,
                        "p50 ms": rec.p50_ms,
                        "p99 ms": rec.p99_ms,
                        "events p99 ms": ev.p99_ms,
                        "replica RSS MiB": replica_rss_mib(),
                        "first error": rec.first_error or ev.first_error,
                    }
                )
                print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in rows[-1].items()), flush=True)
    finally:
        stop()
    print(measure_machine().line(), "(at the end)", flush=True)
    table = pd.DataFrame(rows).set_index("minute").round(2)
    print_table(table, f"soak: {args.rate:g} recommend/s + {args.rate / 4:g} events/s, {args.minutes} minutes")
    if len(rows) > 1:
        growth = rows[-1]["replica RSS MiB"] / rows[0]["replica RSS MiB"] - 1
        print(f"errors {int(table['errors'].sum())}; replica RSS from minute 1 to {len(rows)}: {100 * growth:+.1f}% (target < +10%)")
    write_table(table, args.out, "soak")


if __name__ == "__main__":
    main()
