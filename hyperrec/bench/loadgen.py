"""Open-loop load: requests leave on a fixed schedule whether or not earlier ones have answered.

A closed loop (send, wait, send) slows down when the server does and so hides exactly the queueing
it should measure (coordinated omission). Here request i is due at start + i / rate, and its
latency is counted from when it was due, not from when it was actually sent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
import numpy as np

Send = Callable[[int], Awaitable[bool]]  # request number -> answered correctly?


@dataclass(frozen=True)
class StepResult:
    target: str
    rate: float
    seconds: float
    sent: int
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    achieved_rps: float
    first_error: str = ""

    def row(self) -> dict:
        return self.__dict__.copy()


async def open_loop(send: Send, rate: float, seconds: float, target: str, timeout_s: float = 5.0) -> StepResult:
    loop = asyncio.get_running_loop()
    n = max(1, int(rate * seconds))
    latencies = np.full(n, np.nan)
    errors: list[str] = []

    async def one(i: int, due: float) -> None:
        try:
            if not await asyncio.wait_for(send(i), timeout_s):
                errors.append("wrong answer")
        except TimeoutError:
            errors.append(f"no answer within {timeout_s:g} s")
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        latencies[i] = loop.time() - due

    start = loop.time() + 0.05
    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    ms = 1000 * latencies
    percentiles = (float(np.percentile(ms, q)) for q in (50, 95, 99))
    return StepResult(
        target, rate, round(elapsed, 2), n, len(errors), *percentiles, float(ms.max()), n / elapsed, errors[0] if errors else ""
    )


def recommend_bodies(user_ids: list[str], n: int, k: int = 10, seed: int = 0) -> list[dict]:
    """Request bodies: known users drawn at random, a few unknown ones, mixed devices."""
    rng = random.Random(seed)
    devices = ["web", "ios", "android", None]
    bodies = []
    for _ in range(n):
        user = rng.choice(user_ids) if rng.random() > 0.02 else f"new-{rng.randrange(10**9)}"
        device = rng.choice(devices)
        bodies.append({"user_id": user, "k": k, "context": {"device": device} if device else {}})
    return bodies


async def http_step(url: str, bodies: list[dict], rate: float, seconds: float) -> StepResult:
    connector = aiohttp.TCPConnector(limit=1000)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def send(i: int) -> bool:
            async with session.post(f"{url}/recommend", json=bodies[i % len(bodies)]) as response:
                body = await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {body[:120]!r}")
                return True

        await open_loop(send, rate, min(2.0, seconds), "warm-up")
        return await open_loop(send, rate, seconds, "http")
