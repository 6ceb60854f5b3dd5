"""What a user state gives the encoders: the purchase-only sequence and the multi-behaviour one, online and offline alike."""

import numpy as np

from hyperrec.bundle.user_state import Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS, PURCHASE
from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import recent_behaviour, recent_items

VIEW, CART = BEHAVIOURS.index("view"), BEHAVIOURS.index("add_to_cart")
S = 1_000_000  # microseconds


def test_behaviour_sequence_reads_older_purchases_then_the_recent_events_once_each():
    # A seeded basket [1, 2] and a live order of item 3, whose purchase is also among the recent events.
    events = Recent(np.array([4, 3, 3, 5]), np.array([VIEW, CART, PURCHASE, VIEW]), np.array([0, 20, 60, 100]) * S)
    state = UserState([np.array([1, 2]), np.array([3])], events=events)
    items, kinds, gaps = state.behaviour_sequence(8)
    assert items.tolist() == [0, 0, 2, 3, 5, 4, 4, 6]  # ids: item + 1; 1, 2 once, then the events in time order
    assert kinds.tolist() == [0, 0, PURCHASE + 1, PURCHASE + 1, VIEW + 1, CART + 1, PURCHASE + 1, VIEW + 1]
    assert gaps.tolist() == [0, 0, 1, 1, 1, 3, 3, 3]  # seeded purchases: time unknown; then 20, 40 and 40 s (10 s to 1 min)
    assert state.sequence(8).tolist() == [0, 0, 0, 0, 2, 3, 4, 6]  # purchase-only: purchases, then the live view of 5


def test_states_of_event_data_hold_the_purchases_by_session_and_the_events_as_served():
    day = 86_400.0
    kinds = np.array([VIEW, PURCHASE, PURCHASE, VIEW, PURCHASE, CART, CART, VIEW])
    times = np.array([0.0, 60.0, 70.0, day, day + 30, day + 60, day + 70, day + 90])
    history = Interactions(9, [[np.array([i]) for i in (1, 1, 2, 3, 3, 5, 6, 4)]], [times], [kinds])
    state = UserState.from_history(history, 0)
    assert [b.tolist() for b in state.baskets] == [[1, 2], [3]]  # one order per session
    assert state.events.items.tolist() == [1, 1, 2, 3, 3, 5, 6, 4] and state.events.kinds.tolist() == kinds.tolist()
    assert state.live_items().tolist() == [5, 6, 4] and state.cart == {5: 1, 6: 1}
    # offline scoring reads exactly what serving reads
    np.testing.assert_array_equal(recent_behaviour(history, np.array([0]), 8)[0], state.behaviour_sequence(8))
    np.testing.assert_array_equal(recent_items(history, np.array([0]), 8)[0], state.sequence(8))
