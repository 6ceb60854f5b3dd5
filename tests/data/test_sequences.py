import numpy as np
import pytest

from hyperrec.config import DataConfig
from hyperrec.data.catalog import catalog_from_items
from hyperrec.data.dataset import Dataset
from hyperrec.data.sequences import Interactions, make_split
from tests.conftest import purchases


def items(split, task, user_id):
    u = list(split.user_ids).index(user_id)
    return u, [sorted(split.item_ids[b]) for b in task.history.baskets[u]]


def test_leave_last_basket_out(tiny):
    split = make_split(tiny, DataConfig(split="last_basket"))
    assert list(split.user_ids[split.test.users]) == ["u1", "u2"]  # u3 has one order: training data only
    u1, valid_history = items(split, split.valid, "u1")
    assert valid_history == [["a", "b"], ["a", "b", "c"]]
    assert sorted(split.item_ids[split.valid.targets[0]]) == ["a", "b"]  # the basket before the last
    _, test_history = items(split, split.test, "u1")
    assert test_history == [["a", "b"], ["a", "b", "c"], ["a", "b"]]
    assert sorted(split.item_ids[split.test.targets[0]]) == ["a", "d"]  # the last basket
    u3, u3_history = items(split, split.valid, "u3")
    assert u3_history == [["a"]]


def assert_no_leak(task, full: Interactions):
    """Every basket a model sees is older than every target basket, and no target basket is visible."""
    for u in task.users:
        seen = len(task.history.baskets[u])
        assert seen < len(full.baskets[u])
        assert np.all(task.history.times[u] < full.times[u][seen])


@pytest.mark.parametrize("split_kind", ["last_basket", "time"])
def test_no_future_event_leaks_into_the_input(instacart, split_kind):
    split = make_split(instacart, DataConfig(split=split_kind))
    for task in (split.valid, split.test):
        assert len(task.users) > 100
        assert_no_leak(task, split.full)
    # Validation history is a prefix of test history.
    for u in split.valid.users[:50]:
        assert len(split.valid.history.baskets[u]) < len(split.test.history.baskets[u]) + (split_kind == "time")


def test_time_split_targets_lie_between_the_cutoffs(instacart):
    config = DataConfig(split="time", time_split_quantiles=(0.7, 0.85))
    split = make_split(instacart, config)
    t_valid, t_test = np.quantile(np.concatenate(split.full.times), config.time_split_quantiles)
    for u, target in zip(split.valid.users, split.valid.targets):
        times, baskets = split.full.times[u], split.full.baskets[u]
        inside = np.concatenate([b for b, t in zip(baskets, times) if t_valid <= t < t_test])
        assert set(target) == set(inside)
        assert all(t < t_valid for t in split.valid.history.times[u])


def test_leave_last_item_out_treats_every_event_as_a_step():
    events = purchases(
        [("u", "o1", "a", "2024-01-01T00:00:00Z"), ("u", "o1", "b", "2024-01-01T00:00:01Z"), ("u", "o2", "c", "2024-01-02T00:00:00Z")]
    )
    split = make_split(Dataset("s", events, catalog_from_items(list("abc"))), DataConfig(split="last_item"))
    assert [list(split.item_ids[b]) for b in split.test.history.baskets[0]] == [["a"], ["b"]]
    assert list(split.item_ids[split.test.targets[0]]) == ["c"]
    assert list(split.item_ids[split.valid.targets[0]]) == ["b"]


def test_min_history_max_users_and_unknown_items(instacart, tiny):
    split = make_split(instacart, DataConfig(min_history=20, max_users=300))
    assert split.full.n_users == 300
    assert all(len(split.test.history.baskets[u]) >= 21 for u in split.test.users)
    bad = Dataset("bad", tiny.events, tiny.catalog.iloc[:3])
    with pytest.raises(ValueError, match="missing from the catalog"):
        make_split(bad, DataConfig())
    with pytest.raises(ValueError, match="no user has enough history"):
        make_split(tiny, DataConfig(min_history=10))


def test_next_basket_windows_put_each_next_basket_at_the_end_of_the_one_before():
    from hyperrec.data.windows import next_basket_windows

    history = Interactions(10, [[np.array([0, 1]), np.array([2]), np.array([3, 4, 5]), np.array([6])]], [np.array([1.0, 2, 3, 4])])
    x, y = next_basket_windows(history, 8, 3)
    assert x.tolist() == [[0, 0, 1, 2, 3, 4, 5, 6]]
    assert y[0, 3].tolist() == [3, 0, 0] and y[0, 4].tolist() == [4, 5, 6] and y[0, 7].tolist() == [7, 0, 0]
    assert (y[0, [0, 1, 2, 5, 6]] == 0).all()
    x, y = next_basket_windows(history, 2, 3)  # short windows: every basket but the first is a target exactly once
    assert x.tolist() == [[5, 6], [2, 3]]
    assert sorted(tuple(t[t > 0]) for t in y.reshape(-1, 3) if t.any()) == [(3,), (4, 5, 6), (7,)]
