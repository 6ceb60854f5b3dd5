"""What serving computes per request: a user's state, candidate features, the exploration slot."""

import numpy as np

from hyperrec.bundle.slate import reserve_explore_slots
from hyperrec.bundle.user_state import Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS


def test_user_state_counts_recency_and_decay():
    state = UserState([np.array([3, 4]), np.array([4, 5]), np.array([4])])
    items, counts, ago = state.item_counts()
    assert items.tolist() == [3, 4, 5] and counts.tolist() == [1, 3, 1] and ago.tolist() == [2, 0, 1]
    np.testing.assert_allclose(state.decayed_counts(np.array([4, 3, 9]), 0.5), [1 + 0.5 + 0.25, 0.25, 0.0])
    assert state.sequence(4).tolist() == [5, 5, 6, 5]  # ids are item + 1, most recent last
    assert state.sequence(8).tolist() == [0, 0, 0, 4, 5, 5, 6, 5]
    assert UserState().sequence(3).tolist() == [0, 0, 0]


def test_the_encoder_reads_the_live_intent_after_the_purchases_unless_told_not_to():
    baskets = [np.array([3, 4])]
    events = Recent(
        items=np.array([7, 8]), kinds=np.array([BEHAVIOURS.index("view"), BEHAVIOURS.index("add_to_cart")]), times=np.array([1, 2])
    )
    state = UserState(baskets, events=events)
    assert state.sequence(6).tolist() == [0, 0, 4, 5, 8, 9]  # bought 3 and 4, then viewed 7 and carted 8
    assert state.sequence(6, live_intent=False).tolist() == [0, 0, 0, 0, 4, 5] == UserState(baskets).sequence(6).tolist()


def test_exploration_slot_promotes_the_best_new_items_into_the_shown_list():
    order = np.arange(7)
    new = np.array([False, False, True, False, False, True, True])
    assert reserve_explore_slots(order, new, slots=2, k=4).tolist() == [0, 1, 2, 5, 3, 4, 6]
    assert reserve_explore_slots(order, new, slots=0, k=4).tolist() == order.tolist()
    assert reserve_explore_slots(order, new, slots=1, k=4).tolist() == order.tolist()  # already one new item in the top 4
    assert reserve_explore_slots(order, new, slots=5, k=4).tolist() == [0, 2, 5, 6, 1, 3, 4]  # only three new items exist
    assert sorted(reserve_explore_slots(order, new, slots=2, k=4).tolist()) == order.tolist()  # a permutation
