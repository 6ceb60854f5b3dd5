"""S-KNN and V-SKNN against hand computations on a tiny shop, and against a per-user reference
written from the definitions on random baskets."""

import math

import numpy as np
import pytest

from hyperrec.data.sequences import Interactions
from hyperrec.models.baselines import make_baseline


def shop(u0_last_basket=(0, 1)) -> Interactions:
    """Sessions s0 = {0,3} and s1 = u0_last_basket (u0, times 0, 1), s2 = {0,1,2} (u1, time 2),
    s3 = {0,4} (u2, time 3), s4 = {4} (u3, time 4); u4 has no basket."""
    baskets = [[np.array([0, 3]), np.array(u0_last_basket)], [np.array([0, 1, 2])], [np.array([0, 4])], [np.array([4])], []]
    times = [np.array([0.0, 1.0]), np.array([2.0]), np.array([3.0]), np.array([4.0]), np.array([])]
    return Interactions(5, baskets, times)


def scores(kind: str, data: Interactions, user: int = 0, **params) -> list[float]:
    return make_baseline(kind, params).fit(data).score(np.array([user]))[0].tolist()


def test_sknn_sums_the_cosine_of_the_neighbour_sessions_holding_each_item():
    # u0's current session {0,1}: s0 shares 1 item (cos 1/2), s2 2 (2/sqrt 6), s3 1 (1/2); s1 is itself.
    c2 = 2 / math.sqrt(6)
    assert scores("sknn", shop()) == pytest.approx([0.5 + c2 + 0.5, c2, c2, 0.5, 0.5])
    assert scores("sknn", shop(), k=1) == pytest.approx([c2, c2, c2, 0, 0])
    assert scores("sknn", shop(), k=2) == pytest.approx([c2 + 0.5, c2, c2, 0, 0.5])  # the tie s0/s3 goes to the later s3
    assert scores("sknn", shop(), sample_size=2) == pytest.approx([c2 + 0.5, c2, c2, 0, 0.5])  # s0 is the oldest
    assert scores("sknn", shop(), sample_size=1) == pytest.approx([0.5, 0, 0, 0, 0.5])
    # Two baskets as the current session {0,1,3}: both are u0's own, s2 and s3 remain.
    assert scores("sknn", shop(), current_baskets=2) == pytest.approx([2 / 3 + 1 / math.sqrt(6), 2 / 3, 2 / 3, 0, 1 / math.sqrt(6)])
    # u3's {4} meets s3 only (cos 1/sqrt 2); the order inside a basket does not matter to S-KNN.
    assert scores("sknn", shop(), user=3) == pytest.approx([1 / math.sqrt(2), 0, 0, 0, 1 / math.sqrt(2)])
    assert scores("sknn", shop((1, 0))) == scores("sknn", shop())


def test_vsknn_weighs_the_current_session_by_position_and_items_by_idf():
    idf = np.log(5 / np.array([4, 2, 1, 1, 2]))  # 5 sessions; sessions holding each item
    # u0's basket [0, 1]: item 0 weighs 1/2, item 1 weighs 1; similarity = weighted overlap / 2 items.
    s0, s2, s3 = 0.25, 0.75, 0.25
    plain = np.array([s0 + s2 + s3, s2, s2, s0, s3])
    assert scores("vsknn", shop(), idf_weight=0) == pytest.approx(plain.tolist())
    assert scores("vsknn", shop()) == pytest.approx((plain * (1 + idf)).tolist())
    assert scores("vsknn", shop(), idf_weight=10) == pytest.approx((plain * (1 + 10 * idf)).tolist())
    # Added the other way round, item 0 is the latest: s0 and s3 (which share only item 0) gain.
    assert scores("vsknn", shop((1, 0)), idf_weight=0) == pytest.approx([0.5 + 0.75 + 0.5, 0.75, 0.75, 0.5, 0.5])
    # Two baskets: the sequence 0,3,0,1; item 0 keeps its latest place (3 of 4); 3 distinct items.
    assert scores("vsknn", shop(), idf_weight=0, current_baskets=2) == pytest.approx(
        [(0.75 + 1) / 3 + 0.75 / 3, (0.75 + 1) / 3, (0.75 + 1) / 3, 0, 0.75 / 3]
    )


@pytest.mark.parametrize("kind", ["sknn", "vsknn"])
def test_a_user_without_baskets_gets_zero_scores_and_the_popularity_order(kind):
    model = make_baseline(kind).fit(shop())
    assert model.score(np.array([4]))[0].tolist() == [0.0] * 5
    items, _ = model.recommend(np.array([4]), 5)
    assert items[0].tolist() == np.argsort(-model.popularity, kind="stable").tolist()


def reference_scores(data: Interactions, kind: str, k: int, sample_size: int, current_baskets: int) -> np.ndarray:
    """The definitions, one user and one session at a time."""
    sessions = [(u, b, set(basket.tolist()), data.times[u][b]) for u, user in enumerate(data.baskets) for b, basket in enumerate(user)]
    n_sessions = len(sessions)
    df = np.array([sum(item in s[2] for s in sessions) for item in range(data.n_items)])
    idf = np.log(n_sessions / np.maximum(df, 1))
    out = np.zeros((data.n_users, data.n_items))
    for u, baskets in enumerate(data.baskets):
        if not baskets:
            continue
        current_from = max(len(baskets) - current_baskets, 0)
        sequence = np.concatenate(baskets[current_from:]).tolist()
        weight = {item: (p + 1) / len(sequence) if kind == "vsknn" else 1.0 for p, item in enumerate(sequence)}
        candidates = [
            index for index, (v, b, items, _) in enumerate(sessions) if not (v == u and b >= current_from) and items & weight.keys()
        ]
        candidates = sorted(candidates, key=lambda i: (-sessions[i][3], -i))[:sample_size]
        similarity = {}
        for i in candidates:
            shared = sorted(sessions[i][2] & weight.keys())
            if kind == "vsknn":
                similarity[i] = sum(weight[item] for item in shared) / len(weight)
            else:
                similarity[i] = len(shared) / math.sqrt(len(weight) * len(sessions[i][2]))
        for i in sorted(similarity, key=lambda i: (-similarity[i], -i))[:k]:
            for item in sessions[i][2]:
                out[u, item] += similarity[i] * (1 + idf[item] if kind == "vsknn" else 1)
    return out


@pytest.mark.parametrize("kind", ["sknn", "vsknn"])
@pytest.mark.parametrize(("k", "sample_size", "current_baskets"), [(3, 10, 1), (5, 8, 2), (100, 1000, 3)])
def test_vectorized_scores_match_the_per_user_reference(kind, k, sample_size, current_baskets):
    rng = np.random.default_rng(7)
    n_items, baskets, times = 25, [], []
    for _ in range(40):
        n = int(rng.integers(0, 6))
        baskets.append([rng.choice(n_items, int(rng.integers(1, 6)), replace=False) for _ in range(n)])
        times.append(np.sort(rng.uniform(0, 100, n)))
    data = Interactions(n_items, baskets, times)
    params = {"k": k, "sample_size": sample_size, "current_baskets": current_baskets}
    model = make_baseline(kind, params).fit(data)
    expected = reference_scores(data, kind, k, sample_size, current_baskets)
    np.testing.assert_allclose(model.score(np.arange(data.n_users)), expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("kind", ["sknn", "vsknn", "cooccurrence"])
def test_by_session_compares_whole_sessions_of_event_data(kind):
    """Event data: every event its own basket. u1 viewed 0, 1, 2 within minutes; u0's session so far is a view of 0.
    By session, u1's session is a neighbour holding 1 and 2; event by event, no basket holds 0 with anything else."""
    view = np.array([0])
    events = Interactions(
        3,
        [[np.array([0])], [np.array([0]), np.array([1]), np.array([2])]],
        [np.array([10_000.0]), np.array([0.0, 60.0, 120.0])],
        [view, np.zeros(3, np.int64)],
    )
    by_session = scores(kind, events, by_session=True)
    assert by_session[1] > 0 and by_session[2] > 0
    assert scores(kind, events)[1:] == [0.0, 0.0]
