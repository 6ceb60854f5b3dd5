"""Drift detection against a known truth: it fires on a shifted sample and not on an unshifted one,
and its KS and Wasserstein distances are scipy's."""

import numpy as np
import pytest
from scipy import stats

from hyperrec.bundle.drift import DriftReference, ks_statistic, psi, wasserstein

NAMES = ["ann_score", "log_count", "bought_before"]


def sample(rng: np.random.Generator, n: int, shift: float = 0.0, bought: float = 0.3) -> np.ndarray:
    return np.column_stack([rng.normal(shift, 1.0, n), rng.exponential(1.0, n), rng.random(n) < bought])


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return DriftReference.from_values(NAMES, sample(np.random.default_rng(0), 20_000))


def test_distances_are_scipys():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 3_000), rng.normal(0.2, 1.3, 2_000)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert wasserstein(a, b) == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0


def test_no_false_alarm_over_many_unshifted_windows(reference):
    rng = np.random.default_rng(2)
    reports = [reference.compare(sample(rng, 2_000)) for _ in range(200)]
    assert not any(report.shifted for report in reports)
    assert max(column.psi for report in reports for column in report.columns.values()) < 0.05


def test_a_shifted_feature_fires_and_the_others_do_not(reference):
    rng = np.random.default_rng(3)
    report = reference.compare(sample(rng, 2_000, shift=0.75))
    assert report.shifted == ["ann_score"]
    assert report.columns["ann_score"].psi > 0.25 and report.columns["ann_score"].ks > 0.2
    assert report.columns["ann_score"].wasserstein == pytest.approx(0.75, abs=0.1)  # a location shift moves the CDF by itself


def test_a_binary_feature_whose_rate_doubles_fires(reference):
    rng = np.random.default_rng(4)
    assert reference.compare(sample(rng, 2_000, bought=0.3)).shifted == []
    assert reference.compare(sample(rng, 2_000, bought=0.6)).shifted == ["bought_before"]


def test_the_reference_saves_and_loads(reference, tmp_path):
    reference.save(tmp_path / "drift.npz")
    loaded = DriftReference.load(tmp_path / "drift.npz")
    live = sample(np.random.default_rng(5), 1_000, shift=0.5)
    assert loaded.compare(live) == reference.compare(live)
