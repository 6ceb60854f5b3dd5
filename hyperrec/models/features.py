"""Ranking features for (user, candidate item) pairs, computed from an interaction history.

Pure numpy: `summarize(history)` flattens the history once into per-(user, item), per-user and
per-item aggregates (no loop over pairs: every (user, item) pair is one int64 key, user * n_items
+ item, and pair lookups are `searchsorted` over the sorted keys); the `*_features` functions then
turn a batch of pairs into named float columns. Everything is computed from `history` alone, so a
caller that passes the baskets *before* a label basket gets features that cannot see the label.

Feature groups (column names as returned):
- user x item (`pair_features`): purchase count, baskets since last bought (recency; NEVER if
  never), days since last bought, time-decayed frequency for a few decay rates (raw and as a share
  of the user's decayed basket mass), share of the user's baskets containing it, purchases per
  basket since first bought, current streak of consecutive baskets, mean gap in baskets (and days)
  between the user's purchases of it and how overdue it is, how overdue against the item's global
  re-buy cycle, mean position in the basket (baskets keep the order items were added), "new to the user".
- user: number of baskets, mean basket size, distinct items, repeat ratio, share of purchases
  re-buying the previous basket, mean re-buy gap, mean days between baskets.
- item: popularity (baskets containing it), distinct buyers, popularity trend (share among the
  most recent baskets vs overall), global repeat rate (of its buyers, the share who bought it
  again), share of its purchases that are re-buys, purchases per buyer, re-buy cycle, mean basket position.
- collaborative and basket context: population signals, in collaborative_features.py.
- each retriever (`retriever_features`): score, score relative to the user's best, reciprocal and
  log rank, proposed-or-not flag.
- catalog (`catalog_features`, when the catalog has any): the user's share of purchases in the
  item's category, price (and vs the user's usual), margin, known-or-not flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hyperrec.data.catalog import UNKNOWN_CATEGORY
from hyperrec.data.sequences import Interactions

NEVER = 1000.0  # "baskets since last bought" / "days since last bought" for items never bought
DAY = 86_400.0


@dataclass(frozen=True)
class FlatHistory:
    """Every (user, basket, item) line of a history as parallel arrays."""

    user: np.ndarray  # int64
    pos: np.ndarray  # basket index within the user's history, 0 = oldest
    item: np.ndarray  # int64
    time: np.ndarray  # seconds of the basket
    slot: np.ndarray  # relative position within its basket: 0 = first item added, 1 = last
    n_baskets: np.ndarray  # per user


def flatten(history: Interactions) -> FlatHistory:
    n_baskets = np.array([len(b) for b in history.baskets], dtype=np.int64)
    sizes = np.array([len(basket) for user in history.baskets for basket in user], dtype=np.int64)
    items = [basket for user in history.baskets for basket in user]
    times = np.concatenate([np.asarray(t, dtype=np.float64) for t in history.times]) if history.n_users else np.empty(0)
    basket_user = np.repeat(np.arange(history.n_users), n_baskets)
    basket_pos = np.arange(len(sizes)) - np.repeat(np.cumsum(n_baskets) - n_baskets, n_baskets)
    line_in_basket = np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return FlatHistory(
        user=np.repeat(basket_user, sizes),
        pos=np.repeat(basket_pos, sizes),
        item=np.concatenate(items).astype(np.int64) if items else np.empty(0, np.int64),
        time=np.repeat(times[: len(sizes)], sizes),
        slot=line_in_basket / np.maximum(np.repeat(sizes, sizes) - 1, 1),
        n_baskets=n_baskets,
    )


@dataclass(frozen=True)
class HistorySummary:
    """Aggregates of one history that every feature of a pair is read from."""

    n_items: int
    decays: tuple[float, ...]
    flat: FlatHistory
    # one entry per distinct (user, item) pair, sorted by key = user * n_items + item
    keys: np.ndarray
    count: np.ndarray  # baskets of the user containing the item
    last_pos: np.ndarray  # index of the last such basket
    first_pos: np.ndarray
    last_time: np.ndarray  # seconds
    first_time: np.ndarray
    decayed: np.ndarray  # (len(keys), len(decays)): sum over those baskets of decay ** baskets_ago
    mean_slot: np.ndarray  # mean relative position in the basket (baskets keep the order items were added)
    streak: np.ndarray  # consecutive most recent baskets of the user containing the item (0 if not the last)
    # per user
    n_baskets: np.ndarray
    mean_basket_size: np.ndarray
    n_distinct: np.ndarray
    repeat_ratio: np.ndarray  # share of the user's purchases that re-buy an item bought before
    mean_gap_days: np.ndarray  # mean days between consecutive baskets (0 with one basket)
    last_rebuy_share: np.ndarray  # share of the user's purchases after the first basket that re-buy the previous basket
    log_rebuy_gap: np.ndarray  # mean log baskets between the user's re-buys of an item, shrunk to the global mean
    last_basket_time: np.ndarray
    decayed_mass: np.ndarray  # (n_users, len(decays)): sum over all baskets of decay ** baskets_ago
    # per item
    popularity: np.ndarray  # baskets containing the item
    buyers: np.ndarray  # distinct users who bought it
    reorder_share: np.ndarray  # share of the item's purchases that were re-buys, smoothed
    trend: np.ndarray  # log of (share among the most recent baskets) / (share among all), smoothed
    item_log_rebuy_gap: np.ndarray  # mean log baskets between re-buys of the item (all users), shrunk
    item_slot: np.ndarray  # the item's mean relative position in baskets (0.5 if never bought)
    repeat_rate: np.ndarray  # of the item's buyers, the share who bought it in 2+ baskets, smoothed

    def user_items(self, user: int) -> np.ndarray:
        """The items user `user` has bought, ascending."""
        lo, hi = np.searchsorted(self.keys, [user * self.n_items, (user + 1) * self.n_items])
        return self.keys[lo:hi] - user * self.n_items

    def lookup(self, users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each pair: its row in the per-pair arrays and whether the user ever bought the item."""
        key = np.asarray(users, np.int64) * self.n_items + np.asarray(items, np.int64)
        row = np.minimum(np.searchsorted(self.keys, key), max(len(self.keys) - 1, 0))
        found = self.keys[row] == key if len(self.keys) else np.zeros(len(key), bool)
        return row, found


def summarize(
    history: Interactions,
    decays: tuple[float, ...] = (0.5, 0.8, 0.95),
    trend_fraction: float = 0.2,
    repeat_prior: float = 10.0,
) -> HistorySummary:
    """Aggregate `history`; `trend_fraction` is the share of baskets (latest by time) that count
    as "recent" for the popularity trend, `repeat_prior` pseudo-buyers shrink rare items' repeat
    rate towards the global one."""
    flat = flatten(history)
    n_users, n_items = history.n_users, history.n_items
    ago = (flat.n_baskets[flat.user] - 1 - flat.pos).astype(np.float64)

    # per (user, item)
    key = flat.user * n_items + flat.item
    order = np.argsort(key, kind="stable")  # within a key, baskets stay oldest first
    key_sorted = key[order]
    keys, starts, count = np.unique(key_sorted, return_index=True, return_counts=True)
    ends = starts + count - 1
    pos_sorted, time_sorted, ago_sorted = flat.pos[order], flat.time[order], ago[order]
    # streak: the k-th line from a key's end is in the streak iff it is k - 1 baskets ago
    from_end = np.repeat(starts + count - 1, count) - np.arange(len(key_sorted))
    streak = np.bincount(np.repeat(np.arange(len(keys)), count), weights=(ago_sorted == from_end), minlength=len(keys))
    # re-buys: a line whose (user, item) was bought before, `rebuy_gap` baskets earlier
    rebuy = np.r_[False, key_sorted[1:] == key_sorted[:-1]] if len(key_sorted) else np.zeros(0, bool)
    rebuy_gap = np.diff(pos_sorted, prepend=0).astype(np.float64)[rebuy]
    rebuy_user, rebuy_item = flat.user[order][rebuy], flat.item[order][rebuy]
    global_log_gap = float(np.log(rebuy_gap).mean()) if len(rebuy_gap) else 0.0
    decayed = np.stack([np.add.reduceat(d**ago_sorted, starts) if len(keys) else np.empty(0) for d in decays], axis=1)

    # per user
    n_baskets = flat.n_baskets
    lines = np.bincount(flat.user, minlength=n_users).astype(np.float64)
    pair_user = keys // n_items
    n_distinct = np.bincount(pair_user, minlength=n_users).astype(np.float64)
    # how the user re-buys: share of purchases (after the first basket) that were in the previous
    # basket, and the mean log gap of the user's re-buys
    later_lines = np.maximum(np.bincount(flat.user[flat.pos >= 1], minlength=n_users), 1).astype(np.float64)
    user_rebuys = np.bincount(rebuy_user, minlength=n_users)
    user_last_rebuy = np.bincount(rebuy_user[rebuy_gap == 1], minlength=n_users) / later_lines
    user_log_gap = (np.bincount(rebuy_user, weights=np.log(rebuy_gap), minlength=n_users) + 2.0 * global_log_gap) / (user_rebuys + 2.0)
    basket_times = [np.asarray(t, np.float64) for t in history.times]
    last_basket_time = np.array([t[-1] if len(t) else 0.0 for t in basket_times])
    span = np.array([(t[-1] - t[0]) / DAY if len(t) > 1 else 0.0 for t in basket_times])
    basket_ago = [np.arange(n - 1, -1, -1, dtype=np.float64) for n in n_baskets]
    decayed_mass = np.array([[float((d**a).sum()) for d in decays] for a in basket_ago]).reshape(n_users, len(decays))

    # per item
    popularity = np.bincount(flat.item, minlength=n_items).astype(np.float64)
    pair_item = keys % n_items
    buyers = np.bincount(pair_item, minlength=n_items).astype(np.float64)
    repeaters = np.bincount(pair_item[count >= 2], minlength=n_items).astype(np.float64)
    global_rate = repeaters.sum() / max(buyers.sum(), 1.0)
    # typical re-buy cycle of the item (baskets between purchases by the same user), shrunk to the global one
    item_rebuys = np.bincount(rebuy_item, minlength=n_items)
    item_log_gap = (np.bincount(rebuy_item, weights=np.log(rebuy_gap), minlength=n_items) + repeat_prior * global_log_gap) / (
        item_rebuys + repeat_prior
    )
    global_reorder = (popularity.sum() - buyers.sum()) / max(popularity.sum(), 1.0)
    if len(flat.time):
        cutoff = np.quantile(flat.time, 1.0 - trend_fraction)
        recent = np.bincount(flat.item[flat.time >= cutoff], minlength=n_items).astype(np.float64)
    else:
        recent = np.zeros(n_items)
    trend = np.log((recent + 1.0) / (recent.sum() + n_items)) - np.log((popularity + 1.0) / (popularity.sum() + n_items))

    return HistorySummary(
        n_items=n_items,
        decays=tuple(decays),
        flat=flat,
        keys=keys,
        count=count.astype(np.float64),
        last_pos=pos_sorted[ends] if len(keys) else np.empty(0, np.int64),
        first_pos=pos_sorted[starts] if len(keys) else np.empty(0, np.int64),
        last_time=time_sorted[ends] if len(keys) else np.empty(0),
        first_time=time_sorted[starts] if len(keys) else np.empty(0),
        decayed=decayed.reshape(len(keys), len(decays)),
        streak=streak,
        mean_slot=np.add.reduceat(flat.slot[order], starts) / count if len(keys) else np.empty(0),
        n_baskets=n_baskets,
        mean_basket_size=lines / np.maximum(n_baskets, 1),
        n_distinct=n_distinct,
        repeat_ratio=(lines - n_distinct) / np.maximum(lines, 1.0),
        mean_gap_days=span / np.maximum(n_baskets - 1, 1),
        last_rebuy_share=user_last_rebuy,
        log_rebuy_gap=user_log_gap,
        last_basket_time=last_basket_time,
        decayed_mass=decayed_mass,
        popularity=popularity,
        buyers=buyers,
        reorder_share=(popularity - buyers + repeat_prior * global_reorder) / (popularity + repeat_prior),
        trend=trend,
        item_log_rebuy_gap=item_log_gap,
        item_slot=(np.bincount(flat.item, weights=flat.slot, minlength=n_items) + 0.5 * repeat_prior) / (popularity + repeat_prior),
        repeat_rate=(repeaters + repeat_prior * global_rate) / (buyers + repeat_prior),
    )


def pair_features(summary: HistorySummary, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """User x item, user and item features of each (users[j], items[j]) pair."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    row, found = summary.lookup(users, items)
    nb = summary.n_baskets[users].astype(np.float64)
    count = np.where(found, summary.count[row] if len(summary.keys) else 0.0, 0.0)
    recency = np.where(found, nb - 1 - (summary.last_pos[row] if len(summary.keys) else 0), NEVER)
    first_ago = np.where(found, nb - 1 - (summary.first_pos[row] if len(summary.keys) else 0), NEVER)
    days = np.where(found, (summary.last_basket_time[users] - (summary.last_time[row] if len(summary.keys) else 0.0)) / DAY, NEVER)
    # mean gap in baskets between purchases; with one purchase, the history length stands in
    gap = np.where(count >= 2, (first_ago - recency) / np.maximum(count - 1, 1), nb)
    # the same in days, against the days until the user's next basket is expected
    first_days = np.where(found, (summary.last_basket_time[users] - (summary.first_time[row] if len(summary.keys) else 0.0)) / DAY, NEVER)
    span_days = summary.mean_gap_days[users] * np.maximum(nb - 1, 1)
    gap_days = np.where(count >= 2, (first_days - days) / np.maximum(count - 1, 1), np.maximum(span_days, 1.0))
    next_days = days + summary.mean_gap_days[users]
    out = {
        "count": count,
        "log_count": np.log1p(count),
        "recency": recency,
        "log_recency": np.log1p(recency),
        "inv_recency": np.where(found, 1.0 / (1.0 + recency), 0.0),
        "log_days_since": np.log1p(days),
        "basket_share": count / np.maximum(nb, 1.0),
        "mean_gap": gap,
        "overdue": np.where(found, (recency + 1.0) / np.maximum(gap, 1.0), 0.0),
        "overdue_item_cycle": np.where(found, np.log1p(recency) - summary.item_log_rebuy_gap[items], 0.0),
        "overdue_days": np.where(found, np.log1p(next_days) - np.log1p(gap_days), 0.0),
        "rate_since_first": np.where(found, count / (first_ago + 1.0), 0.0),
        "mean_slot": np.where(found, summary.mean_slot[row] if len(summary.keys) else 0.5, 0.5),
        "streak": np.where(found, summary.streak[row] if len(summary.keys) else 0.0, 0.0),
        "new_to_user": (~found).astype(np.float64),
    }
    for d_index, d in enumerate(summary.decays):
        raw = np.where(found, summary.decayed[row, d_index] if len(summary.keys) else 0.0, 0.0)
        out[f"decayed_{d:g}"] = raw
        out[f"decayed_share_{d:g}"] = raw / np.maximum(summary.decayed_mass[users, d_index], 1e-12)
    out.update(
        user_log_baskets=np.log1p(nb),
        user_mean_basket_size=summary.mean_basket_size[users],
        user_log_distinct=np.log1p(summary.n_distinct[users]),
        user_repeat_ratio=summary.repeat_ratio[users],
        user_log_gap_days=np.log1p(summary.mean_gap_days[users]),
        user_last_rebuy_share=summary.last_rebuy_share[users],
        user_log_rebuy_gap=summary.log_rebuy_gap[users],
        item_log_popularity=np.log1p(summary.popularity[items]),
        item_log_buyers=np.log1p(summary.buyers[items]),
        item_trend=summary.trend[items],
        item_repeat_rate=summary.repeat_rate[items],
        item_reorder_share=summary.reorder_share[items],
        item_slot=summary.item_slot[items],
        item_log_rebuy_gap=summary.item_log_rebuy_gap[items],
        item_mean_count=summary.popularity[items] / np.maximum(summary.buyers[items], 1.0),
    )
    return out


def ranks(scores: np.ndarray) -> np.ndarray:
    """0-based rank of every item in each row of `scores` (best = 0; ties by item index)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    out = np.empty(scores.shape, dtype=np.int64)
    np.put_along_axis(out, order, np.broadcast_to(np.arange(scores.shape[1]), scores.shape), axis=1)
    return out


def retriever_features(
    name: str, scores: np.ndarray, rank: np.ndarray, rows: np.ndarray, items: np.ndarray, top_n: int
) -> dict[str, np.ndarray]:
    """Features of one candidate source for pairs (rows[j] of the batch's score matrix, items[j]).

    `scores` and `rank` are (batch users, n_items); `top_n` is how many items the source proposes,
    so `{name}_proposed` is 0 for candidates that came from elsewhere.
    """
    s = scores[rows, items].astype(np.float64)
    s = np.where(np.isfinite(s), s, 0.0)
    finite = np.where(np.isfinite(scores), scores, 0.0)
    best = np.abs(finite).max(axis=1) if scores.shape[1] else np.zeros(len(scores))
    r = rank[rows, items].astype(np.float64)
    return {
        f"{name}_score": np.sign(s) * np.log1p(np.abs(s)),
        f"{name}_score_rel": s / np.maximum(best[rows], 1e-12),
        f"{name}_inv_rank": 1.0 / (1.0 + r),
        f"{name}_log_rank": np.log1p(r),
        f"{name}_proposed": (r < top_n).astype(np.float64),
    }


def catalog_has_signal(catalog: pd.DataFrame | None) -> bool:
    """Does the catalog know anything beyond item ids (a category, a price or a margin)?"""
    if catalog is None or len(catalog) == 0:
        return False
    has_category = "category" in catalog and (catalog["category"].astype(str) != UNKNOWN_CATEGORY).any()
    has_price = "price" in catalog and catalog["price"].notna().any()
    has_margin = "margin" in catalog and catalog["margin"].notna().any()
    return bool(has_category or has_price or has_margin)


def item_value(catalog: pd.DataFrame | None, n_items: int) -> np.ndarray | None:
    """Business value of selling each item once: price * margin where both are known, else the
    margin, else the price; None when the catalog knows neither. Unknown values get the median."""
    if catalog is None:
        return None
    price = catalog["price"].to_numpy(np.float64, na_value=np.nan) if "price" in catalog else np.full(n_items, np.nan)
    margin = catalog["margin"].to_numpy(np.float64, na_value=np.nan) if "margin" in catalog else np.full(n_items, np.nan)
    if np.isfinite(margin).any() and np.isfinite(price).any():
        value = price * margin
    elif np.isfinite(margin).any():
        value = margin
    elif np.isfinite(price).any():
        value = price
    else:
        return None
    return np.where(np.isfinite(value), value, np.nanmedian(value))


def catalog_features(catalog: pd.DataFrame, summary: HistorySummary, users: np.ndarray, items: np.ndarray) -> dict[str, np.ndarray]:
    """Category match, price and margin features; `catalog` rows are the item indices."""
    users, items = np.asarray(users, np.int64), np.asarray(items, np.int64)
    flat, n_users = summary.flat, len(summary.n_baskets)
    category = pd.factorize(catalog["category"].astype(str).to_numpy())[0].astype(np.int64)
    n_categories = int(category.max()) + 1 if len(category) else 1
    # the user's purchases per category, as a share of all the user's purchases
    user_category = np.bincount(flat.user * n_categories + category[flat.item], minlength=n_users * n_categories)
    lines = np.maximum(np.bincount(flat.user, minlength=n_users), 1).astype(np.float64)
    out = {"category_share": user_category[users * n_categories + category[items]] / lines[users]}
    price = catalog["price"].to_numpy(np.float64, na_value=np.nan)
    log_price = np.log1p(np.where(np.isfinite(price), price, np.nanmedian(price) if np.isfinite(price).any() else 0.0))
    user_price = np.bincount(flat.user, weights=log_price[flat.item], minlength=n_users) / lines
    out.update(
        log_price=log_price[items],
        price_vs_user=log_price[items] - user_price[users],
        price_known=np.isfinite(price[items]).astype(np.float64),
    )
    margin = catalog["margin"].to_numpy(np.float64, na_value=np.nan)
    out["margin"] = np.where(np.isfinite(margin[items]), margin[items], 0.0)
    out["margin_known"] = np.isfinite(margin[items]).astype(np.float64)
    return out
