"""Time the event contract on a file-sized table: columnar vs per-event pydantic, events/s and peak memory.

    .venv/bin/python benchmarks/event_validation.py --sizes 100000 1000000 10000000 --per-event-max 1000000

The events are seeded and generated here as `read_table` gives a CSV back (string columns, ISO
timestamps, numbers with NaN where a kind has no such field), every kind mixed, with a share of
bad rows (`--bad`). Each (size, path) runs in a fresh process so that its peak RSS is its own (it
includes the table, about 200 bytes an event). The per-event path runs up to `--per-event-max`
events; above, its row is extrapolated from its largest measured rate and marked so.
"""

from __future__ import annotations

import argparse
import resource
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from hyperrec.data.event_columns import validate_frame
from hyperrec.data.events import EVENT_TYPES

SHARE = {"view": 0.49, "click": 0.2, "add_to_cart": 0.1, "remove_from_cart": 0.02, "purchase": 0.1, "search": 0.05}
SHARE |= {"identify": 0.01, "consent": 0.01, "price_change": 0.02}
SHARE["stock_change"] = 1 - sum(SHARE.values())
USER_KINDS = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "search")


def _ids(prefix: str, numbers: np.ndarray, keep: np.ndarray) -> pa.Array:
    text = pc.binary_join_element_wise(prefix, pc.cast(pa.array(numbers), pa.string()), "")
    return pc.if_else(pa.array(keep), text, pa.scalar(None, pa.string()))


def _numbers(values: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, values, np.nan)


def make_events(n: int, bad: float, seed: int = 0) -> pd.DataFrame:
    """n seeded events of every kind, a `bad` share of them breaking one rule each."""
    rng = np.random.default_rng(seed)
    kind = rng.choice(len(EVENT_TYPES), n, p=[SHARE[k] for k in EVENT_TYPES])
    is_ = {k: kind == i for i, k in enumerate(EVENT_TYPES)}
    user = np.isin(kind, [EVENT_TYPES.index(k) for k in USER_KINDS])
    shopper = user | is_["identify"] | is_["consent"]  # identify and consent name the user and the session, and have no context
    cart = is_["add_to_cart"] | is_["remove_from_cart"] | is_["purchase"]
    seconds = pa.array(1_704_067_200 + rng.integers(0, 365 * 86_400, n), pa.timestamp("s"))
    naive = pc.replace_substring(pc.cast(seconds, pa.string()), " ", "T")  # 2024-03-01T12:00:00
    broken = rng.random(n) < bad
    user_ids = rng.integers(0, max(n // 50, 1), n)
    table = pa.table(
        {
            "event_type": pa.array(np.where(broken & is_["view"], "teleport", np.array(EVENT_TYPES)[kind])),
            "schema_version": pa.array(np.where(is_["identify"] | is_["consent"], 2, 1).astype(np.int64)),  # version 2 only
            "timestamp": pc.if_else(  # a broken click has no time zone
                pa.array(broken & is_["click"]),
                naive,
                pc.binary_join_element_wise(naive, "Z", ""),
            ),
            "user_id": _ids("u", user_ids, shopper),
            "session_id": _ids("s", user_ids * 10 + rng.integers(0, 10, n), shopper),
            "item_id": _ids("i", rng.zipf(1.3, n) % 1_000_000, ~is_["search"] & ~is_["identify"] & ~is_["consent"]),
            "order_id": _ids("o", rng.integers(0, n, n), is_["purchase"] & ~broken),  # a broken purchase has no order id
            "quantity": _numbers(np.where(broken & is_["add_to_cart"], 0, rng.integers(1, 4, n)), cart),
            "position": _numbers(rng.integers(1, 20, n), is_["purchase"]),
            "price": _numbers(rng.gamma(2.0, 3.0, n).round(2), is_["purchase"] | is_["price_change"]),
            "stock": _numbers(np.where(broken & is_["stock_change"], -1, rng.integers(0, 500, n)), is_["stock_change"]),
            "query": pc.if_else(pa.array(is_["search"]), pa.array(np.char.add("query ", rng.integers(0, 1_000, n).astype(str))), None),
            "purpose": pc.if_else(
                pa.array(is_["consent"]), pa.array(np.array(["personalization", "analytics", "email"])[rng.integers(0, 3, n)]), None
            ),
            "granted": pa.array(np.where(is_["consent"], rng.random(n) < 0.8, None), pa.bool_()),
            "device": pc.if_else(pa.array(user), pa.array(np.array(["web", "ios", "android", "other"])[rng.integers(0, 4, n)]), None),
            "page": pc.if_else(pa.array(user), pa.array(np.array(["home", "product", "cart", "search"])[rng.integers(0, 4, n)]), None),
        }
    )
    return table.to_pandas()


def run(n: int, columnar: bool, bad: float) -> tuple[float, int, float]:
    """(seconds, rejected rows, peak RSS in MiB) for one validation of n fresh events."""
    events = make_events(n, bad)
    start = time.perf_counter()
    report = validate_frame(events, columnar=columnar)
    seconds = time.perf_counter() - start
    return seconds, len(report.rejected), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--per-event-max", type=int, default=100_000, help="largest size the per-event path runs at")
    parser.add_argument("--bad", type=float, default=0.001, help="share of events that break a rule")
    args = parser.parse_args()

    table = Table(title="event contract check")
    for column in ("events", "path", "rejected", "seconds", "events/s", "peak RSS MiB"):
        table.add_column(column, justify="right")
    per_event_rate = None
    for n in args.sizes:
        for columnar in (True, False):
            name = "columnar" if columnar else "per-event"
            if not columnar and n > args.per_event_max:
                if per_event_rate:
                    table.add_row(f"{n:,}", name, "", f"~{n / per_event_rate:,.0f} (extrapolated)", f"~{per_event_rate:,.0f}", "")
                continue
            with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                seconds, rejected, rss = pool.submit(run, n, columnar, args.bad).result()
            if not columnar:
                per_event_rate = n / seconds
            table.add_row(f"{n:,}", name, f"{rejected:,}", f"{seconds:.1f}", f"{n / seconds:,.0f}", f"{rss:,.0f}")
    Console().print(table)


if __name__ == "__main__":
    main()
