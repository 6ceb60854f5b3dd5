"""Where on the site a list is shown (a request's `context.page`), and the candidates each placement draws from.

    home      the shopper's next basket: ANN over the encoder's vector, their own items, popular items
    discover  "new for you": ANN and popular items, none the shopper bought or is looking at now
    product   the product page's item (the anchor): items bought with it and items like it (its embedding neighbours)
    cart      complete the basket: items bought with the cart's items, plus home's sources (never an item in the cart)
    search    the titles matching the query (BM25), only those; with no match, home's sources (and the answer says so)

Every placement's candidates are ranked for the shopper by the same served ranker; the policy adds the placement's
own affinity (how strongly an item is bought with the page's items, how well its title matches: 0..1) to the ranker's
score with `PolicyConfig.placement_weight`. Each candidate keeps the sources that brought it (a bit each of `SOURCES`)
and the page item it came through (`via`), which the reasons name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

Page = Literal["home", "discover", "product", "cart", "search"]
Source = Literal["ann", "repeat", "popularity", "bought_with", "similar", "search"]
SOURCES: tuple[Source, ...] = get_args(Source)  # bit i of a candidate's `sources`
ANN, REPEAT, POPULARITY, BOUGHT_WITH, SIMILAR, SEARCH = (np.uint8(1 << i) for i in range(len(SOURCES)))


@dataclass(frozen=True)
class Placement:
    """One request's placement: the page, the product page's item (index) and the search's query."""

    page: Page = "home"
    anchor: int = -1  # item index (page product)
    query: str = ""  # page search

    @property
    def seeded(self) -> bool:
        """Whether the page itself says what to show (an item, a query), so a shopper with no history still gets its list."""
        return self.anchor >= 0 or bool(self.query)

    @property
    def key(self) -> tuple[str, int, str]:
        return self.page, self.anchor, self.query


HOME = Placement()


def source_names(bits: int) -> list[Source]:
    return [name for i, name in enumerate(SOURCES) if bits & (1 << i)]


class Pool:
    """The candidate items of one request as they are gathered, source by source."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, np.uint8, np.ndarray, np.ndarray]] = []  # items, source bit, affinity, via
        self.ann = np.empty(0, np.int64)  # the ANN's items added, in its order (their rank is a ranking feature)

    def add(self, items: np.ndarray, source: np.uint8, affinity: np.ndarray | None = None, via: np.ndarray | None = None) -> None:
        n = len(items)
        self.parts.append(
            (
                items.astype(np.int64),
                source,
                np.zeros(n) if affinity is None else np.asarray(affinity, np.float64),
                np.full(n, -1, np.int64) if via is None else via.astype(np.int64),
            )
        )

    def gather(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct items (sorted), their source bits OR-ed, their best affinity and the `via` of that best."""
        if not self.parts:
            return np.empty(0, np.int64), np.empty(0, np.uint8), np.empty(0), np.empty(0, np.int64)
        items = np.concatenate([p[0] for p in self.parts])
        bits = np.concatenate([np.full(len(p[0]), p[1], np.uint8) for p in self.parts])
        affinity = np.concatenate([p[2] for p in self.parts])
        via = np.concatenate([p[3] for p in self.parts])
        distinct, inverse = np.unique(items, return_inverse=True)
        sources = np.zeros(len(distinct), np.uint8)
        np.bitwise_or.at(sources, inverse, bits)
        if not affinity.any() and (via < 0).all():  # home: no source of its own (the common case, kept cheap)
            return distinct, sources, np.zeros(len(distinct)), np.full(len(distinct), -1, np.int64)
        order = np.lexsort((-affinity, inverse))  # per item, its best affinity first (stable among equals: the first source)
        first = order[np.r_[True, inverse[order][1:] != inverse[order][:-1]]]
        return distinct, sources, affinity[first], via[first]


def scaled(weights: np.ndarray) -> np.ndarray:
    """`weights` over their maximum (0..1); all zero when there is none."""
    top = weights.max() if len(weights) else 0.0
    return weights / top if top > 0 else np.zeros(len(weights))
