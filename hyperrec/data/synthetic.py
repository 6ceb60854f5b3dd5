"""A seeded simulated shop: contract events, a catalog, and the ground truth behind them.

The model. Item i has a category c(i), a latent vector v_i = centre_c + e_i, a popularity bias b_i
(its scale is `item_appeal`) and a price p_i. User u has a taste t_u(day) (a mixture of category centres plus a daily random
walk) and a price sensitivity s_u. The true preference is the affinity

    a(u, i, day) = t_u(day) . v_i + b_i - s_u * log p_i

and a view in a session on `day` is a draw from softmax_i a(u, i, day) (repeated draws of an item
within a session are dropped). Views go down a funnel (click -> add_to_cart, never for items out of
stock -> remove_from_cart or purchase, one order per session); with the user's repeat propensity a
purchase instead re-buys one of the user's earlier purchases.

Sampling approximation. A softmax over a million items per session is too slow, so each session
draws CANDIDATES items from a proposal q (category by t_u . centre_c - s_u * mean log price of
c + log sum of exp(b) in c, then item by exp(b) within the category) and draws its views from the
candidates with importance weights exp(a) / q (sampling-importance-resampling). This converges to
the softmax as CANDIDATES grows; the weights only depend on e_i and the item's price relative to
its category, so they vary little and 64 candidates are close to exact (tests/data/test_synthetic.py
compares first views with the exact softmax).

Events are generated `chunk_users` users at a time: memory is the catalog and user arrays plus
roughly 70 KB per user of a chunk. Taste drift is stateless: day d's step for user u comes from a counter-based hash of
(seed, u, d), so `preference` can rebuild any user's taste at any day without storing the walk.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from hyperrec.config import SyntheticConfig
from hyperrec.data.catalog import normalize_catalog
from hyperrec.data.dataset import Dataset
from hyperrec.data.events import normalize_events
from hyperrec.data.offline_store import OfflineStore
from hyperrec.progress import progress

START = np.datetime64("2024-01-01T00:00:00", "us")
CANDIDATES = 64  # candidate items per session (see the module docstring)
VIEWS_PER_SESSION = 4.0  # mean views beyond the first
P_CLICK, P_CART, P_REMOVE, P_CHECKOUT, P_SEARCH = 0.35, 0.35, 0.1, 0.75, 0.25
DEVICES = np.array(["web", "ios", "android"], dtype=object)
CHANNELS = np.array(["direct", "organic", "paid", "email", "social"], dtype=object)
CHANNEL_P = [0.4, 0.3, 0.15, 0.1, 0.05]
EVENT_KINDS = np.array(["search", "view", "click", "add_to_cart", "remove_from_cart", "purchase"], dtype=object)
_WORDS = (
    "produce",
    "dairy",
    "bakery",
    "beverages",
    "snacks",
    "frozen",
    "pantry",
    "meat",
    "seafood",
    "household",
    "personal care",
    "baby",
    "pets",
    "electronics",
    "books",
    "toys",
    "sports",
    "garden",
    "kitchen",
    "clothing",
    "shoes",
    "beauty",
    "health",
    "office",
)
_U64 = np.uint64


def _labels(prefix: str, numbers: np.ndarray, suffix: str | np.ndarray = "") -> np.ndarray:
    """f"{prefix}{n}{suffix}" for every n, as an object array (vectorised by pandas' string ops)."""
    text = prefix + pd.Series(numbers).astype("str")
    if not isinstance(suffix, str):
        suffix = pd.Series(suffix)
    return (text + suffix).to_numpy(dtype=object)


def _sample_rows(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: draw k picks a column of row rows[k] of cdf (R, K), whose rows end at exactly 1."""
    k = cdf.shape[1]
    flat = (cdf + np.arange(len(cdf))[:, None]).ravel()  # row r spans (r, r + 1]
    return np.minimum(np.searchsorted(flat, rows + u, side="right") - rows * k, k - 1)


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """For a sorted array of group ids, the index of the first element of each element's group."""
    first = np.r_[True, groups[1:] != groups[:-1]]
    return np.maximum.accumulate(np.where(first, np.arange(len(groups)), 0))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: uint64 counters -> well-mixed uint64 (wrap-around is intended)."""
    x = (x ^ (x >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> _U64(27))) * _U64(0x94D049BB133111EB)
    return x ^ (x >> _U64(31))


def _rebuy(rng: np.random.Generator, users: np.ndarray, sessions: np.ndarray, items: np.ndarray, propensity: np.ndarray) -> np.ndarray:
    """Purchases sorted by (user, session): with the user's propensity, each takes the item of one of
    the user's purchases in earlier sessions, chosen uniformly (so items re-bought often are re-bought
    more). A chosen purchase may itself be a repeat: chains resolve by pointer jumping."""
    n = len(items)
    user_first, session_first = _group_starts(users), _group_starts(sessions)
    earlier = session_first - user_first
    repeat = (earlier > 0) & (rng.random(n) < propensity[users])
    parent = np.where(repeat, user_first + (rng.random(n) * earlier).astype(np.int64), np.arange(n))
    while np.any(parent[parent] != parent):
        parent = parent[parent]
    return items[parent]


class SyntheticShop:
    def __init__(self, config: SyntheticConfig):
        self.config = config
        rng = np.random.default_rng([config.seed, 0])
        self._salt = _U64(np.random.SeedSequence([config.seed, 1]).generate_state(1, np.uint64)[0])
        n_cat = min(config.n_categories, config.n_items)
        cat_share = 1.0 / np.arange(1, n_cat + 1)  # Zipf category sizes and user interest
        cat_share /= cat_share.sum()
        self._init_items(rng, cat_share)
        self._init_users(rng, cat_share)

    def _init_items(self, rng: np.random.Generator, cat_share: np.ndarray) -> None:
        """Categories (each non-empty), clustered vectors, skewed popularity, lognormal prices, the catalog."""
        cfg, n_cat = self.config, len(cat_share)
        d = cfg.taste_dim
        cat = np.r_[np.arange(n_cat), rng.choice(n_cat, cfg.n_items - n_cat, p=cat_share)]
        self.item_category = rng.permutation(cat)
        self._centres = rng.normal(0, 2 / np.sqrt(d), (n_cat, d)).astype(np.float32)
        # e_i stored (d, n_items) so that one coordinate for many items is a contiguous gather.
        self._offsets = rng.normal(0, 0.7 / np.sqrt(d), (d, cfg.n_items)).astype(np.float32)
        self.item_bias = (cfg.item_appeal * rng.normal(0, 1.2, cfg.n_items)).astype(np.float32)
        log_price_mean = rng.uniform(np.log(2), np.log(150), n_cat)
        log_price = log_price_mean[self.item_category] + rng.normal(0, 0.4, cfg.n_items)
        self.item_price = np.maximum(np.round(np.exp(log_price), 2), 0.5)
        self._log_price = np.log(self.item_price).astype(np.float32)
        cat_log_price = np.bincount(self.item_category, self._log_price) / np.bincount(self.item_category)
        self._price_dev = (self._log_price - cat_log_price[self.item_category]).astype(np.float32)
        self._cat_log_price = cat_log_price.astype(np.float32)
        stock = np.where(rng.random(cfg.n_items) < 0.03, 0, 1 + rng.poisson(50, cfg.n_items))
        self._in_stock = stock > 0
        self.category_names = np.array(
            [_WORDS[k % len(_WORDS)] + (f" {k // len(_WORDS) + 1}" if k >= len(_WORDS) else "") for k in range(n_cat)],
            dtype=object,
        )
        idx = np.arange(cfg.n_items)
        self._item_ids = _labels("i", idx)
        self.catalog = normalize_catalog(
            pd.DataFrame(
                {
                    "item_id": self._item_ids,
                    "category": _labels("c", self.item_category),
                    "price": self.item_price,
                    "margin": np.round(rng.uniform(0.05, 0.6, cfg.n_items), 3),
                    "stock": stock,
                    "title": _labels("", self.category_names[self.item_category], _labels(" item ", idx)),
                }
            )
        )
        # Within-category popularity CDF: items ordered by category, key = category + cdf in (0, 1].
        self._by_category = np.argsort(self.item_category, kind="stable")
        sorted_cat = self.item_category[self._by_category]
        csum = np.cumsum(np.exp(self.item_bias[self._by_category].astype(np.float64)))
        self._cat_end = np.cumsum(np.bincount(sorted_cat, minlength=n_cat))
        before = np.r_[0.0, csum[self._cat_end[:-1] - 1]]
        cat_pop = csum[self._cat_end - 1] - before
        self._cat_log_pop = np.log(cat_pop)
        self._item_key = sorted_cat + (csum - before[sorted_cat]) / cat_pop[sorted_cat]
        self._item_key[self._cat_end - 1] = np.arange(1, n_cat + 1)  # each category spans (c, c + 1] exactly

    def _init_users(self, rng: np.random.Generator, cat_share: np.ndarray) -> None:
        """Taste = mixture of 1-3 category centres; price sensitivity, repeat propensity, activity, device."""
        cfg, n = self.config, self.config.n_users
        d = cfg.taste_dim
        mix_cats = rng.choice(len(cat_share), (n, 3), p=cat_share)
        mix = rng.dirichlet(np.ones(3), n) * (np.arange(3) < 1 + rng.binomial(2, 0.4, n)[:, None])
        mix /= mix.sum(axis=1, keepdims=True)
        taste = np.einsum("nk,nkd->nd", mix, self._centres[mix_cats]) + rng.normal(0, 0.5 / np.sqrt(d), (n, d))
        self._taste0 = taste.astype(np.float32)
        self.user_sensitivity = (cfg.price_sensitivity * rng.gamma(2.0, 0.25, n)).astype(np.float32)
        p = cfg.repeat_prob
        self.user_repeat = rng.beta(10 * p, 10 * (1 - p), n) if 0 < p < 1 else np.full(n, p)
        self._activity = rng.gamma(2.0, 0.5, n)
        self._device = rng.choice(3, n, p=[0.45, 0.35, 0.2])
        self._user_ids = _labels("u", np.arange(n))

    @property
    def n_chunks(self) -> int:
        return -(-self.config.n_users // self.config.chunk_users)

    # -- ground truth --------------------------------------------------------------------------

    def _tastes(self, users: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Taste of users[k] at days[k]: taste0 plus a random walk with one hashed step per day
        (uniform per coordinate, expected step length about taste_drift), linear within a day."""
        cfg = self.config
        taste = self._taste0[users].copy()
        if cfg.taste_drift == 0 or len(users) == 0:
            return taste
        uniq, row = np.unique(users, return_inverse=True)
        n_steps = int(np.floor(days.max())) + 1
        lanes = -(-cfg.taste_dim // 4)  # a 64-bit hash gives four 16-bit uniforms
        counter = uniq.astype(_U64)[:, None] * _U64((cfg.days + 1) * lanes) + np.arange(n_steps * lanes, dtype=_U64)
        bits = _mix64(counter * _U64(0x9E3779B97F4A7C15) ^ self._salt)
        u16 = bits.view(np.uint16).reshape(len(uniq), n_steps, 4 * lanes)[..., : cfg.taste_dim]
        scale = np.float32(cfg.taste_drift / np.sqrt(cfg.taste_dim) * np.sqrt(12) / 65536)
        steps = (u16.astype(np.float32) - np.float32(32767.5)) * scale
        walk = np.cumsum(steps, axis=1) - steps  # position at the start of each day
        day = np.floor(days).astype(np.int64)
        frac = (days - day).astype(np.float32)[:, None]
        return taste + walk[row, day] + frac * steps[row, day]

    def _check_day(self, day: float | None) -> float:
        day = float(self.config.days if day is None else day)
        if not 0 <= day <= self.config.days:
            raise ValueError(f"day must be within [0, {self.config.days}], got {day}")
        return day

    def _item_vectors(self, items: np.ndarray) -> np.ndarray:
        return self._centres[self.item_category[items]] + self._offsets[:, items].T

    def _affinity(self, users: np.ndarray, items: np.ndarray, vectors: np.ndarray, day: float) -> np.ndarray:
        taste = self._tastes(users, np.full(len(users), day))
        return taste @ vectors.T + (self.item_bias[items] - self.user_sensitivity[users][:, None] * self._log_price[items])

    def preference(self, users: np.ndarray, items: np.ndarray | None = None, day: float | None = None) -> np.ndarray:
        """True affinity a(u, i, day) for users x items (default all items, at the end of the horizon).
        Views are drawn from softmax over items of this score (stock is not part of it)."""
        users = np.asarray(users, dtype=np.int64)
        items = np.arange(self.config.n_items) if items is None else np.asarray(items, dtype=np.int64)
        return self._affinity(users, items, self._item_vectors(items), self._check_day(day))

    def true_top_items(self, users: np.ndarray, k: int, day: float | None = None) -> np.ndarray:
        """The k items of highest true preference per user, best first: (len(users), k) item indices."""
        users = np.asarray(users, dtype=np.int64)
        items = np.arange(self.config.n_items)
        vectors, day = self._item_vectors(items), self._check_day(day)
        k = min(k, len(items))
        batch = max(1, 2**24 // len(items))  # bounds the scores held at once
        out = np.empty((len(users), k), dtype=np.int64)
        for lo in range(0, len(users), batch):
            scores = self._affinity(users[lo : lo + batch], items, vectors, day)
            top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
            out[lo : lo + batch] = np.take_along_axis(top, order, axis=1)
        return out

    # -- simulation ----------------------------------------------------------------------------

    def _candidates(self, rng: np.random.Generator, users: np.ndarray, taste: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """CANDIDATES proposal items per session and their log importance weights a - log q (+ const)."""
        sens = self.user_sensitivity[users][:, None]
        logit = taste @ self._centres.T - sens * self._cat_log_price + self._cat_log_pop
        prob = np.exp(logit - logit.max(axis=1, keepdims=True))
        cdf = np.cumsum(prob, axis=1)
        rows = np.repeat(np.arange(len(users)), CANDIDATES)
        cats = _sample_rows(cdf / cdf[:, -1:], rows, rng.random(len(rows))).reshape(len(users), CANDIDATES)
        query = (cats + rng.random(cats.shape)).ravel()
        order = np.argsort(query)  # sorted queries make the search cache-friendly: ~3x faster on 1M items
        pos = np.empty(query.shape, dtype=np.int64)
        pos[order] = np.searchsorted(self._item_key, query[order], side="right")
        pos = pos.reshape(cats.shape)
        items = self._by_category[np.minimum(pos, self._cat_end[cats] - 1)]
        log_w = -sens * self._price_dev[items]
        for k in range(self.config.taste_dim):  # one coordinate at a time keeps memory at sessions x CANDIDATES
            log_w += taste[:, k : k + 1] * self._offsets[k][items]
        return items, log_w

    def _chunk(self, lo: int, hi: int, rng: np.random.Generator) -> pd.DataFrame:
        cfg = self.config
        # Sessions, sorted by user then start time.
        n_sess = rng.poisson(cfg.sessions_per_user * self._activity[lo:hi])
        s_user = np.repeat(np.arange(lo, hi), n_sess)
        s_day = rng.uniform(0, cfg.days, len(s_user))
        order = np.lexsort((s_day, s_user))
        s_user, s_day = s_user[order], s_day[order]
        n_s = len(s_user)
        s_rank = np.arange(n_s) - _group_starts(s_user)
        s_start = s_day * 86_400.0
        device = np.where(rng.random(n_s) < 0.9, self._device[s_user], rng.integers(0, 3, n_s))
        channel = rng.choice(len(CHANNELS), n_s, p=CHANNEL_P)
        searched = rng.random(n_s) < P_SEARCH

        # Views: draws from the session's candidates, one view per (session, item).
        items, log_w = self._candidates(rng, s_user, self._tastes(s_user, s_day))
        w = np.exp(log_w - log_w.max(axis=1, keepdims=True))
        cdf = np.cumsum(w, axis=1)
        n_views = np.minimum(1 + rng.poisson(VIEWS_PER_SESSION, n_s), CANDIDATES)
        v_sess = np.repeat(np.arange(n_s), n_views)
        pick = _sample_rows(cdf / cdf[:, -1:], v_sess, rng.random(len(v_sess)))
        v_item = items[v_sess, pick]
        _, first = np.unique(v_sess * np.int64(cfg.n_items) + v_item, return_index=True)
        keep = np.sort(first)
        v_sess, v_item = v_sess[keep], v_item[keep]
        n_v = len(v_sess)

        # Funnel per view.
        clicked = rng.random(n_v) < P_CLICK
        carted = clicked & (rng.random(n_v) < P_CART) & self._in_stock[v_item]
        removed = carted & (rng.random(n_v) < P_REMOVE)
        bought = carted & ~removed & (rng.random(n_s) < P_CHECKOUT)[v_sess]
        quantity = 1 + rng.poisson(0.25, n_v)

        # Repeat buying replaces the item of the whole view-to-purchase line; a re-bought item that is
        # already in this order stays an abandoned cart line.
        p_idx = np.flatnonzero(bought)
        p_sess = v_sess[p_idx]
        v_item[p_idx] = _rebuy(rng, s_user[p_sess], p_sess, v_item[p_idx], self.user_repeat)
        _, first = np.unique(p_sess * np.int64(cfg.n_items) + v_item[p_idx], return_index=True)
        bought[p_idx] = False
        bought[p_idx[first]] = True

        # Timestamps in seconds from START.
        gap = rng.exponential(45.0, n_v)
        csum = np.cumsum(gap)
        v_first = _group_starts(v_sess)
        t_view = s_start[v_sess] + 10.0 + csum - csum[v_first] + gap[v_first]
        t_click = t_view + 2.0 + rng.exponential(8.0, n_v)
        t_cart = t_click + 5.0 + rng.exponential(30.0, n_v)
        t_remove = t_cart + 10.0 + rng.exponential(120.0, n_v)
        checkout = np.zeros(n_s)
        np.maximum.at(checkout, v_sess[bought], t_cart[bought])
        p_idx = np.flatnonzero(bought)
        position = 1 + np.arange(len(p_idx)) - _group_starts(v_sess[p_idx])
        t_buy = checkout[v_sess[p_idx]] + 30.0 + position

        # Assemble: one block per event kind, then sort by time.
        s_idx = np.flatnonzero(searched)
        first_view_item = v_item[np.searchsorted(v_sess, np.arange(n_s))]  # every session has a view
        blocks = [  # (kind, session per event, view slot per event or None, time)
            (0, s_idx, None, s_start[s_idx]),
            (1, v_sess, np.arange(n_v), t_view),
            (2, v_sess[clicked], np.flatnonzero(clicked), t_click[clicked]),
            (3, v_sess[carted], np.flatnonzero(carted), t_cart[carted]),
            (4, v_sess[removed], np.flatnonzero(removed), t_remove[removed]),
            (5, v_sess[p_idx], p_idx, t_buy),
        ]
        kind = np.concatenate([np.full(len(b[1]), b[0]) for b in blocks])
        sess = np.concatenate([b[1] for b in blocks])
        slot = np.concatenate([np.full(len(b[1]), -1) if b[2] is None else b[2] for b in blocks])
        t = np.concatenate([b[3] for b in blocks])
        order = np.argsort(t, kind="stable")
        kind, sess, slot, t = kind[order], sess[order], slot[order], t[order]
        has_item, is_cart, is_buy = slot >= 0, (kind == 3) | (kind == 4), kind == 5
        item = np.where(has_item, v_item[slot], -1)
        bought_rank = np.zeros(n_v)
        bought_rank[p_idx] = position
        page = np.where(kind == 1, np.where(searched[sess], "search", "home"), "product").astype(object)
        page[(kind == 0)] = "search"
        page[(kind == 4) | is_buy] = "cart"
        session_ids = _labels("", self._user_ids[s_user], _labels("-s", s_rank))
        return normalize_events(
            pd.DataFrame(
                {
                    "event_type": EVENT_KINDS[kind],
                    "timestamp": START + np.round(t * 1e6).astype("timedelta64[us]"),
                    "user_id": self._user_ids[s_user[sess]],
                    "session_id": session_ids[sess],
                    "item_id": np.where(has_item, self._item_ids[np.maximum(item, 0)], None),
                    "order_id": np.where(is_buy, _labels("", self._user_ids[s_user], _labels("-o", s_rank))[sess], None),
                    "quantity": np.where(is_cart | is_buy, quantity[slot], np.nan),
                    "position": np.where(is_buy, bought_rank[slot], np.nan),
                    "price": np.where(is_buy, self.item_price[np.maximum(item, 0)], np.nan),
                    "query": np.where(kind == 0, self.category_names[self.item_category[first_view_item[sess]]], None),
                    "device": DEVICES[device[sess]],
                    "channel": CHANNELS[channel[sess]],
                    "page": page,
                }
            )
        )

    def iter_event_chunks(self) -> Iterator[pd.DataFrame]:
        """Events of `chunk_users` users at a time, each chunk sorted by timestamp."""
        step = self.config.chunk_users
        for index, lo in enumerate(range(0, self.config.n_users, step)):
            yield self._chunk(lo, min(lo + step, self.config.n_users), np.random.default_rng([self.config.seed, 1, index]))

    def dataset(self, max_events: int | None = None) -> Dataset:
        """All chunks concatenated (the first `max_events` events, in chunk order, when given)."""
        frames, total = [], 0
        for frame in self.iter_event_chunks():
            frames.append(frame)
            total += len(frame)
            if max_events is not None and total >= max_events:
                break
        events = pd.concat(frames, ignore_index=True)
        if max_events is not None:
            events = events.iloc[:max_events]
        return Dataset(name="synthetic", events=events, catalog=self.catalog)


def write_synthetic(config: SyntheticConfig, store: OfflineStore, show_progress: bool = True) -> int:
    """Generate the shop into `store` chunk by chunk (memory stays at one chunk); returns the event count."""
    shop = SyntheticShop(config)
    store.write_catalog(shop.catalog)
    total = 0
    with progress(total=shop.n_chunks, unit="chunk", desc="synthetic events", disable=not show_progress) as bar:
        for frame in shop.iter_event_chunks():
            total += store.append(frame)
            bar.update(1)
            bar.set_postfix(events=total)
    return total
