"""What serving knows about one user (or one anonymous session): their recent baskets, as item indices
of the catalogue, and, online, what they did lately (recent item events, the live cart, searches).

The same object is built offline from `Interactions` (to train and evaluate the serving ranker)
and online from the events a shop sends (the online store), so that the features the ranker was
trained on are computed by the same code at request time.

A state is a snapshot (the store hands out a fresh one per request). What features, retrieval and
the policy's reasons need of the whole history (`History`: per-item counts, recency, decayed
counts) is computed once per state, with array operations, the first time one of them asks.

A purchase-only encoder reads the purchases, then the live intent (`live_items`: what the shopper
viewed, clicked or carted since their last purchase). A multi-behaviour encoder reads every recent
event with its kind and time gap (`behaviour_sequence`). A state built from purchases alone
(export's) has no events, so what the models see of it is its purchases.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hyperrec.data import behaviours
from hyperrec.data.sequences import Interactions, user_sessions
from hyperrec.data.windows import pad_left

MAX_BASKETS = 100  # older baskets are forgotten online; features look at most this far back
MAX_EVENTS = 200  # recent item events the online state keeps by default (StateCaps.events)
DECAYS = (0.8, 0.5)  # decays of the ranking features, summed once with the rest of the history

EMPTY = np.empty(0, np.int64)
ConsentRecord = tuple[int, bool]  # (event time in microseconds since the epoch, granted)


def newer_consent(new: ConsentRecord, old: ConsentRecord | None) -> bool:
    """Whether `new` replaces `old` as a purpose's consent: the later by event time; at the same time a withdrawal wins."""
    return old is None or new[0] > old[0] or (new[0] == old[0] and old[1] and not new[1])


def latest_consent(*records: dict[str, ConsentRecord]) -> dict[str, ConsentRecord]:
    """Per purpose, the newest of the records (`newer_consent`)."""
    out: dict[str, ConsentRecord] = {}
    for record in records:
        for purpose, consent in record.items():
            if newer_consent(consent, out.get(purpose)):
                out[purpose] = consent
    return out


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


@dataclass(frozen=True, eq=False)
class Recent:
    """Recent item events, oldest first (ties: by kind code, then item): what each one was, on which item, when."""

    items: np.ndarray = field(default_factory=lambda: EMPTY)
    kinds: np.ndarray = field(default_factory=lambda: EMPTY)  # codes into data.behaviours.BEHAVIOURS
    times: np.ndarray = field(default_factory=lambda: EMPTY)  # microseconds since the epoch

    def __len__(self) -> int:
        return len(self.items)

    def union(self, other: Recent) -> Recent:
        """Both event lists as one, in time order, an event both hold (same time, kind and item) once."""
        if not len(other) or not len(self):
            return other if len(other) else self
        rows = np.unique(np.stack([np.r_[self.times, other.times], np.r_[self.kinds, other.kinds], np.r_[self.items, other.items]]), axis=1)
        return Recent(rows[2], rows[1], rows[0])


@dataclass
class UserState:
    baskets: list[np.ndarray] = field(default_factory=list)  # oldest first; item indices
    shown: dict[int, int] = field(default_factory=dict)  # item -> times shown since the last click
    events: Recent = field(default_factory=Recent)  # online only: recent item events
    cart: dict[int, int] = field(default_factory=dict)  # online only: item -> quantity in the live cart
    queries: list[str] = field(default_factory=list)  # online only: recent distinct searches, the latest last
    consent: dict[str, ConsentRecord] = field(default_factory=dict)  # online only: purpose -> the latest consent event's
    _history: History | None = field(default=None, init=False, repr=False, compare=False)
    _live: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def from_history(cls, history: Interactions, user: int) -> UserState:
        """The user's baskets; of event data (with kinds) the purchases, one basket per session (`Interactions.orders`),
        the last MAX_EVENTS events as the recent events and the cart they leave, as the online state would hold them."""
        baskets = history.baskets[user]
        if history.kinds is None:
            return cls([np.asarray(b, np.int64) for b in baskets[-MAX_BASKETS:]])
        kinds = history.kinds[user]
        purchases = np.flatnonzero(kinds == behaviours.PURCHASE)
        bought, _ = user_sessions([baskets[i] for i in purchases], np.asarray(history.times[user])[purchases])
        recent = slice(max(len(baskets) - MAX_EVENTS, 0), len(baskets))
        items = np.array([b[0] for b in baskets[recent]], np.int64)
        times = np.round(np.asarray(history.times[user][recent]) * 1e6).astype(np.int64)
        codes = np.asarray(kinds[recent], np.int64)
        return cls(bought[-MAX_BASKETS:], events=Recent(items, codes, times), cart=behaviours.live_cart(items, codes))

    @property
    def n_baskets(self) -> int:
        return len(self.baskets)

    def history(self) -> History:
        """The summary of `baskets`, computed on first use."""
        if self._history is None:
            self._history = History.of(self.baskets)
        return self._history

    def share_history(self, other: UserState) -> None:
        """Take `other`'s history summary (computing it there if it has none yet): the caller knows both hold the same baskets."""
        self._history = other.history()

    def live_items(self) -> np.ndarray:
        """Items viewed, clicked or put in the cart after the last purchase among `events` (`data.behaviours.live_intent`)."""
        if self._live is None:
            self._live = behaviours.live_intent(self.events.items, self.events.kinds)
        return self._live

    @property
    def has_signal(self) -> bool:
        """Anything to personalize on: a purchase, or live intent."""
        return bool(self.baskets) or len(self.live_items()) > 0

    def with_session(self, session: UserState) -> UserState:
        """This user's state with a session's events, cart, searches and consent added (what an identify merges for good)."""
        cart = self.cart | {item: max(q, self.cart.get(item, 0)) for item, q in session.cart.items()}
        queries = [q for q in self.queries if q not in session.queries] + session.queries
        consent = latest_consent(self.consent, session.consent)
        return UserState(self.baskets, self.shown, self.events.union(session.events), cart, queries, consent)

    def sequence(self, max_len: int, live_intent: bool = True) -> np.ndarray:
        """(max_len,) ids 1..n_items of the last max_len items bought, then (with `live_intent`) the live items, left-padded
        with 0 (as in training)."""
        live = self.live_items() if live_intent else EMPTY
        flat = np.concatenate([self.history().flat, live]) if len(live) else self.history().flat
        return pad_left(flat + 1, max_len)

    def behaviour_sequence(self, max_len: int) -> np.ndarray:
        """(3, max_len) item, kind and gap ids for a multi-behaviour encoder (`data.behaviours.behaviour_inputs`): the
        purchases older than the recent events, as purchases at an unknown time, then the recent events themselves.

        The recent events hold the live orders' purchases too, so the older purchases are the bought items but as many of
        the last ones as there are purchase events (exact unless an order listed one item twice)."""
        e, flat = self.events, self.history().flat
        older = flat[: max(len(flat) - int((e.kinds == behaviours.PURCHASE).sum()), 0)]
        items = np.concatenate([older, e.items]) + 1
        kinds = np.concatenate([np.full(len(older), behaviours.PURCHASE), e.kinds])
        times = np.concatenate([np.full(len(older), np.nan), e.times / 1e6])
        return behaviours.behaviour_inputs(items, kinds, times, max_len)

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
