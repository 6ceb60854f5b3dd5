"""Training examples for retrievers that read a user's history and predict a basket item.

For every basket after a user's first: the items bought before it (left-padded ids, 0 = pad)
and its time of day and day of week, once per item in the basket (the positive).
"""

from __future__ import annotations

import numpy as np

from hyperrec.data.sequences import Interactions


def hour_and_weekday(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """UTC hour 0..23 and weekday 0..6 (Monday = 0) of Unix times."""
    seconds = np.asarray(seconds, dtype=np.int64)
    return (seconds // 3600) % 24, (seconds // 86400 + 3) % 7  # 1970-01-01 was a Thursday


def basket_examples(interactions: Interactions, max_len: int) -> dict[str, np.ndarray]:
    histories, positives, times = [], [], []
    for user in range(interactions.n_users):
        baskets = interactions.baskets[user]
        flat = np.concatenate(baskets) + 1 if baskets else np.empty(0, np.int64)
        ends = np.cumsum([len(b) for b in baskets])
        for b in range(1, len(baskets)):
            seen = flat[max(0, ends[b - 1] - max_len) : ends[b - 1]]
            history = np.zeros(max_len, np.int64)
            history[max_len - len(seen) :] = seen
            for item in baskets[b]:
                histories.append(history)
                positives.append(item + 1)
                times.append(interactions.times[user][b])
    hour, weekday = hour_and_weekday(np.array(times))
    return {
        "items": np.stack(histories) if histories else np.zeros((0, max_len), np.int64),
        "positives": np.array(positives, dtype=np.int64),
        "hour": hour,
        "weekday": weekday,
        "device": np.zeros(len(positives), dtype=np.int64),  # purchases carry no device in Interactions
    }
