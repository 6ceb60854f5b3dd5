"""Item sequences as fixed-length arrays for sequence models.

Item indices become ids 1..n_items (0 is padding); sequences are left-padded so the most
recent item is always last. A user's baskets are read in order, items within a basket in the
order they were added.
"""

from __future__ import annotations

import numpy as np

from hyperrec.data.behaviours import PURCHASE, behaviour_inputs, gap_ids, live_intent
from hyperrec.data.sequences import Interactions


def flat_items(interactions: Interactions, user: int) -> np.ndarray:
    baskets = interactions.baskets[user]
    return np.concatenate(baskets) + 1 if baskets else np.empty(0, np.int64)


def flat_behaviour(interactions: Interactions, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item ids (1..n), kind codes and times (seconds) of the user's items, oldest first; a basket's items share its
    time, and data without kinds is purchases."""
    baskets = interactions.baskets[user]
    sizes = np.fromiter(map(len, baskets), np.int64, len(baskets))
    times = np.repeat(np.asarray(interactions.times[user], np.float64), sizes)
    if interactions.kinds is None:
        return flat_items(interactions, user), np.full(int(sizes.sum()), PURCHASE), times
    return flat_items(interactions, user), np.repeat(interactions.kinds[user], sizes), times


def served_items(interactions: Interactions, user: int) -> np.ndarray:
    """What a purchase-only encoder reads of the user's events when served (`UserState.sequence`): the purchases, then
    the live intent after the last one."""
    items, kinds, _ = flat_behaviour(interactions, user)
    if interactions.kinds is None:
        return items
    return np.concatenate([items[kinds == PURCHASE], live_intent(items, kinds)])


def pad_left(ids: np.ndarray, max_len: int) -> np.ndarray:
    """(max_len,) the last max_len of `ids`, left-padded with 0: the most recent item is always last."""
    out = np.zeros(max_len, np.int64)
    ids = ids[-max_len:]
    out[max_len - len(ids) :] = ids
    return out


def recent_items(interactions: Interactions, users: np.ndarray, max_len: int) -> np.ndarray:
    """(len(users), max_len) ids of each user's last max_len served items (`served_items`), left-padded with 0."""
    if not len(users):
        return np.zeros((0, max_len), np.int64)
    return np.stack([pad_left(served_items(interactions, user), max_len) for user in users])


def recent_behaviour(interactions: Interactions, users: np.ndarray, max_len: int) -> np.ndarray:
    """(len(users), 3, max_len): item, kind and gap ids of each user's last max_len events (`behaviour_inputs`)."""
    if not len(users):
        return np.zeros((0, 3, max_len), np.int64)
    return np.stack([behaviour_inputs(*flat_behaviour(interactions, user), max_len) for user in users])


def training_windows(interactions: Interactions, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training pairs: inputs (N, max_len) and targets (N, max_len), 0 = no target.

    Each user's sequence is cut from the end into windows of max_len + 1 items, so every
    item but the first is a target exactly once and older windows carry older history.
    """
    inputs, targets = [], []
    for user in range(interactions.n_users):
        items = flat_items(interactions, user)
        for end in range(len(items), 1, -max_len):
            window = items[max(0, end - max_len - 1) : end]
            x, y = np.zeros(max_len, np.int64), np.zeros(max_len, np.int64)
            x[max_len - len(window) + 1 :] = window[:-1]
            y[max_len - len(window) + 1 :] = window[1:]
            inputs.append(x)
            targets.append(y)
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len), np.int64)
    return np.stack(inputs), np.stack(targets)


def next_basket_windows(interactions: Interactions, max_len: int, max_basket: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Next-basket training pairs: inputs (N, max_len) and targets (N, max_len, max_basket).

    Windows end where a basket ends and reach back max_len items; at the position of each
    basket's last item the target is the next basket (up to `max_basket` of its items), elsewhere
    all zeros. Every basket but the last is a target exactly once.
    """
    inputs, targets = [], []
    for user in range(interactions.n_users):
        baskets = interactions.baskets[user]
        if len(baskets) < 2:
            continue
        items = np.concatenate(baskets) + 1
        ends = np.cumsum([len(b) for b in baskets])  # flat index after each basket
        last = len(baskets) - 2  # the newest basket whose successor is known
        while last >= 0:  # each window ends where a basket ends; the next one where this one's first target-free basket ends
            end = ends[last]
            start = max(0, end - max_len)
            x = np.zeros(max_len, np.int64)
            y = np.zeros((max_len, max_basket), np.int64)
            x[max_len - (end - start) :] = items[start:end]
            for b in range(last, -1, -1):
                if ends[b] <= start:
                    break
                nxt = baskets[b + 1][:max_basket] + 1
                y[max_len - (end - ends[b]) - 1, : len(nxt)] = nxt
            inputs.append(x)
            targets.append(y)
            last = b if ends[b] <= start else -1
    if not inputs:
        return np.zeros((0, max_len), np.int64), np.zeros((0, max_len, max_basket), np.int64)
    return np.stack(inputs), np.stack(targets)


def behaviour_windows(interactions: Interactions, max_len: int) -> dict[str, np.ndarray]:
    """Multi-behaviour training windows, cut from the end of each user's events as `training_windows` cuts:
    `items`, `kinds`, `gaps` (N, max_len) inputs; `targets`: the next event's item (next engagement);
    `purchase_targets`: the item of the next purchase after each position, wherever it is (0: none)."""
    names = ("items", "kinds", "gaps", "targets", "purchase_targets")
    out: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for user in range(interactions.n_users):
        items, kinds, times = flat_behaviour(interactions, user)
        bought = np.flatnonzero(kinds == PURCHASE)
        after = np.searchsorted(bought, np.arange(len(items)), side="right")  # the next purchase's index into `bought`
        next_purchase = np.where(after < len(bought), items[bought[np.minimum(after, len(bought) - 1)]], 0) if len(bought) else 0 * items
        per_event = np.stack([items, kinds + 1, gap_ids(times), next_purchase])
        for end in range(len(items), 1, -max_len):
            start = max(0, end - max_len - 1)
            window = np.zeros((5, max_len), np.int64)
            n = end - start - 1
            window[:3, max_len - n :] = per_event[:3, start : end - 1]
            window[3, max_len - n :] = items[start + 1 : end]
            window[4, max_len - n :] = per_event[3, start : end - 1]
            for name, row in zip(names, window):
                out[name].append(row)
    return {name: np.stack(rows) if rows else np.zeros((0, max_len), np.int64) for name, rows in out.items()}
