"""The online state: per user and per session, what the shop's events say they did lately.

`/events` writes here and the very next `/recommend` reads it, so a view, a cart change or a
purchase made a moment ago changes the next answer. Each user and each session (a *subject*) has:

- baskets: the purchases, one basket per order (an order's later lines join it), ordered by the
  order's time (its first line), as export's `build_interactions` orders them; the last
  `caps.baskets` kept. What the served models are trained on.
- events: the recent item events (item, kind, time: view, click, add_to_cart,
  remove_from_cart, purchase), in time order, the last `caps.events`.
- cart: the live cart, item -> quantity (adds minus removes; a purchase takes out what it
  bought); at most `caps.cart` distinct items, an add of a new item to a full cart is ignored.
- queries: the recent distinct searches, by their last time, the last `caps.queries`.
- shown: impression counts for frequency caps (an engagement with an item resets its count).
- consent: per purpose, the latest `consent` event's (time, granted), by event time (a withdrawal
  wins a tie). While personalization is withdrawn (or, with no record, off by `ConsentConfig`),
  the subject's behaviour is not stored: a withdrawal drops what there is (baskets, events, cart,
  queries, impressions, seeded history included) and later behaviour, impressions and seeding
  are ignored, so a shopper who grants it again starts from empty.

The store also remembers which sessions events named together with a user (`linked_sessions`),
so that erasing a user (`erase`) can take their sessions too.

An event with a user id updates the user's state and the session's; one without (an anonymous
shopper) the session's only. An `identify` merges the session's state into the user's (a union:
applying it twice, or after events that named both, counts nothing twice); it merges the session's
consent records too, and a user left without personalization merges no behaviour. Every action is atomic.

Two implementations behind one interface: `MemoryStore` (in the ingress process; the default,
one replica) and `RedisStore` (hyperrec/serve/redis_store.py; shared by any number of replicas
and surviving restarts). Items are catalogue row indices; users and sessions the shop's own ids.
"""

from __future__ import annotations

import bisect
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hyperrec.bundle.user_state import EMPTY, MAX_BASKETS, MAX_EVENTS, ConsentRecord, Recent, UserState, latest_consent, newer_consent
from hyperrec.config import StrictModel
from hyperrec.data.behaviours import BEHAVIOURS
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.privacy import ConsentConfig

Subject = tuple[Literal["user", "session"], str]


def shopper_key(subject: Subject) -> str:
    """A subject as one string ("user:u1", "session:s1"): how the candidate cache and online quality know a shopper."""
    return f"{subject[0]}:{subject[1]}"


ENGAGEMENT = ("click", "add_to_cart", "purchase")  # events that reset an item's impression count
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SEED_TIME = float("-inf")  # seeded baskets (no time in the bundle) come before any live order


class StateCaps(StrictModel):
    """How much of each subject's recent behaviour the online state keeps."""

    events: int = Field(MAX_EVENTS, ge=1, description="recent item events per user and per session")
    cart: int = Field(100, ge=1, description="distinct items in a live cart (adding a new item to a full cart is ignored)")
    queries: int = Field(20, ge=1, description="recent distinct search queries")
    baskets: int = Field(MAX_BASKETS, ge=1, le=MAX_BASKETS, description="purchase baskets (the oldest by time are forgotten)")


@dataclass(frozen=True)
class Action:
    """One contract event as the online state applies it (catalog events are not actions)."""

    kind: str  # one of BEHAVIOURS, "search", "identify" or "consent"
    time_us: int  # microseconds since the epoch
    user_id: str | None
    session_id: str | None
    item: int = -1  # catalogue row of the item events
    quantity: int = 1
    order_id: str | None = None  # purchases
    query: str = ""  # searches
    purpose: str = ""  # consent
    granted: bool = False  # consent

    @classmethod
    def of(cls, event: Any, item: int = -1) -> Action:
        """From a validated user event, identify or consent; `item`: its item's catalogue row."""
        time_us = (event.timestamp - EPOCH) // timedelta(microseconds=1)
        query = getattr(event, "query", "")
        order = getattr(event, "order_id", None)
        quantity, purpose, granted = getattr(event, "quantity", 1), getattr(event, "purpose", ""), getattr(event, "granted", False)
        return cls(event.event_type, time_us, event.user_id, event.session_id, item, quantity, order, query, purpose, granted)

    def subjects(self) -> list[Subject]:
        """Whose state it updates: an identify only the user's; other actions the user's and the session's."""
        if self.kind == "identify":
            return [("user", self.user_id)]
        return ([("user", self.user_id)] if self.user_id else []) + ([("session", self.session_id)] if self.session_id else [])


def order_field(order_id: str) -> str:
    """A live order's key among the subject's baskets (seeded ones are `s:` and their position)."""
    return f"o:{order_id}"


def seed_field(position: int) -> str:
    return f"s:{position:06d}"


class OnlineStore(ABC):
    caps: StateCaps
    consent: ConsentConfig  # its `personalization` default gates what is stored for a subject with no record

    def users(self, user_ids: list[str]) -> list[UserState | None]:
        """The state of each user, None for users the store has never seen."""
        return self.states([("user", u) for u in user_ids])

    @abstractmethod
    def states(self, subjects: list[Subject]) -> list[UserState | None]:
        """The state of each user or session, None for those the store has never seen."""

    @abstractmethod
    def apply(self, actions: list[Action]) -> None:
        """Apply the actions in their order, each one atomically (see the module's docstring)."""

    @abstractmethod
    def add_shown(self, subject: Subject, items: list[int]) -> None:
        """The items were shown to the user or session (frequency caps count these)."""

    @abstractmethod
    def linked_sessions(self, user_id: str) -> set[str]:
        """Sessions that events named together with the user (their user events, identify, consent)."""

    @abstractmethod
    def erase(self, subjects: list[Subject]) -> int:
        """Delete everything held about these users and sessions (their links included); returns how many the store knew."""

    @abstractmethod
    def set_stock(self, item: int, stock: int) -> None: ...

    @abstractmethod
    def set_price(self, item: int, price: float) -> None: ...

    @abstractmethod
    def out_of_stock(self) -> set[int]:
        """Items whose last stock event said 0."""

    @abstractmethod
    def prices(self) -> dict[int, float]:
        """Prices set by price events (they override the catalogue's)."""

    @abstractmethod
    def seed(self, baskets: dict[str, list[np.ndarray]]) -> int:
        """Load users' histories (e.g. from the offline data at deploy); users with baskets already are kept. Returns users added."""

    def holds_start(self) -> bool:
        """Whether what the server put in at its start (the seed, the replayed log) is still there. A store in the server's
        own memory cannot lose it without the server; a shared one (Redis restarted without persistence) can."""
        return True

    def mark_started(self) -> None:  # noqa: B027 -- see holds_start: nothing to mark in the server's own memory
        """Note that the server's start-up state is in (holds_start is true from now until the store loses it)."""

    def close(self) -> None:  # noqa: B027 -- a store with no connections has nothing to release
        """Release connections."""


@dataclass
class _State:
    """One subject in `MemoryStore`, kept in the order `RedisStore`'s sorted sets keep theirs."""

    orders: dict[str, tuple[float, np.ndarray]] = field(default_factory=dict)  # field -> (basket time, items)
    events: list[tuple[int, int, int]] = field(default_factory=list)  # (time, kind code, item), sorted, distinct
    cart: dict[int, int] = field(default_factory=dict)
    queries: dict[str, int] = field(default_factory=dict)  # query -> its last time
    shown: dict[int, int] = field(default_factory=dict)
    consent: dict[str, ConsentRecord] = field(default_factory=dict)
    _baskets: list[np.ndarray] | None = None  # `orders` by (time, field), rebuilt after a change

    def snapshot(self) -> UserState:
        if self._baskets is None:
            self._baskets = [self.orders[f][1] for f in sorted(self.orders, key=lambda f: (self.orders[f][0], f))]
        events = np.array(self.events, np.int64).reshape(-1, 3)
        queries = [q for q, _ in sorted(self.queries.items(), key=lambda kv: (kv[1], kv[0]))]
        recent = Recent(events[:, 2], events[:, 1], events[:, 0])
        return UserState(list(self._baskets), dict(self.shown), recent, dict(self.cart), queries, dict(self.consent))

    def personal(self, default: bool) -> bool:
        """Whether behaviour may be stored for personalization: the personalization record, else the default."""
        record = self.consent.get("personalization")
        return default if record is None else record[1]

    def set_consent(self, purpose: str, record: ConsentRecord) -> None:
        if newer_consent(record, self.consent.get(purpose)):
            self.consent[purpose] = record

    def forget_behaviour(self) -> None:
        """Personalization withdrawn: everything but the consent records goes."""
        self.orders, self.events, self.cart, self.queries, self.shown, self._baskets = {}, [], {}, {}, {}, None

    def add_event(self, event: tuple[int, int, int], cap: int) -> None:
        at = bisect.bisect_left(self.events, event)
        if at == len(self.events) or self.events[at] != event:
            self.events.insert(at, event)
        del self.events[: max(len(self.events) - cap, 0)]

    def add_query(self, query: str, time_us: int, cap: int) -> None:
        self.queries[query] = max(time_us, self.queries.get(query, time_us))
        while len(self.queries) > cap:
            del self.queries[min(self.queries, key=lambda q: (self.queries[q], q))]

    def add_to_basket(self, key: str, time_us: float, items: np.ndarray, cap: int) -> None:
        t, basket = self.orders.get(key, (time_us, EMPTY))
        self.orders[key] = (min(t, time_us), np.array(unique_in_order([*basket.tolist(), *items.tolist()]), np.int64))
        self._baskets = None
        while len(self.orders) > cap:
            del self.orders[min(self.orders, key=lambda f: (self.orders[f][0], f))]

    def add_to_cart(self, item: int, quantity: int, cap: int) -> None:
        if item in self.cart or len(self.cart) < cap:
            self.cart[item] = self.cart.get(item, 0) + quantity

    def apply(self, action: Action, caps: StateCaps) -> None:
        if action.kind == "search":
            self.add_query(action.query, action.time_us, caps.queries)
            return
        self.add_event((action.time_us, BEHAVIOURS.index(action.kind), action.item), caps.events)
        if action.kind in ENGAGEMENT:
            self.shown.pop(action.item, None)
        if action.kind == "add_to_cart":
            self.add_to_cart(action.item, action.quantity, caps.cart)
        elif action.kind == "remove_from_cart":
            left = self.cart.get(action.item, 0) - action.quantity
            if left > 0:
                self.cart[action.item] = left
            else:
                self.cart.pop(action.item, None)
        elif action.kind == "purchase":
            self.cart.pop(action.item, None)
            self.add_to_basket(order_field(action.order_id), action.time_us, np.array([action.item], np.int64), caps.baskets)

    def merge(self, session: _State, caps: StateCaps) -> None:
        """The session's state into this one: a union, so merging twice changes nothing."""
        for event in session.events:
            self.add_event(event, caps.events)
        for query, t in session.queries.items():
            self.add_query(query, t, caps.queries)
        for item, quantity in session.cart.items():
            if item in self.cart or len(self.cart) < caps.cart:
                self.cart[item] = max(quantity, self.cart.get(item, 0))
        for item, times in session.shown.items():
            self.shown[item] = max(times, self.shown.get(item, 0))
        for key, (t, items) in session.orders.items():
            self.add_to_basket(key, t, items, caps.baskets)


class MemoryStore(OnlineStore):
    def __init__(self, caps: StateCaps | None = None, consent: ConsentConfig | None = None) -> None:
        self.caps = caps or StateCaps()
        self.consent = consent or ConsentConfig()
        self._lock = threading.Lock()
        self._subjects: dict[Subject, _State] = {}
        self._sessions: dict[str, set[str]] = {}  # user -> sessions named with them
        self._stock: dict[int, int] = {}
        self._prices: dict[int, float] = {}

    def states(self, subjects: list[Subject]) -> list[UserState | None]:
        with self._lock:
            return [self._subjects[s].snapshot() if s in self._subjects else None for s in subjects]

    def _personal(self, subject: Subject) -> bool:
        state = self._subjects.get(subject)
        return state.personal(self.consent.personalization) if state is not None else self.consent.personalization

    def apply(self, actions: list[Action]) -> None:
        with self._lock:
            for action in actions:
                if action.user_id and action.session_id:
                    self._sessions.setdefault(action.user_id, set()).add(action.session_id)
                for subject in action.subjects():
                    if action.kind == "identify":
                        self._identify(subject, self._subjects.get(("session", action.session_id)))
                    elif action.kind == "consent":
                        state = self._subjects.setdefault(subject, _State())
                        state.set_consent(action.purpose, (action.time_us, action.granted))
                        if not state.personal(self.consent.personalization):
                            state.forget_behaviour()
                    elif self._personal(subject):
                        self._subjects.setdefault(subject, _State()).apply(action, self.caps)

    def _identify(self, subject: Subject, session: _State | None) -> None:
        """The session's consent joins the user's first; its behaviour only if the user then allows personalization."""
        state = self._subjects.get(subject, _State())
        state.consent = latest_consent(state.consent, session.consent if session is not None else {})
        if not state.personal(self.consent.personalization):
            state.forget_behaviour()
            if state.consent:
                self._subjects[subject] = state
            return
        if session is not None:
            state.merge(session, self.caps)
        self._subjects[subject] = state

    def add_shown(self, subject: Subject, items: list[int]) -> None:
        with self._lock:
            if not self._personal(subject):
                return
            shown = self._subjects.setdefault(subject, _State()).shown
            for item in items:
                shown[item] = shown.get(item, 0) + 1

    def linked_sessions(self, user_id: str) -> set[str]:
        with self._lock:
            return set(self._sessions.get(user_id, ()))

    def erase(self, subjects: list[Subject]) -> int:
        with self._lock:
            for kind, name in subjects:
                if kind == "user":
                    self._sessions.pop(name, None)
            return sum(self._subjects.pop(subject, None) is not None for subject in subjects)

    def set_stock(self, item: int, stock: int) -> None:
        with self._lock:
            self._stock[item] = stock

    def set_price(self, item: int, price: float) -> None:
        with self._lock:
            self._prices[item] = price

    def out_of_stock(self) -> set[int]:
        with self._lock:
            return {item for item, stock in self._stock.items() if stock <= 0}

    def prices(self) -> dict[int, float]:
        with self._lock:
            return dict(self._prices)

    def seed(self, baskets: dict[str, list[np.ndarray]]) -> int:
        added = 0
        with self._lock:
            for user, user_baskets in baskets.items():
                if not self._personal(("user", user)):
                    continue
                state = self._subjects.setdefault(("user", user), _State())
                if not state.orders:
                    kept = user_baskets[-self.caps.baskets :]
                    state.orders = {seed_field(i): (SEED_TIME, np.asarray(b, np.int64)) for i, b in enumerate(kept)}
                    state._baskets = None
                    added += 1
        return added


def unique_in_order(items: Iterable[int]) -> list[int]:
    seen: dict[int, None] = dict.fromkeys(int(i) for i in items)
    return list(seen)


def make_store(config: ServeConfig) -> OnlineStore:
    """The store `config.store` names, with the configured consent defaults."""
    if config.store.kind == "redis":
        from hyperrec.serve.redis_store import RedisStore  # it builds on this module

        return RedisStore(config.store.redis_url, config.store.namespace, consent=config.privacy.consent)
    return MemoryStore(consent=config.privacy.consent)
