"""Per-user sequences of baskets and the splits models are trained and judged on.

A basket is one order (basket data) or one event (session data). Splits:
- `last_basket` / `last_item`: validation target = the user's second-to-last basket, test
  target = the last; the model sees only the baskets before its target.
- `time`: two global cut-off times; the model sees what happened before the cut-off, the
  target is everything the user bought between it and the next cut-off (or the end).
- `last_session`: mid-session, the next click or the session's purchases (data/session_split.py).
Users without enough history or without a target are left out of that task, not guessed for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from hyperrec.config import DataConfig
from hyperrec.data.behaviours import BEHAVIOURS, PURCHASE
from hyperrec.data.dataset import Dataset

SESSION_GAP_S = 1800.0  # inactivity that ends a session, the usual rule of session-based evaluations


def _unique_in_order(items: np.ndarray) -> np.ndarray:
    _, first = np.unique(items, return_index=True)
    return items[np.sort(first)]


def session_bounds(times: np.ndarray) -> np.ndarray:
    """Where each session of one user's time-ordered baskets starts (a gap over `SESSION_GAP_S`), then len(times)."""
    if not len(times):
        return np.zeros(1, np.int64)
    return np.r_[0, np.flatnonzero(np.diff(times) > SESSION_GAP_S) + 1, len(times)].astype(np.int64)


def user_sessions(baskets: list[np.ndarray], times: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """One user's baskets merged into sessions (`session_bounds`), each item once, first seen first, and each session's
    time (its first basket's)."""
    times, bounds = np.asarray(times), session_bounds(np.asarray(times))
    return [_unique_in_order(np.concatenate(baskets[a:b])) for a, b in zip(bounds[:-1], bounds[1:])], times[bounds[:-1]]


@dataclass(frozen=True)
class Interactions:
    """Each user's time-ordered baskets of item indices (rows of the catalog)."""

    n_items: int
    baskets: list[list[np.ndarray]]  # baskets[user][b] -> unique item indices in basket b
    times: list[np.ndarray]  # times[user][b] -> basket time, seconds since the epoch
    kinds: list[np.ndarray] | None = None  # kinds[user][b] -> event kind code (data.behaviours) of event b; None: purchases

    @property
    def n_users(self) -> int:
        return len(self.baskets)

    def truncate(self, keep: np.ndarray) -> Interactions:
        """Keep the first keep[u] baskets of every user u."""
        return Interactions(
            self.n_items,
            [user[:k] for user, k in zip(self.baskets, keep)],
            [t[:k] for t, k in zip(self.times, keep)],
            None if self.kinds is None else [c[:k] for c, k in zip(self.kinds, keep)],
        )

    def of_kind(self, code: int) -> Interactions:
        """Only the events of this kind code (data without kinds is all purchases: asked for purchases, it is itself)."""
        if self.kinds is None:
            if code != PURCHASE:
                raise ValueError(f"these interactions hold purchases only, no events of kind {BEHAVIOURS[code]}")
            return self
        keep = [np.flatnonzero(k == code) for k in self.kinds]
        return Interactions(
            self.n_items,
            [[b[i] for i in rows] for b, rows in zip(self.baskets, keep)],
            [t[rows] for t, rows in zip(self.times, keep)],
            [k[rows] for k, rows in zip(self.kinds, keep)],
        )

    def sessions(self) -> Interactions:
        """Each user's baskets merged into sessions (`user_sessions`). What session-based baselines compare on event data."""
        merged = [user_sessions(b, t) for b, t in zip(self.baskets, self.times)]
        return Interactions(self.n_items, [m[0] for m in merged], [m[1] for m in merged])

    def orders(self) -> Interactions:
        """The purchases as baskets: basket data itself; of event data the purchases, one basket per session (the
        synthetic shop checks out once per session)."""
        return self if self.kinds is None else self.of_kind(PURCHASE).sessions()

    def select(self, users: np.ndarray) -> Interactions:
        """Only these users, in this order."""
        kinds = None if self.kinds is None else [self.kinds[u] for u in users]
        return Interactions(self.n_items, [self.baskets[u] for u in users], [self.times[u] for u in users], kinds)

    def basket_counts(self) -> sp.csr_matrix:
        """users x items: in how many of the user's baskets each item appears."""
        rows = [np.full(sum(len(b) for b in user), u) for u, user in enumerate(self.baskets)]
        cols = [np.concatenate(user) if user else np.empty(0, np.int64) for user in self.baskets]
        row = np.concatenate(rows) if rows else np.empty(0, np.int64)
        col = np.concatenate(cols) if cols else np.empty(0, np.int64)
        return sp.csr_matrix((np.ones(len(row), np.float32), (row, col)), shape=(self.n_users, self.n_items))

    def basket_matrix(self) -> sp.csr_matrix:
        """baskets x items, 1 where the basket holds the item; the rows are user 0's baskets in time
        order, then user 1's, and so on."""
        baskets = [basket for user in self.baskets for basket in user]
        indptr = np.r_[0, np.cumsum([len(b) for b in baskets])].astype(np.int64)
        indices = np.concatenate(baskets) if baskets else np.empty(0, np.int64)
        matrix = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(baskets), self.n_items))
        matrix.sort_indices()
        return matrix


@dataclass(frozen=True)
class EvalTask:
    """What a model is fitted on (`history`) and asked to predict (`targets` of `users`)."""

    history: Interactions
    users: np.ndarray
    targets: list[np.ndarray]
    truth: list[np.ndarray] | None = None  # each user's truly preferred items, best first (simulated data only)


@dataclass(frozen=True)
class Split:
    valid: EvalTask
    test: EvalTask
    full: Interactions  # everything: what a model is fitted on to recommend after the data ends
    user_ids: np.ndarray  # user index -> user id
    item_ids: np.ndarray  # item index -> item id (the catalog order)


def build_interactions(dataset: Dataset, event_types: list[str], basket_key: str = "order_id") -> tuple[Interactions, np.ndarray]:
    """Group the chosen events into baskets per user; returns the interactions and user ids.

    `basket_key="order_id"` groups an order's lines (falling back to the session for events
    without an order); `basket_key="event"` makes every event its own basket and records its kind.
    """
    events = dataset.events
    events = events[events["event_type"].isin(event_types) & events["user_id"].notna() & events["item_id"].notna()]
    item_index = pd.Index(dataset.catalog["item_id"]).get_indexer(events["item_id"])
    if (item_index < 0).any():
        unknown = events["item_id"][item_index < 0].unique()[:5].tolist()
        raise ValueError(f"{dataset.name}: events refer to items missing from the catalog, e.g. {unknown}")
    user_index, user_ids = pd.factorize(events["user_id"], sort=True)
    if basket_key == "event":
        key = np.arange(len(events))
    else:
        key = pd.factorize(events["order_id"].fillna("session:" + events["session_id"].fillna("")))[0]
    seconds = events["timestamp"].dt.as_unit("us").astype("int64").to_numpy() / 1e6
    kind = pd.Index(BEHAVIOURS).get_indexer(events["event_type"])
    frame = pd.DataFrame({"user": user_index, "key": key, "item": item_index, "t": seconds, "kind": kind})
    frame["basket_t"] = frame.groupby("key")["t"].transform("min")
    frame = frame.sort_values(["user", "basket_t", "key", "t"], kind="stable").drop_duplicates(["key", "item"])
    baskets: list[list[np.ndarray]] = [[] for _ in range(len(user_ids))]
    times: list[list[float]] = [[] for _ in range(len(user_ids))]
    kinds: list[list[int]] = [[] for _ in range(len(user_ids))]
    users, items, keys, basket_t, codes = (frame[c].to_numpy() for c in ("user", "item", "key", "basket_t", "kind"))
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    for start, end in zip(starts, np.r_[starts[1:], len(keys)]):
        baskets[users[start]].append(items[start:end].astype(np.int64))
        times[users[start]].append(basket_t[start])
        kinds[users[start]].append(codes[start])
    event_kinds = [np.asarray(k, np.int64) for k in kinds] if basket_key == "event" else None
    interactions = Interactions(len(dataset.catalog), baskets, [np.asarray(t) for t in times], event_kinds)
    return interactions, np.asarray(user_ids, dtype=object)


def _task(history: Interactions, full: Interactions, users: np.ndarray, start: np.ndarray, end: np.ndarray) -> EvalTask:
    """Targets of each user u in `users`: unique items of baskets start[u]..end[u]-1."""
    targets = [np.unique(np.concatenate(full.baskets[u][start[u] : end[u]])) for u in users]
    return EvalTask(history, users, targets)


def split_interactions(full: Interactions, config: DataConfig) -> tuple[EvalTask, EvalTask]:
    if config.split == "last_session":
        from hyperrec.data.session_split import session_split  # it builds on this module's types

        return session_split(full, config)
    n_baskets = np.array([len(b) for b in full.baskets])
    if config.split in ("last_basket", "last_item"):
        valid_cut = np.maximum(n_baskets - 2, 0)
        test_cut = np.maximum(n_baskets - 1, 0)
        eligible = np.flatnonzero(n_baskets >= config.min_history + 2)
        # Users too short to evaluate keep all their baskets as training data.
        valid_keep = np.where(n_baskets >= config.min_history + 2, valid_cut, n_baskets)
        test_keep = np.where(n_baskets >= config.min_history + 2, test_cut, n_baskets)
        valid = _task(full.truncate(valid_keep), full, eligible, valid_cut, test_cut)
        test = _task(full.truncate(test_keep), full, eligible, test_cut, n_baskets)
        return valid, test
    all_times = np.concatenate([t for t in full.times if len(t)])
    t_valid, t_test = np.quantile(all_times, config.time_split_quantiles)
    valid_cut = np.array([np.searchsorted(t, t_valid, side="left") for t in full.times])
    test_cut = np.array([np.searchsorted(t, t_test, side="left") for t in full.times])
    valid_users = np.flatnonzero((valid_cut >= config.min_history) & (test_cut > valid_cut))
    test_users = np.flatnonzero((test_cut >= config.min_history) & (n_baskets > test_cut))
    valid = _task(full.truncate(valid_cut), full, valid_users, valid_cut, test_cut)
    test = _task(full.truncate(test_cut), full, test_users, test_cut, n_baskets)
    return valid, test


def make_split(dataset: Dataset, config: DataConfig) -> Split:
    basket_key = "event" if config.split in ("last_item", "last_session") else "order_id"
    full, user_ids = build_interactions(dataset, config.event_types, basket_key)
    if config.max_users is not None and config.max_users < full.n_users:
        keep = np.sort(np.random.default_rng(0).choice(full.n_users, config.max_users, replace=False))
        full = full.select(keep)
        user_ids = user_ids[keep]
    valid, test = split_interactions(full, config)
    if len(test.users) == 0:
        raise ValueError(f"{dataset.name}: no user has enough history for a '{config.split}' split (min_history={config.min_history})")
    return Split(valid, test, full, user_ids, dataset.catalog["item_id"].to_numpy(dtype=object))
