"""Wall time and peak memory of each stage of a training run, for the run record and the scale table.

Peak memory is the process's high-water mark (`ru_maxrss`) when the stage ends: it never goes down,
so the stage that raised it is the one whose value first jumps.
"""

from __future__ import annotations

import resource
import time


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


class StageClock:
    """`lap(name)` closes a stage: its seconds since the previous lap and the peak RSS so far."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.stages: dict[str, dict[str, float]] = {}

    def lap(self, name: str, **sizes: int) -> float:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        self.stages[name] = {"seconds": seconds, "peak_rss_mib": peak_rss_mib(), **sizes}
        return seconds
