"""The cart-completion task: the cart is the first items added, the target the rest; baselines exclude the cart."""

import numpy as np

from hyperrec.data.sequences import EvalTask, Interactions
from hyperrec.eval.cart_completion import cart_knn_lists, cart_state, cart_task, recommender_lists
from hyperrec.models.baselines import make_baseline


def test_the_cart_is_the_first_items_added_and_short_baskets_are_left_out():
    full = Interactions(8, [[np.array([0, 1]), np.array([5, 2, 7, 1])], [np.array([3]), np.array([4, 6])]], [[0.0, 1.0]] * 2)
    history = full.truncate(np.array([1, 1]))
    task = cart_task(EvalTask(history, np.array([0, 1]), [np.array([1, 2, 5, 7]), np.array([4, 6])]), full, cart_size=2)
    assert list(task.users) == [0]  # user 1's basket has nothing left after a cart of 2
    assert list(task.carts[0]) == [5, 2] and list(task.targets[0]) == [1, 7]
    assert task.history is history


def test_baselines_never_recommend_the_cart_and_cart_knn_follows_co_occurrence():
    history = Interactions(
        6, [[np.array([0, 1]), np.array([0, 1, 2])], [np.array([2, 3]), np.array([2, 3])], [np.array([4, 5])]], [[0.0, 1.0]] * 2 + [[0.0]]
    )
    full = Interactions(6, [b + [np.array([0, 4, 3])] for b in history.baskets], [[0.0, 1.0, 2.0]] * 2 + [[0.0, 1.0]])
    task = cart_task(EvalTask(history, np.array([0, 1, 2]), [np.array([0, 3, 4])] * 3), full, cart_size=1)
    knn = cart_knn_lists(task, 3)
    assert all(cart[0] not in row for cart, row in zip(task.carts, knn))
    assert knn[0][0] == 1  # the cart holds item 0, bought with 1 in both of user 0's baskets
    frequent = recommender_lists(make_baseline("top_frequency").fit(task.history), task, 3)
    assert all(cart[0] not in row for cart, row in zip(task.carts, frequent))


def test_the_cart_state_holds_the_history_the_cart_and_its_add_to_cart_events():
    history = Interactions(6, [[np.array([0, 1])]], [[0.0]])
    state = cart_state(history, 0, np.array([4, 2]), 10**15)
    assert state.cart == {4: 1, 2: 1} and list(state.live_items()) == [4, 2] and state.n_baskets == 1
