"""The session task (`data.split: last_session`): mid-session, rank what the shopper clicks next or buys.

Each user's events (one per basket, with their kinds: `build_interactions(..., basket_key="event")`)
are cut into sessions at 30 minutes of inactivity (`sequences.session_bounds`). The test session is
a user's last one, the validation session the one before. A session is cut at its middle view (the
viewed half rounded down): the model sees everything before that view, and is asked for

- `session_target: click`: the item of the first click at or after the cut;
- `session_target: purchase`: the items the session bought at or after the cut.

A user is in a task when their session has at least two views, the target, and `min_history`
events before the cut. The training data (the validation history) ends at the validation cut of
the users in that task and at the test session's start of the others in the test task, so no
target of either task is trained on. `anonymous_test` hides each test user's events before the
session: what an anonymous shopper's answer has to go on.
"""

from __future__ import annotations

import numpy as np

from hyperrec.config import DataConfig
from hyperrec.data.behaviours import BEHAVIOURS, PURCHASE
from hyperrec.data.sequences import EvalTask, Interactions, session_bounds

VIEW, CLICK = BEHAVIOURS.index("view"), BEHAVIOURS.index("click")


def _session_cut(items: np.ndarray, kinds: np.ndarray, start: int, end: int, target: str) -> tuple[int, np.ndarray] | None:
    """(cut, target items) of the session [start, end), or None when it has too few views or no target."""
    views = start + np.flatnonzero(kinds[start:end] == VIEW)
    if len(views) < 2:
        return None
    cut = int(views[len(views) // 2])
    after = np.arange(cut, end)
    if target == "click":
        clicks = after[kinds[cut:end] == CLICK]
        return (cut, items[clicks[:1]]) if len(clicks) else None
    bought = np.unique(items[after[kinds[cut:end] == PURCHASE]])
    return (cut, bought) if len(bought) else None


def _window(full: Interactions, start: np.ndarray, end: np.ndarray) -> Interactions:
    """Every user's events start[u]..end[u]-1 (`full` has kinds: `session_split` checked)."""
    return Interactions(
        full.n_items,
        [b[s:e] for b, s, e in zip(full.baskets, start, end)],
        [t[s:e] for t, s, e in zip(full.times, start, end)],
        [k[s:e] for k, s, e in zip(full.kinds, start, end)],
    )


def session_split(full: Interactions, config: DataConfig) -> tuple[EvalTask, EvalTask]:
    if full.kinds is None:
        raise ValueError("data.split last_session needs event data (one basket per event, with its kind)")
    n_users = full.n_users
    lengths = np.array([len(b) for b in full.baskets], np.int64)
    cuts = {"valid": np.full(n_users, -1), "test": np.full(n_users, -1)}
    targets: dict[str, dict[int, np.ndarray]] = {"valid": {}, "test": {}}
    test_start = lengths.copy()
    for u in range(n_users):
        if not lengths[u]:
            continue
        items = np.array([b[0] for b in full.baskets[u]], np.int64)
        bounds = session_bounds(full.times[u])
        for name, at in (("test", len(bounds) - 2), ("valid", len(bounds) - 3)):
            if at < 0:
                continue
            found = _session_cut(items, full.kinds[u], int(bounds[at]), int(bounds[at + 1]), config.session_target)
            if found is not None and found[0] >= config.min_history:
                cuts[name][u], targets[name][u] = found
        if cuts["test"][u] >= 0:
            test_start[u] = bounds[-2]
    valid_users, test_users = np.flatnonzero(cuts["valid"] >= 0), np.flatnonzero(cuts["test"] >= 0)
    valid_end = np.where(cuts["valid"] >= 0, cuts["valid"], test_start)
    test_end = np.where(cuts["test"] >= 0, cuts["test"], lengths)
    zero = np.zeros(n_users, np.int64)
    test_begin = np.where(cuts["test"] >= 0, test_start, 0) if config.anonymous_test else zero
    valid = EvalTask(_window(full, zero, valid_end), valid_users, [targets["valid"][u] for u in valid_users])
    test = EvalTask(_window(full, test_begin, test_end), test_users, [targets["test"][u] for u in test_users])
    return valid, test
