"""Last-basket co-occurrence against a hand count, its normalizations, and its grid in a config."""

import math

import numpy as np
import pytest

from hyperrec.config import MethodConfig
from hyperrec.data.sequences import Interactions
from hyperrec.eval.tuning import grid_points
from hyperrec.models.baselines import make_baseline


@pytest.fixture()
def data() -> Interactions:
    """Baskets {0,3}, {0,1} (u0), {0,1,2} (u1), {0,4} (u2), {4} (u3); u4 has none."""
    baskets = [[np.array([0, 3]), np.array([0, 1])], [np.array([0, 1, 2])], [np.array([0, 4])], [np.array([4])], []]
    return Interactions(5, baskets, [np.arange(float(len(b))) for b in baskets])


def scores(data, user, **params) -> list[float]:
    return make_baseline("cooccurrence", params).fit(data).score(np.array([user]))[0].tolist()


def test_scores_sum_the_co_occurrence_with_the_last_baskets_items(data):
    # u0's last basket {0,1}. Baskets with 0: 4, with 1: 2; c01 = 2, c02 = c03 = c04 = 1, c12 = 1.
    assert scores(data, 0) == [2, 2, 1 + 1, 1, 1]
    assert scores(data, 3) == [1, 0, 0, 0, 0]  # {4} was bought with 0 once; no item with itself
    assert scores(data, 0, normalize="conditional") == pytest.approx([2 / 2, 2 / 4, 1 / 4 + 1 / 2, 1 / 4, 1 / 4])
    root = math.sqrt
    assert scores(data, 0, normalize="cosine") == pytest.approx(
        [2 / root(8), 2 / root(8), 1 / root(4) + 1 / root(2), 1 / root(4), 1 / root(8)]
    )


def test_a_user_without_baskets_gets_zero_scores(data):
    assert scores(data, 4) == [0.0] * 5


def test_a_grid_can_list_the_normalizations():
    method = MethodConfig.model_validate({"kind": "cooccurrence", "grid": {"normalize": ["none", "cosine"]}})
    points = grid_points(method.params, method.grid)
    assert [make_baseline(method.kind, p).params.normalize for p in points] == ["none", "cosine"]
