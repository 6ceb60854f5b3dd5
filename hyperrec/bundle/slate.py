"""Turning scored candidates into a list: the top k, and the exploration slot's rearrangement."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k best candidates, best first (ties: the earlier candidate)."""
    return np.argsort(-scores, kind="stable")[:k]


def reserve_explore_slots(order: np.ndarray, new_to_user: np.ndarray, slots: int, k: int) -> np.ndarray:
    """`order` (candidate positions, best first) rearranged so that its first k hold at least
    `slots` items new to the user where the candidates have them: the best new items from below
    position k take the places of the lowest non-new items in the top k (the exploration slot)."""
    head, tail = list(order[:k]), list(order[k:])
    missing = slots - int(sum(new_to_user[p] for p in head))
    if missing <= 0:
        return np.asarray(order)
    promoted = [p for p in tail if new_to_user[p]][:missing]
    demoted = [p for p in reversed(head) if not new_to_user[p]][: len(promoted)]
    head = [p for p in head if p not in demoted] + promoted
    tail = demoted[::-1] + [p for p in tail if p not in promoted]
    return np.array(head + tail, dtype=np.int64)
