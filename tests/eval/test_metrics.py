"""Each metric against a small example worked out by hand."""

import math

import numpy as np
import pytest

from hyperrec.eval import metrics as M

# Two users, lists of 4 over a catalogue of 10 items.
RECS = np.array([[3, 1, 7, 0], [5, 6, 2, 9]])
TARGETS = [np.array([1, 0, 8]), np.array([4])]
N = np.array([3, 1])
HITS = M.hit_matrix(RECS, TARGETS)


def test_hits():
    assert HITS.tolist() == [[False, True, False, True], [False, False, False, False]]


def test_recall():
    assert M.recall_at_k(HITS, N, 2).tolist() == [1 / 3, 0.0]
    assert M.recall_at_k(HITS, N, 4).tolist() == [2 / 3, 0.0]


def test_ndcg_with_idcg_over_min_targets_k():
    # user 0 at k=2: DCG = 1/log2(3); IDCG over min(3, 2) = 2 positions = 1 + 1/log2(3)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert M.ndcg_at_k(HITS, N, 2)[0] == pytest.approx(expected)
    # k=4: DCG = 1/log2(3) + 1/log2(5); IDCG over 3 positions
    expected4 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert M.ndcg_at_k(HITS, N, 4)[0] == pytest.approx(expected4)
    assert M.ndcg_at_k(HITS, N, 4)[1] == 0.0
    perfect = M.hit_matrix(np.array([[4, 0]]), [np.array([4])])
    assert M.ndcg_at_k(perfect, np.array([1]), 2)[0] == pytest.approx(1.0)


def test_hit_rate_mrr_coverage():
    assert M.hit_rate_at_k(HITS, 1).tolist() == [0.0, 0.0]
    assert M.hit_rate_at_k(HITS, 2).tolist() == [1.0, 0.0]
    assert M.mrr(HITS).tolist() == [0.5, 0.0]
    assert M.coverage_at_k(RECS, 2, 10) == pytest.approx(4 / 10)  # {3, 1, 5, 6}
    assert M.coverage_at_k(np.array([[1, -1]]), 2, 10) == pytest.approx(1 / 10)  # padding is not an item


def test_repeat_explore_recall_and_repeat_share():
    seen = [np.array([1, 3]), np.array([5])]
    repeat, explore = M.split_recall_at_k(RECS, TARGETS, seen, 4)
    # user 0: repeat targets {1} -> found; explore {0, 8} -> 0 found => 1/2. user 1: no repeat target, explore {4} missed.
    assert repeat[0] == 1.0 and np.isnan(repeat[1])
    assert explore.tolist() == [0.5, 0.0]
    assert M.repeat_share_at_k(RECS, seen, 2).tolist() == [1.0, 0.5]


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(1)
    a = rng.normal(0.5, 0.1, 500)
    diff, lo, hi = M.paired_bootstrap(a + 0.05, a, samples=500)
    assert diff == pytest.approx(0.05) and lo == pytest.approx(0.05) and hi == pytest.approx(0.05)
    noisy = a + rng.normal(0, 0.1, 500)
    diff, lo, hi = M.paired_bootstrap(noisy, a, samples=500)
    assert lo < diff < hi and lo < 0 < hi  # no real difference: the interval straddles zero
    b = a.copy()
    b[:10] = np.nan
    assert not np.isnan(M.paired_bootstrap(a, b)[0])  # users missing in either are dropped
