"""How fast this machine is while a benchmark runs, printed and written beside its latency tables.

Latency tables from two runs on the same 2-core cloud machine are not comparable by themselves: on
2026-12-02 this probe's Python loop took 76 ms, then 118-148 ms ten minutes later, with the load
average under 1 throughout (other tenants of the host do not show in it). The two probes (the
GIL-bound interpreter work that dominates a request, and the vectorized arithmetic of the models)
and the load average, taken at a benchmark's start and end, say how much of a difference between
two tables is the machine. Compare two tables only when their probes are close.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

LOOP_STEPS = 2_000_000
MATMUL_SIZE = 256
TRIES = 3


@dataclass(frozen=True)
class MachineSpeed:
    python_loop_ms: float  # best of TRIES: a fixed loop of LOOP_STEPS additions in the interpreter
    matmul_ms: float  # best of TRIES: a float32 MATMUL_SIZE^3 matrix product (numpy's BLAS)
    load_average: float  # over the last minute, when measured
    cpus: int

    def line(self) -> str:
        return (
            f"machine: {LOOP_STEPS / 1e6:g}M-step Python loop {self.python_loop_ms:.0f} ms, "
            f"{MATMUL_SIZE}^3 matmul {self.matmul_ms:.2f} ms, load average {self.load_average:.1f}, {self.cpus} CPUs"
        )

    def row(self) -> dict[str, float | int]:
        return asdict(self)


def _python_loop() -> None:
    total = 0
    for step in range(LOOP_STEPS):
        total += step


def _best_ms(work: Callable[[], object], tries: int = TRIES) -> float:
    best = float("inf")
    for _ in range(tries):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def measure_machine() -> MachineSpeed:
    """About a second of probes (best of three each, so a short stall of the machine does not count)."""
    a = np.random.default_rng(0).standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)
    return MachineSpeed(
        python_loop_ms=round(_best_ms(_python_loop), 1),
        matmul_ms=round(_best_ms(lambda: a @ a), 3),
        load_average=round(os.getloadavg()[0], 2),
        cpus=os.cpu_count() or 1,
    )
