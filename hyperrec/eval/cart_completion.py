"""Cart completion: the shopper has put the first items of a basket in the cart; rank what else goes in it.

On data that records the order in which items went into each basket (Instacart's `add_to_cart_order`, which
`build_interactions` keeps as each basket's order), each evaluated basket's first `cart_size` items are the live
cart and the rest of the basket is the target, scored by full ranking with the cart's items excluded. Baskets of
`cart_size` items or fewer have nothing left to rank and are left out. What a method knows is the user's history
before the basket and the cart; nothing else of the basket.

benchmarks/cart_completion.py scores the served `cart` placement on the same task, through the code a request
runs: `cart_state` (the history, the cart and its add-to-cart events) -> `Retrieval.candidates` (placement cart)
-> the served ranker -> `Policy.select`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hyperrec.bundle.user_state import Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS
from hyperrec.data.sequences import EvalTask, Interactions
from hyperrec.models.base import Recommender, best_items, popularity_tiebreak
from hyperrec.models.cooccurrence import cooccurrence_matrix

ADD_TO_CART = BEHAVIOURS.index("add_to_cart")


@dataclass(frozen=True)
class CartTask:
    history: Interactions  # what every method is fitted on: nothing of the evaluated baskets
    users: np.ndarray
    carts: list[np.ndarray]  # the first items added, in their order
    targets: list[np.ndarray]  # the rest of the basket, distinct


def cart_task(task: EvalTask, full: Interactions, cart_size: int = 3) -> CartTask:
    """`task`'s target baskets (each user's first basket after their history) split into the cart and the rest."""
    users, carts, targets = [], [], []
    for user in task.users:
        basket = full.baskets[user][len(task.history.baskets[user])]  # in the order the items were added
        if len(basket) > cart_size:
            users.append(user)
            carts.append(basket[:cart_size])
            targets.append(np.setdiff1d(basket[cart_size:], basket[:cart_size]))
    return CartTask(task.history, np.array(users, np.int64), carts, targets)


def recommender_lists(model: Recommender, task: CartTask, k: int) -> np.ndarray:
    """A fitted history-only baseline's lists (it does not see the cart, except that its items are excluded)."""
    return model.recommend(task.users, k, exclude=task.carts)[0]


def cart_knn_lists(task: CartTask, k: int) -> np.ndarray:
    """Item-kNN from the cart: each item scores the sum of its cosine co-occurrence with the cart's items."""
    baskets = task.history.basket_matrix()
    together = cooccurrence_matrix(baskets, "cosine")
    scores = np.stack([np.asarray(together[cart].sum(axis=0)).ravel() for cart in task.carts])
    return best_items(scores, k, popularity_tiebreak(np.asarray(baskets.sum(axis=0)).ravel()), task.carts)[0]


def cart_state(history: Interactions, user: int, cart: np.ndarray, at_us: int) -> UserState:
    """The user's state online after adding `cart` to the cart one second apart, from `at_us` on."""
    state = UserState.from_history(history, user)
    state.cart = {int(item): 1 for item in cart}
    times = at_us + 1_000_000 * np.arange(len(cart), dtype=np.int64)
    state.events = Recent(cart.astype(np.int64), np.full(len(cart), ADD_TO_CART, np.int64), times)
    return state
