"""A user's interactions back as contract event records, to replay a held-out history through `/events`.

Event data (with kinds) gives one record per event; a purchase's `order_id` is its session (the shop
checks out once per session, as `Interactions.orders` assumes). Basket data gives one purchase per
item of each basket, the basket its order.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from hyperrec.data.behaviours import BEHAVIOURS, PURCHASE
from hyperrec.data.sequences import Interactions, session_bounds


def history_records(history: Interactions, user: int, item_ids: np.ndarray, shopper: str) -> list[dict]:
    """The records of `user`'s events (or baskets) under the user id `shopper`, oldest first."""
    times = np.asarray(history.times[user], np.float64)
    sessions = np.searchsorted(session_bounds(times), np.arange(len(times)), side="right")
    kinds = history.kinds[user] if history.kinds is not None else np.full(len(times), PURCHASE)
    records = []
    for b, (basket, kind, t) in enumerate(zip(history.baskets[user], kinds, times)):
        group = sessions[b] if history.kinds is not None else b
        base = {
            "event_type": BEHAVIOURS[kind],
            "user_id": shopper,
            "session_id": f"{shopper}-s{group}",
            "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
        }
        order = {"order_id": f"{shopper}-o{group}"} if kind == PURCHASE else {}
        records += [base | order | {"item_id": str(item_ids[item])} for item in basket]
    return records
