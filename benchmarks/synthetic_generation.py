"""Time the synthetic shop: events per second and peak memory for a few catalog / user sizes.

    .venv/bin/python benchmarks/synthetic_generation.py --sizes 1000:2000 100000:50000 1000000:200000

Each size runs in a fresh process so that its peak RSS is its own. Events are generated chunk by
chunk and dropped (no store writes), so the time is the simulator plus `normalize_events`.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from rich.console import Console
from rich.table import Table

from hyperrec.config import SyntheticConfig
from hyperrec.data.synthetic import SyntheticShop


def run(config: SyntheticConfig) -> tuple[int, float, float]:
    """(events, seconds, peak RSS in MiB) for one generation, catalog included."""
    start = time.perf_counter()
    events = sum(len(chunk) for chunk in SyntheticShop(config).iter_event_chunks())
    seconds = time.perf_counter() - start
    return events, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def size(text: str) -> tuple[int, int]:
    items, _, users = text.partition(":")
    return int(items), int(users)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=size, default=[(1_000, 2_000), (100_000, 50_000)], help="ITEMS:USERS pairs")
    parser.add_argument("--categories", type=int, default=20)
    parser.add_argument("--chunk-users", type=int, default=SyntheticConfig().chunk_users)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    table = Table(title="synthetic shop generation")
    for column in ("n_items", "n_users", "events", "seconds", "events/s", "peak RSS MiB"):
        table.add_column(column, justify="right")
    for n_items, n_users in args.sizes:
        config = SyntheticConfig(
            n_items=n_items, n_users=n_users, n_categories=args.categories, chunk_users=args.chunk_users, seed=args.seed
        )
        with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
            events, seconds, rss = pool.submit(run, config).result()
        table.add_row(f"{n_items:,}", f"{n_users:,}", f"{events:,}", f"{seconds:.1f}", f"{events / seconds:,.0f}", f"{rss:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
