"""Per-user cache of retrieval results, invalidated by what changes them.

An entry is valid while the user's state, the context and the model version are the same (its
key says so); a stock or price event drops every entry holding the item it concerns. An entry also
keeps the state it was retrieved for, so that a hit reuses that state's history summary (the same
baskets, by the key) instead of computing it again. Safe to use from several threads (the endpoint
applies events off its event loop).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from hyperrec.bundle.retrieval import Candidates
from hyperrec.bundle.user_state import UserState


class CandidateCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[tuple, Candidates, UserState | None]] = OrderedDict()
        self._holders: dict[int, set[str]] = {}  # item -> users whose entry holds it
        self._lock = threading.RLock()

    def get(self, user: str, key: tuple, state: UserState | None = None) -> Candidates | None:
        """The user's candidates if their entry has `key`; `state` (the request's) then takes the entry's history summary."""
        with self._lock:
            entry = self._entries.get(user)
            if entry is None or entry[0] != key:
                return None
            self._entries.move_to_end(user)
            if state is not None and entry[2] is not None:
                state.share_history(entry[2])
            return entry[1]

    def put(self, user: str, key: tuple, candidates: Candidates, state: UserState | None = None) -> None:
        with self._lock:
            if self.capacity <= 0:
                return
            self.drop(user)
            self._entries[user] = (key, candidates, state)
            for item in candidates.items.tolist():
                self._holders.setdefault(item, set()).add(user)
            while len(self._entries) > self.capacity:
                self.drop(next(iter(self._entries)))

    def invalidate_item(self, item: int) -> int:
        with self._lock:
            users = self._holders.pop(item, set())
            for user in list(users):
                self.drop(user)
            return len(users)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._holders.clear()

    def drop(self, user: str) -> None:
        """Forget the user's entry (also when their data must go: consent withdrawn, erasure)."""
        with self._lock:
            entry = self._entries.pop(user, None)
            if entry is None:
                return
            for item in entry[1].items.tolist():
                holders = self._holders.get(item)
                if holders is not None:
                    holders.discard(user)
                    if not holders:
                        del self._holders[item]

    def __len__(self) -> int:
        return len(self._entries)
