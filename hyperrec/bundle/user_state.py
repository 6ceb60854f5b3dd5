"""What serving knows about one user: their recent baskets, as item indices of the catalogue.

The same object is built offline from `Interactions` (to train and evaluate the serving ranker)
and online from the events a shop sends (the online store), so that the features the ranker was
trained on are computed by the same code at request time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import pad_left

MAX_BASKETS = 100  # older baskets are forgotten online; features look at most this far back


@dataclass
class UserState:
    baskets: list[np.ndarray] = field(default_factory=list)  # oldest first; item indices
    shown: dict[int, int] = field(default_factory=dict)  # item -> times shown since the last click

    @classmethod
    def from_history(cls, history: Interactions, user: int) -> UserState:
        return cls([np.asarray(b, np.int64) for b in history.baskets[user][-MAX_BASKETS:]])

    @property
    def n_baskets(self) -> int:
        return len(self.baskets)

    def sequence(self, max_len: int) -> np.ndarray:
        """(max_len,) ids 1..n_items of the last max_len items bought, left-padded with 0 (as in training)."""
        return pad_left(np.concatenate(self.baskets) + 1 if self.baskets else np.empty(0, np.int64), max_len)

    def _flat(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item bought and how many baskets ago (0 = the last basket)."""
        items = np.concatenate(self.baskets)
        age = np.concatenate([np.full(len(b), self.n_baskets - 1 - i) for i, b in enumerate(self.baskets)])
        return items, age

    def item_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items the user bought, in how many baskets, and how many baskets ago last (0 = last basket)."""
        if not self.baskets:
            empty = np.empty(0, np.int64)
            return empty, empty, empty
        items, age = self._flat()
        unique, inverse, counts = np.unique(items, return_inverse=True, return_counts=True)
        last = np.full(len(unique), np.iinfo(np.int64).max)
        np.minimum.at(last, inverse, age)
        return unique, counts, last

    def decayed_counts(self, items: np.ndarray, decay: float) -> np.ndarray:
        """For each of `items`: sum over the baskets holding it of decay ** (baskets ago)."""
        out = np.zeros(len(items))
        if not self.baskets or not len(items):
            return out
        bought, age = self._flat()
        order = np.argsort(items)
        at = np.minimum(np.searchsorted(items[order], bought), len(items) - 1)
        hit = items[order][at] == bought
        np.add.at(out, order[at[hit]], decay ** age[hit].astype(np.float64))
        return out
