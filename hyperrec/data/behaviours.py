"""Item events as a multi-behaviour sequence: which kind of event each item came from and how long
after the event before it, in the codes both the models and the online state use.

- kind codes index `BEHAVIOURS`; a model's kind id is code + 1 (0 is padding).
- gap ids: 0 padding, 1 no earlier event or its time unknown, then 2.. by the seconds since the
  event before: under 10 s, 1 min, 10 min, 1 h, 1 day, 1 week, and later. Items of one basket
  share its time, so on basket data (Instacart) the gap says "same basket" or how far apart
  two baskets were.
- the live intent: what a shopper viewed, clicked or carted since their last purchase, the part of
  an event stream that a purchase-only model reads after the purchases; and the live cart.
"""

from __future__ import annotations

import numpy as np

BEHAVIOURS = ("view", "click", "add_to_cart", "remove_from_cart", "purchase")
INTENT = np.array([BEHAVIOURS.index(k) for k in ("view", "click", "add_to_cart")])  # kinds that show what they want now
REMOVE, PURCHASE = BEHAVIOURS.index("remove_from_cart"), BEHAVIOURS.index("purchase")
GAP_EDGES_S = np.array([10.0, 60.0, 600.0, 3_600.0, 86_400.0, 604_800.0])
N_KIND_IDS = len(BEHAVIOURS) + 1
N_GAP_IDS = len(GAP_EDGES_S) + 3


def gap_ids(times_s: np.ndarray) -> np.ndarray:
    """The gap id of each event (oldest first) from its time in seconds (NaN: unknown)."""
    gaps = np.diff(np.asarray(times_s, np.float64), prepend=np.nan)
    known = np.isfinite(gaps)
    return np.where(known, 2 + np.searchsorted(GAP_EDGES_S, np.where(known, gaps, 0.0), side="right"), 1).astype(np.int64)


def behaviour_inputs(items: np.ndarray, kinds: np.ndarray, times_s: np.ndarray, max_len: int) -> np.ndarray:
    """(3, max_len): item ids (1..n), kind ids and gap ids of the last max_len events, left-padded with 0.

    `items` are item ids 1..n, oldest first; gaps are taken over the whole sequence, so the oldest
    event kept still has its gap to the one before it."""
    out = np.zeros((3, max_len), np.int64)
    n = min(len(items), max_len)
    if n:
        out[0, max_len - n :] = items[-n:]
        out[1, max_len - n :] = np.asarray(kinds[-n:]) + 1
        out[2, max_len - n :] = gap_ids(times_s)[-n:]
    return out


def live_cart(items: np.ndarray, kinds: np.ndarray) -> dict[int, int]:
    """The cart these events leave (one unit per add, as event data records no quantity): adds minus removes, a purchase
    taking its item out, as the online state keeps it."""
    cart: dict[int, int] = {}
    add, remove = BEHAVIOURS.index("add_to_cart"), BEHAVIOURS.index("remove_from_cart")
    for item, kind in zip(items.tolist(), kinds.tolist()):
        if kind == add:
            cart[item] = cart.get(item, 0) + 1
        elif kind == remove and cart.get(item, 0) > 1:
            cart[item] -= 1
        elif kind in (remove, PURCHASE):
            cart.pop(item, None)
    return cart


def live_intent(items: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Items viewed, clicked or put in the cart after the last purchase, each once, by its last time; an item whose
    last such event took it out of the cart is left out (the shopper changed their mind)."""
    after = np.flatnonzero(kinds == PURCHASE)
    start = after[-1] + 1 if len(after) else 0
    kinds, items = kinds[start:], items[start:]
    keep = np.isin(kinds, INTENT) | (kinds == REMOVE)
    kinds, items = kinds[keep], items[keep]
    last = np.sort(len(items) - 1 - np.unique(items[::-1], return_index=True)[1])  # each item's last position
    return items[last][kinds[last] != REMOVE]
