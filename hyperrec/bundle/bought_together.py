"""Items bought together: each item's best co-purchased items, precomputed at export for the product and cart placements.

c_ij counts the training baskets holding both i and j, normalized as cosine (c_ij / sqrt(n_i n_j), n_i = baskets
holding i) so that a popular item does not top every list; each item keeps its `top` best, as a sparse row. At request
time the rows of the page's items (the product page's item, the cart's items) are added up: the candidates and their
weights, and for each the page item that weighs most for it (what the reason names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hyperrec.data.sequences import Interactions
from hyperrec.models.cooccurrence import cooccurrence_matrix

TOP = 50


@dataclass(frozen=True)
class Related:
    """Items related to some seed items: their summed weights, and per item the seed that weighs most for it."""

    items: np.ndarray  # item indices, distinct, by weight (best first)
    weight: np.ndarray
    via: np.ndarray  # the seed item that weighs most for each of `items`

    @classmethod
    def empty(cls) -> Related:
        return cls(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))


@dataclass(frozen=True)
class BoughtTogether:
    """Per item (row), its `top` co-purchased items by cosine weight, best first (CSR arrays)."""

    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray

    @classmethod
    def from_history(cls, history: Interactions, top: int = TOP) -> BoughtTogether:
        together = cooccurrence_matrix(history.basket_matrix(), "cosine")
        indptr, indices, weights = [0], [], []
        for row in range(together.shape[0]):
            start, end = together.indptr[row], together.indptr[row + 1]
            columns, values = together.indices[start:end], together.data[start:end]
            best = np.lexsort((columns, -values))[:top]  # heaviest first; ties by item index, so the same every run
            indices.append(columns[best])
            weights.append(values[best])
            indptr.append(indptr[-1] + len(best))
        if not indices:
            return cls(np.zeros(1, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))
        return cls(np.array(indptr, np.int64), np.concatenate(indices).astype(np.int64), np.concatenate(weights).astype(np.float32))

    def save(self, path: Path) -> None:
        np.savez(path, indptr=self.indptr, indices=self.indices, weights=self.weights)

    @classmethod
    def load(cls, path: Path) -> BoughtTogether:
        with np.load(path) as f:
            return cls(f["indptr"], f["indices"], f["weights"])

    def of(self, seeds: np.ndarray) -> Related:
        """Items bought with any of `seeds`, the seeds themselves left out."""
        seeds = np.unique(seeds[(seeds >= 0) & (seeds < len(self.indptr) - 1)])
        if not len(seeds):
            return Related.empty()
        starts, ends = self.indptr[seeds], self.indptr[seeds + 1]
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)])
        if not len(rows):
            return Related.empty()
        items, weights = self.indices[rows], self.weights[rows].astype(np.float64)
        via = np.repeat(seeds, ends - starts)
        distinct, inverse = np.unique(items, return_inverse=True)
        total = np.bincount(inverse, weights=weights, minlength=len(distinct))
        heaviest = np.lexsort((-weights, inverse))  # per item, its heaviest seed first
        first = heaviest[np.r_[True, inverse[heaviest][1:] != inverse[heaviest][:-1]]]
        keep = ~np.isin(distinct, seeds)
        order = np.lexsort((distinct[keep], -total[keep]))
        return Related(distinct[keep][order], total[keep][order], via[first][keep][order])
