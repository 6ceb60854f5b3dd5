"""Cohort lists: what a shopper with nothing to go on gets, by the context of their request.

A cold request (no history, no live intent) used to get the one global popularity list. Export now counts
the items of the training events per cohort: device x channel x part of day, and the coarser cohorts of
each (device x part of day, device x channel, device, channel, part of day). A cold request gets the list
of the most specific cohort its context falls in that had at least `min_events` events, else the global
list. Parts of day are of the UTC hour, as the encoder reads it. A data set without devices or channels
(Instacart) still has parts of day.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hyperrec.data.basket_examples import hour_and_weekday

TOP = 100  # items kept per cohort
MIN_EVENTS = 200  # a cohort with fewer events gets no list of its own (its coarser cohorts answer)
PARTS_OF_DAY = ("at night", "in the morning", "in the afternoon", "in the evening")  # UTC hours 0-5, 6-11, 12-17, 18-23
FIELDS = ("device", "channel", "part")
# from the most specific cohort to the coarsest: which context fields each one is keyed by
LEVELS = (("device", "channel", "part"), ("device", "part"), ("device", "channel"), ("device",), ("channel",), ("part",))


def part_of_day(hours: np.ndarray) -> np.ndarray:
    return np.asarray(hours, np.int64) // 6


def cohort_key(fields: tuple[str, ...], values: dict[str, str]) -> str:
    return "|".join(f"{name}={values[name]}" for name in fields)


def describe(fields: tuple[str, ...], values: dict[str, str]) -> str:
    """'popular on ios via email in the evening'."""
    words = {"device": f"on {values['device']}", "channel": f"via {values['channel']}", "part": PARTS_OF_DAY[int(values["part"])]}
    return "popular " + " ".join(words[name] for name in fields)


@dataclass(frozen=True)
class CohortLists:
    lists: dict[str, np.ndarray]  # cohort key -> item indices, most popular first

    @classmethod
    def from_events(cls, events: pd.DataFrame, item_index: pd.Index, top: int = TOP, min_events: int = MIN_EVENTS) -> CohortLists:
        """From event rows (item_id, timestamp, device, channel); items `item_index` does not hold are left out."""
        items = item_index.get_indexer(events["item_id"])
        seconds = events["timestamp"].dt.as_unit("us").astype("int64").to_numpy() // 1_000_000
        frame = pd.DataFrame(
            {
                "item": items,
                "device": events["device"].astype("object").to_numpy(),
                "channel": events["channel"].astype("object").to_numpy(),
                "part": part_of_day(hour_and_weekday(seconds)[0]).astype(str),
            }
        )
        frame = frame[frame["item"] >= 0]
        lists: dict[str, np.ndarray] = {}
        for fields in LEVELS:
            known = frame.dropna(subset=list(fields))
            for values, group in known.groupby(list(fields), sort=True):
                if len(group) < min_events:
                    continue
                counts = group["item"].value_counts()
                order = np.lexsort((counts.index.to_numpy(), -counts.to_numpy()))  # ties: the lower item index
                key = cohort_key(fields, dict(zip(fields, map(str, values if isinstance(values, tuple) else (values,)))))
                lists[key] = counts.index.to_numpy(np.int64)[order][:top]
        return cls(lists)

    def save(self, path: Path) -> None:
        rows = [(key, rank, int(item)) for key, items in self.lists.items() for rank, item in enumerate(items)]
        pd.DataFrame(rows, columns=["cohort", "rank", "item"]).to_parquet(path, index=False)

    @classmethod
    def load(cls, path: Path) -> CohortLists:
        frame = pd.read_parquet(path).sort_values(["cohort", "rank"])
        return cls({str(key): group["item"].to_numpy(np.int64) for key, group in frame.groupby("cohort", sort=True)})

    def for_context(self, device: str | None, channel: str | None, hour: int) -> tuple[np.ndarray, str] | None:
        """The list of the most specific cohort of this context, and how to say which; None: no cohort has one."""
        values = {"device": device, "channel": channel, "part": str(int(part_of_day(np.array([hour]))[0]))}
        for fields in LEVELS:
            if any(values[name] is None for name in fields):
                continue
            found = self.lists.get(cohort_key(fields, values))  # type: ignore[arg-type]
            if found is not None:
                return found, describe(fields, values)  # type: ignore[arg-type]
        return None
