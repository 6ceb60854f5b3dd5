"""The two-stage Pipeline on the tiny shop (answers readable off the data) and on a slice of Instacart."""

import numpy as np
import pandas as pd
import pytest
import torch

from hyperrec.config import DataConfig
from hyperrec.data.catalog import normalize_catalog
from hyperrec.data.sequences import Interactions, make_split
from hyperrec.eval.evaluate import evaluate_model
from hyperrec.models import features as F
from hyperrec.models.baselines import make_baseline
from hyperrec.models.pipeline import NOT_A_CANDIDATE, Pipeline, PipelineConfig
from hyperrec.models.ranker import RankerConfig

torch.set_num_threads(1)

SMALL_RANKER = RankerConfig(hidden=[8], n_cross_layers=1, epochs=2, batch_size=8)


def tiny_pipeline(**overrides) -> Pipeline:
    settings = {"retriever_top_n": 2, "popular_top_n": 2, "label_baskets": 2, "neighbors": 1, "ranker": SMALL_RANKER}
    config = PipelineConfig(**(settings | overrides))
    return Pipeline({"iknn": make_baseline("item_knn", {"neighbors": 5, "shrink": 0})}, config)


@pytest.fixture()
def split(tiny):
    return make_split(tiny, DataConfig())


def index(split, user_id=None, item_ids=None):
    if user_id is not None:
        return list(split.user_ids).index(user_id)
    return [list(split.item_ids).index(i) for i in item_ids]


def candidate_set(model: Pipeline, users):
    return model.candidates(model.history, model.summary, np.asarray(users))


# ------------------------------------------------------------------------------------------------
# features
# ------------------------------------------------------------------------------------------------


def test_pair_features_match_a_hand_count():
    # user 0: [0 1] [0] [2 0] [0 3]   user 1: [1]
    history = Interactions(
        5,
        [[np.array([0, 1]), np.array([0]), np.array([2, 0]), np.array([0, 3])], [np.array([1])]],
        [np.arange(4.0) * F.DAY, np.array([0.0])],
    )
    summary = F.summarize(history, decays=(0.5,))
    f = F.pair_features(summary, np.array([0, 0, 0, 0, 1]), np.array([0, 1, 2, 4, 1]))
    assert f["count"].tolist() == [4, 1, 1, 0, 1]
    assert f["recency"].tolist() == [0, 3, 1, F.NEVER, 0]
    assert f["streak"].tolist() == [4, 0, 0, 0, 1]
    assert f["new_to_user"].tolist() == [0, 0, 0, 1, 0]
    assert f["basket_share"].tolist() == [1.0, 0.25, 0.25, 0.0, 1.0]
    assert f["decayed_0.5"].tolist() == [1.875, 0.125, 0.5, 0.0, 1.0]  # 1 + .5 + .25 + .125 for item 0
    assert f["log_days_since"][:3] == pytest.approx(np.log1p([0.0, 3.0, 1.0]))
    assert f["user_mean_basket_size"][0] == pytest.approx(7 / 4)
    assert f["user_repeat_ratio"][0] == pytest.approx((7 - 4) / 7)
    assert summary.popularity.tolist() == [4, 2, 1, 1, 0]
    assert summary.buyers.tolist() == [1, 2, 1, 1, 0]


def test_tiny_features_of_a_pair_match_a_hand_count(split):
    model = tiny_pipeline().fit(split.test.history)
    u1 = index(split, "u1")  # test history of u1: {a b} {a b c} {a b}
    cands = candidate_set(model, [u1])
    a, c, e = index(split, item_ids=["a", "c", "e"])
    col = {name: j for j, name in enumerate(cands.names)}
    row = {int(i): r for r, i in enumerate(cands.items)}
    assert cands.features[row[a], col["count"]] == 3 and cands.features[row[a], col["recency"]] == 0
    assert cands.features[row[c], col["count"]] == 1 and cands.features[row[c], col["recency"]] == 1
    if e in row:
        assert cands.features[row[e], col["new_to_user"]] == 1 and cands.features[row[e], col["recency"]] == F.NEVER


# ------------------------------------------------------------------------------------------------
# candidates, scores, recommendations
# ------------------------------------------------------------------------------------------------


def test_candidates_hold_repeat_and_popular_items(split):
    model = tiny_pipeline().fit(split.test.history)
    history = split.test.history
    popular = np.argsort(-model.summary.popularity, kind="stable")[:2]
    for user in range(history.n_users):
        items = set(candidate_set(model, [user]).items.tolist())
        own = set(np.concatenate(history.baskets[user]).tolist()) if history.baskets[user] else set()
        assert own <= items
        assert set(popular.tolist()) <= items


def test_score_is_very_low_outside_the_candidates_and_recommend_gives_k_items(split):
    model = tiny_pipeline(popular_top_n=0).fit(split.test.history)
    users = np.arange(split.test.history.n_users)
    scores = model.score(users)
    assert scores.shape == (len(users), split.test.history.n_items)
    for user in users:
        cands = candidate_set(model, [user]).items
        outside = np.setdiff1d(np.arange(scores.shape[1]), cands)
        assert (scores[user, outside] == NOT_A_CANDIDATE).all()
        assert (scores[user, cands] > NOT_A_CANDIDATE / 2).all()
    items, item_scores = model.recommend(users, 3)
    assert items.shape == (len(users), 3)
    assert all(len(set(row)) == 3 for row in items)
    assert (np.diff(item_scores, axis=1) <= 0).all()


def test_fit_is_deterministic_with_a_fixed_seed(split):
    a = tiny_pipeline().fit(split.test.history).score(np.arange(3))
    b = tiny_pipeline().fit(split.test.history).score(np.arange(3))
    np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------------------------------
# honesty
# ------------------------------------------------------------------------------------------------


def test_the_held_out_basket_does_not_change_training_features(split):
    history = split.test.history
    u1 = index(split, "u1")
    a, e, f = index(split, item_ids=["a", "e", "f"])
    # u1's last basket (the cut-off-1 label) {a b} becomes {a e f}: only labels may change
    changed = Interactions(history.n_items, [list(b) for b in history.baskets], history.times)
    changed.baskets[u1][-1] = np.array([a, e, f])
    original = tiny_pipeline().training_set(history)
    altered = tiny_pipeline().training_set(changed)
    # every cut-off's features (of every user) are computed without that basket
    np.testing.assert_array_equal(original.features, altered.features)
    np.testing.assert_array_equal(original.items, altered.items)
    assert not np.array_equal(original.labels, altered.labels)
    first = original.cutoff == 1
    # the new items of the label basket are neither candidates nor features of u1 at cut-off 1
    u1_rows = first & (original.users == u1)
    assert not np.isin([e, f], original.items[u1_rows]).any()


def test_training_lists_hold_one_list_per_user_and_cutoff_with_a_positive(split):
    train = tiny_pipeline().training_set(split.test.history)
    for g in np.unique(train.groups):
        rows = train.groups == g
        assert len(np.unique(train.users[rows])) == 1 and len(np.unique(train.cutoff[rows])) == 1
        assert train.labels[rows].sum() > 0
    assert (np.diff(train.groups) >= 0).all()  # rows of a list are contiguous


def test_catalog_features_and_value_weights(split):
    catalog = normalize_catalog(
        pd.DataFrame(
            {"item_id": list("abcdef"), "category": list("xxyyzz"), "price": [1.0, 2, 3, 4, 5, 6], "margin": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}
        )
    )
    config = PipelineConfig(
        retriever_top_n=2, popular_top_n=2, label_baskets=2, neighbors=1, ranker=SMALL_RANKER.model_copy(update={"value_weight": 1.0})
    )
    model = Pipeline([make_baseline("popularity")], config, catalog=catalog)
    train = model.training_set(split.test.history)
    assert {"category_share", "log_price", "margin"} <= set(train.names)
    assert "retriever0_score" in train.names
    assert train.weights.max() > train.weights.min()  # valuable items weigh more
    model.fit(split.test.history)
    assert model.recommend(np.arange(3), 2)[0].shape == (3, 2)


# ------------------------------------------------------------------------------------------------
# a slice of real data
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def instacart_split(instacart):
    return make_split(instacart, DataConfig(max_users=150))


def test_pipeline_on_a_slice_of_instacart(instacart_split):
    task = instacart_split.valid
    config = PipelineConfig(retriever_top_n=20, popular_top_n=20, label_baskets=3, neighbors=20, ranker=RankerConfig(hidden=[16], epochs=3))
    model = Pipeline({"tifu": make_baseline("tifu_knn", {"group_count": 7, "group_decay": 0.6, "neighbors": 20})}, config).fit(task.history)
    users = task.users[:20]
    cands = candidate_set(model, users)
    popular = np.argsort(-model.summary.popularity, kind="stable")[:20]
    for row, user in enumerate(users):
        items = cands.items[cands.rows == row]
        assert np.isin(np.concatenate(task.history.baskets[user]), items).all()
        assert np.isin(popular, items).all()
    assert np.isfinite(cands.features).all()
    summary = evaluate_model(model, task, ks=[10], list_length=20).summary
    top_frequency = evaluate_model(make_baseline("top_frequency").fit(task.history), task, ks=[10], list_length=20).summary
    assert summary["recall@10"] > 0.8 * top_frequency["recall@10"]  # a sane ranker, not a random one


def test_explore_bonus_lifts_items_new_to_the_user(split):
    model = tiny_pipeline(popular_top_n=6, explore_bonus=1e3).fit(split.test.history)
    u1 = index(split, "u1")
    own = set(np.concatenate(split.test.history.baskets[u1]).tolist())  # a b c
    items, _ = model.recommend(np.array([u1]), 6)
    assert not set(items[0, :3].tolist()) & own and set(items[0, 3:].tolist()) == own
