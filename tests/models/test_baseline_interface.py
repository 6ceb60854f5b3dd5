"""Every baseline behind the same fit/score/recommend interface, including users without baskets."""

import numpy as np
import pytest

from hyperrec.data.sequences import Interactions
from hyperrec.models.baselines import BASELINES, make_baseline


@pytest.mark.parametrize("kind", list(BASELINES))
def test_every_baseline_fits_scores_the_catalogue_and_fills_its_lists(kind):
    rng = np.random.default_rng(3)
    baskets = [[rng.choice(12, int(rng.integers(1, 4)), replace=False) for _ in range(n)] for n in [3, 1, 4, 0, 2]]
    data = Interactions(12, baskets, [np.arange(float(len(b))) for b in baskets])
    model = make_baseline(kind).fit(data)
    users = np.arange(data.n_users)
    scores = model.score(users)
    assert scores.shape == (data.n_users, data.n_items) and np.isfinite(scores).all()
    items, item_scores = model.recommend(users, 5, exclude=[np.array([0])] * data.n_users)
    assert items.shape == (data.n_users, 5) and 0 not in items
    assert all(len(set(row)) == 5 for row in items.tolist()) and (np.diff(item_scores, axis=1) <= 0).all()
    np.testing.assert_array_equal(model.recommend(users, 5)[0], model.recommend(users, 5)[0])
