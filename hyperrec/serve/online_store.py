"""The online feature store: each user's recent baskets and impression counts, item stock and price.

`/events` writes here and the very next `/recommend` reads it, so a purchase made a moment ago
changes the next answer. Two implementations behind one interface: `MemoryStore` (in the
ingress process; the default, one replica) and `RedisStore` (hyperrec/serve/redis_store.py;
shared by any number of replicas and surviving restarts).

Items are catalogue row indices; users are the shop's own string ids.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable

import numpy as np

from hyperrec.bundle.user_state import MAX_BASKETS, UserState


class OnlineStore(ABC):
    @abstractmethod
    def users(self, user_ids: list[str]) -> list[UserState | None]:
        """The state of each user, None for users the store has never seen."""

    @abstractmethod
    def add_purchase(self, user_id: str, order_id: str, items: list[int]) -> None:
        """Items bought in `order_id`: appended to that basket if it is the user's latest, else a new basket."""

    @abstractmethod
    def add_shown(self, user_id: str, items: list[int]) -> None:
        """The items were shown to the user (frequency caps count these)."""

    @abstractmethod
    def reset_shown(self, user_id: str, items: list[int]) -> None:
        """The user engaged with the items (click, cart, purchase): their impression counts start again."""

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
        """Load users' histories (e.g. from the offline data at deploy); users already present are kept. Returns users added."""

    def close(self) -> None:  # noqa: B027 -- a store with no connections has nothing to release
        """Release connections."""


class MemoryStore(OnlineStore):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._baskets: dict[str, list[np.ndarray]] = {}
        self._last_order: dict[str, str] = {}
        self._shown: dict[str, dict[int, int]] = {}
        self._stock: dict[int, int] = {}
        self._prices: dict[int, float] = {}

    def users(self, user_ids: list[str]) -> list[UserState | None]:
        with self._lock:
            return [
                UserState(list(self._baskets.get(u, [])), dict(self._shown.get(u, {}))) if u in self._baskets or u in self._shown else None
                for u in user_ids
            ]

    def add_purchase(self, user_id: str, order_id: str, items: list[int]) -> None:
        with self._lock:
            baskets = self._baskets.setdefault(user_id, [])
            if baskets and self._last_order.get(user_id) == order_id:
                baskets[-1] = np.array(unique_in_order([*baskets[-1], *items]), np.int64)
            else:
                baskets.append(np.array(unique_in_order(items), np.int64))
                del baskets[:-MAX_BASKETS]
            self._last_order[user_id] = order_id

    def add_shown(self, user_id: str, items: list[int]) -> None:
        with self._lock:
            shown = self._shown.setdefault(user_id, {})
            for item in items:
                shown[item] = shown.get(item, 0) + 1

    def reset_shown(self, user_id: str, items: list[int]) -> None:
        with self._lock:
            shown = self._shown.get(user_id, {})
            for item in items:
                shown.pop(item, None)

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
                if user not in self._baskets:
                    self._baskets[user] = [np.asarray(b, np.int64) for b in user_baskets[-MAX_BASKETS:]]
                    self._last_order[user] = f"seed:{len(user_baskets)}"
                    added += 1
        return added


def unique_in_order(items: Iterable[int]) -> list[int]:
    seen: dict[int, None] = dict.fromkeys(int(i) for i in items)
    return list(seen)
