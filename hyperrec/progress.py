"""Progress of long loops that reads well in a terminal and in a log.

In a terminal a tqdm bar redraws in place. Anywhere else (a file, a pipe, a CI log) a bar's
carriage returns pile up into one endless line, so there the same loop prints a plain line when it
starts, at most one every `EVERY_S` seconds while it runs, and one when it ends.

Ray Train workers write to a pipe, not the terminal: the command that starts the cluster says
which of the two its user sees (`PROGRESS_ENV`, inherited by the workers), and rank 0 then draws
a `ray.experimental.tqdm_ray` bar in the driver's terminal or prints lines that Ray forwards.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm

EVERY_S = 10.0
PROGRESS_ENV = "HYPERREC_PROGRESS"  # "bar" or "lines": how a Ray worker shows progress


def interactive(stream: TextIO | None = None) -> bool:
    return (stream or sys.stderr).isatty()


def mark_driver_output() -> None:
    """Tell the Ray workers this process starts (and their children) how its user sees output."""
    os.environ[PROGRESS_ENV] = "bar" if interactive() else "lines"


class LineProgress:
    """`tqdm`'s update/close/iteration, as occasional whole lines: `desc: n/total unit (pct), rate`."""

    def __init__(
        self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it", stream: TextIO | None = None
    ):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.desc, self.unit = desc, unit
        self.stream = stream or sys.stderr
        self.n = 0
        self.postfix = ""
        self.printed: tuple[int, str] | None = None
        self.started = self.last = time.monotonic()
        self.closed = False
        self._print()

    def _print(self) -> None:
        elapsed = time.monotonic() - self.started
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {self.n / elapsed:,.1f} {self.unit}/s" if elapsed > 0 and self.n else ""
        self.stream.write(f"{self.desc}: {done} {self.unit}{pct}{rate}, {elapsed:.0f} s{self.postfix}\n")
        self.stream.flush()
        self.printed = (self.n, self.postfix)

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= EVERY_S:
            self.last = now
            self._print()

    def set_postfix(self, **values: object) -> None:
        self.postfix = "".join(f", {key}={value:,}" if isinstance(value, int) else f", {key}={value}" for key, value in values.items())

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.printed != (self.n, self.postfix):  # unless the last line already says where it ended
                self._print()

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.update()
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


def progress(
    iterable: Iterable | None = None, *, total: int | None = None, desc: str, unit: str = "it", disable: bool = False, leave: bool = True
):
    """A bar in a terminal, lines in a log, nothing when `disable`: use like `tqdm(...)`."""
    if disable or interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave)
    return LineProgress(iterable, total=total, desc=desc, unit=unit)


def worker_progress(total: int, desc: str):
    """Progress inside a Ray worker: a bar in the driver's terminal, or forwarded lines (see PROGRESS_ENV)."""
    if os.environ.get(PROGRESS_ENV, "bar") == "lines":
        return LineProgress(total=total, desc=desc, unit="step", stream=sys.stdout)
    from ray.experimental.tqdm_ray import tqdm as ray_tqdm  # renders in the driver's terminal

    return ray_tqdm(desc=desc, total=total)
