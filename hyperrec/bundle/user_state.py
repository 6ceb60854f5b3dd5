"""What serving knows about one user: their recent baskets, as item indices of the catalogue.

The same object is built offline from `Interactions` (to train and evaluate the serving ranker)
and online from the events a shop sends (the online store), so that the features the ranker was
trained on are computed by the same code at request time.

A state is a snapshot (the store hands out a fresh one per request). What features, retrieval and
the policy's reasons need of the whole history (`History`: per-item counts, recency, decayed
counts) is computed once per state, with array operations, the first time one of them asks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import pad_left

MAX_BASKETS = 100  # older baskets are forgotten online; features look at most this far back
DECAYS = (0.8, 0.5)  # decays of the ranking features, summed once with the rest of the history

EMPTY = np.empty(0, np.int64)


@dataclass(frozen=True)
class History:
    """A user's baskets summarized per distinct item (`items`, sorted by item index)."""

    flat: np.ndarray  # every item bought, oldest basket first
    age: np.ndarray  # baskets ago of each of `flat` (0 = the last basket)
    inverse: np.ndarray  # position in `items` of each of `flat`
    items: np.ndarray
    counts: np.ndarray  # occurrences in the history
    baskets: np.ndarray  # baskets holding it (= counts, unless a basket lists an item twice)
    last_ago: np.ndarray  # baskets ago of its last purchase
    decayed: dict[float, np.ndarray]  # decay -> sum over its occurrences of decay ** age

    @classmethod
    def of(cls, baskets: list[np.ndarray]) -> History:
        if not baskets:
            return cls(EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, EMPTY, {d: np.zeros(0) for d in DECAYS})
        n = len(baskets)
        basket = np.repeat(np.arange(n), np.fromiter(map(len, baskets), np.int64, n))
        flat, age = np.concatenate(baskets), n - 1 - basket
        items, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
        last = np.full(len(items), np.iinfo(np.int64).max)
        np.minimum.at(last, inverse, age)
        holding = np.bincount(np.unique(inverse * n + basket) // n, minlength=len(items))  # distinct (item, basket) pairs
        history = cls(flat, age, inverse, items, counts, holding, last, {})
        for decay in DECAYS:
            history.decayed[decay] = history.decayed_sums(decay)
        return history

    def decayed_sums(self, decay: float) -> np.ndarray:
        """Per distinct item, summed in the history's order (oldest first)."""
        out = np.zeros(len(self.items))
        np.add.at(out, self.inverse, decay ** self.age.astype(np.float64))
        return out

    def lookup(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Position of each of `items` in `self.items` (valid where found) and whether it was found."""
        if not len(self.items):
            return np.zeros(len(items), np.int64), np.zeros(len(items), bool)
        at = np.minimum(np.searchsorted(self.items, items), len(self.items) - 1)
        return at, self.items[at] == items


@dataclass
class UserState:
    baskets: list[np.ndarray] = field(default_factory=list)  # oldest first; item indices
    shown: dict[int, int] = field(default_factory=dict)  # item -> times shown since the last click
    _history: History | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_history(cls, history: Interactions, user: int) -> UserState:
        return cls([np.asarray(b, np.int64) for b in history.baskets[user][-MAX_BASKETS:]])

    @property
    def n_baskets(self) -> int:
        return len(self.baskets)

    def history(self) -> History:
        """The summary of `baskets`, computed on first use."""
        if self._history is None:
            self._history = History.of(self.baskets)
        return self._history

    def sequence(self, max_len: int) -> np.ndarray:
        """(max_len,) ids 1..n_items of the last max_len items bought, left-padded with 0 (as in training)."""
        return pad_left(self.history().flat + 1, max_len)

    def item_counts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Items the user bought, in how many baskets, and how many baskets ago last (0 = last basket)."""
        h = self.history()
        return h.items, h.counts, h.last_ago

    def decayed_counts(self, items: np.ndarray, decay: float) -> np.ndarray:
        """For each of `items`: sum over the baskets holding it of decay ** (baskets ago)."""
        h = self.history()
        sums = h.decayed[decay] if decay in h.decayed else h.decayed_sums(decay)
        at, hit = h.lookup(items)
        return np.where(hit, sums[at], 0.0) if len(h.items) else np.zeros(len(items))
