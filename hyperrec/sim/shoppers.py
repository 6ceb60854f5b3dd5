"""What a simulated shopper does with a slate: examine it with position bias, click by true preference,
add to cart, keep or remove, check out. The only module of hyperrec that reads the shop's ground truth.

A shopper's demand for item i on a day is the generator's purchase distribution: with the shopper's
repeat propensity rho a re-buy of one of their earlier purchases (share h_i), else a draw from the
softmax of the true preference a(u, i, day) (share p_i over the whole catalogue):

    d_i = (1 - rho) p_i + rho h_i

An examined slate item is clicked with P_CLICK * m / (1 + m), m = attention * d_i: an item the shopper
would pick once in `attention` draws is clicked half as often as a product page view is. After a
click the generator's funnel applies (P_CART unless out of stock, then P_REMOVE; one checkout draw
P_CHECKOUT per session for the slate's cart lines; quantity 1 + Poisson(0.25)). Rank r is examined
with the configured curve, independently of the other ranks. `expected_value` is the exact
expectation of a slate's revenue and margin under this model: the simulator's true value of what an
arm shows, to compare with what the logs measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperrec.data.synthetic import P_CART, P_CHECKOUT, P_CLICK, P_REMOVE, SyntheticShop
from hyperrec.sim.config import ExaminationConfig

EXTRA_QUANTITY = 0.25  # quantity = 1 + Poisson(this), as in the generator


def examination(config: ExaminationConfig, k: int) -> np.ndarray:
    """The chance that rank r = 1..k is examined."""
    rank = np.arange(1, k + 1, dtype=np.float64)
    if config.kind == "log2":
        return 1.0 / np.log2(rank + 1)
    return config.decay ** (rank - 1)


@dataclass(frozen=True)
class SlateActions:
    """What one shopper did with one slate (arrays over the slate's ranks)."""

    examined: np.ndarray
    clicked: np.ndarray
    carted: np.ndarray
    removed: np.ndarray
    bought: np.ndarray
    quantity: np.ndarray
    attraction: np.ndarray  # the click chance of each item if examined (ground truth, for the checks only)


class Shoppers:
    """The shop's shoppers as the simulator needs them: a day's demand, and reactions to slates."""

    def __init__(self, shop: SyntheticShop, examine: np.ndarray, attention: float):
        self.shop = shop
        self.examine = examine
        self.attention = attention
        catalog = shop.catalog
        self.item_index = {item: i for i, item in enumerate(catalog["item_id"])}
        self.price = catalog["price"].to_numpy(np.float64)
        self.margin_rate = catalog["margin"].to_numpy(np.float64)
        self.in_stock = catalog["stock"].to_numpy() > 0
        self.bought: dict[int, dict[int, int]] = {}  # user -> item -> times bought (the shopper's own memory)
        self._day_rows: dict[int, int] = {}
        self._log_share = np.empty((0, len(self.price)))

    def remember(self, user: int, items: np.ndarray) -> None:
        counts = self.bought.setdefault(user, {})
        for item in items.tolist():
            counts[item] = counts.get(item, 0) + 1

    def start_day(self, users: np.ndarray, day: float) -> None:
        """Tastes of `users` at `day` (the middle of a simulated day: tastes move within a day by a step of ~taste_drift)."""
        users = np.unique(users)
        pref = self.shop.preference(users, None, day).astype(np.float64)
        top = pref.max(axis=1, keepdims=True)
        self._log_share = pref - top - np.log(np.exp(pref - top).sum(axis=1, keepdims=True))  # log p_i
        self._day_rows = {int(u): row for row, u in enumerate(users)}

    def attraction(self, user: int, items: np.ndarray) -> np.ndarray:
        share = np.exp(self._log_share[self._day_rows[user], items])
        counts = self.bought.get(user)
        if counts:
            rho = float(self.shop.user_repeat[user])
            h = np.array([counts.get(int(i), 0) for i in items], np.float64) / sum(counts.values())
            share = (1 - rho) * share + rho * h
        m = self.attention * share
        return P_CLICK * m / (1 + m)

    def react(self, user: int, items: np.ndarray, rng: np.random.Generator) -> SlateActions:
        attraction = self.attraction(user, items)
        n = len(items)
        examined = rng.random(n) < self.examine[:n]
        clicked = examined & (rng.random(n) < attraction)
        carted = clicked & (rng.random(n) < P_CART) & self.in_stock[items]
        removed = carted & (rng.random(n) < P_REMOVE)
        bought = carted & ~removed & (rng.random() < P_CHECKOUT)
        quantity = 1 + rng.poisson(EXTRA_QUANTITY, n)
        return SlateActions(examined, clicked, carted, removed, bought, quantity, attraction)

    def item_values(self, items: np.ndarray, attraction: np.ndarray, examined: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Expected clicks, revenue and margin of each item (its attraction) shown where it is examined with `examined`."""
        click = examined * attraction
        value = click * P_CART * self.in_stock[items] * (1 - P_REMOVE) * P_CHECKOUT * self.price[items] * (1 + EXTRA_QUANTITY)
        return click, value, value * self.margin_rate[items]

    def expected_value(self, items: np.ndarray, attraction: np.ndarray) -> tuple[float, float, float]:
        """Expected clicks, revenue and margin of a slate (items, their attraction) under the shopper model."""
        click, value, margin = self.item_values(items, attraction, self.examine[: len(items)])
        return float(click.sum()), float(value.sum()), float(margin.sum())
