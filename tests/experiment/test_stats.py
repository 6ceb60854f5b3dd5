"""The statistics by simulation (fixed seeds): A/A calibration at a fixed horizon and under daily
peeking, power against the analytic power, CUPED's variance ratio against 1 - rho^2, the delta
method's coverage, SRM, and Welch's interval against scipy's on the same data."""

import numpy as np
import pytest
from scipy import stats as sps

from hyperrec.experiment import stats

EXPERIMENTS, DAYS, PER_DAY = 2000, 14, 100  # per arm and day: 1,400 units per arm at the horizon


def revenue(rng, shape, mean_factor=1.0):
    """Revenue per unit as shops see it: most units buy nothing, buyers spend a skewed amount."""
    return np.where(rng.random(shape) < 0.2, mean_factor * rng.lognormal(3, 0.8, shape), 0.0)


def daily_looks(y):
    """Per-arm cumulative moments at the end of each day: y is (experiments, days, arm, units)."""
    s, q = np.cumsum(y.sum(-1), 1), np.cumsum((y**2).sum(-1), 1)
    n = y.shape[-1] * np.arange(1, y.shape[1] + 1)[None, :, None]
    mean, var = s / n, (q - s**2 / n) / (n - 1)
    return stats.welch_from_moments(mean[..., 1], var[..., 1], n[..., 0], mean[..., 0], var[..., 0], n[..., 0]), np.sqrt(var.mean(-1))


@pytest.fixture(scope="module")
def aa():
    return daily_looks(revenue(np.random.default_rng(0), (EXPERIMENTS, DAYS, 2, PER_DAY)))


def rate(flags):
    return float(np.mean(flags))


def test_aa_false_positive_rates(aa):
    est, sd = aa
    fraction = np.arange(1, DAYS + 1) / DAYS
    fixed = rate(est.significant[:, -1])
    plain_peeking = rate(est.significant.any(1))
    daily = rate(stats.sequential_stop(*stats.horizon_sequence(est.diff, est.se, fraction, looks=DAYS)).stopped)
    anytime = rate(stats.sequential_stop(*stats.horizon_sequence(est.diff, est.se, fraction)).stopped)
    mixture = rate(stats.sequential_stop(*stats.confidence_sequence(est.diff, est.se, 0.05 * sd[:, -1:])).stopped)
    print(
        f"A/A x{EXPERIMENTS}: fixed {fixed:.4f}, plain daily peeking {plain_peeking:.4f}, stop rule daily {daily:.4f}, "
        f"any-time horizon sequence {anytime:.4f}, normal mixture {mixture:.4f}"
    )
    assert abs(fixed - 0.05) <= 0.015
    assert abs(daily - 0.05) <= 0.015  # the stop rule with its pre-registered daily looks spends alpha exactly
    assert plain_peeking > 0.15  # 14 looks at a fixed-horizon test: about four times alpha
    assert anytime <= 0.05 + 0.015 and mixture <= 0.05 + 0.015  # valid at any look times, so conservative at 14 looks


def test_power_close_to_analytic():
    """Tolerance: 3 binomial standard errors of the simulated power (about 0.027 at 2,000 experiments),
    plus 0.01 for the normal approximation of the analytic power with estimated variances."""
    rng = np.random.default_rng(1)
    n, lift = 1400, 1.25  # buyers spend 25% more in treatment
    control, treated = revenue(rng, (EXPERIMENTS, n)), revenue(rng, (EXPERIMENTS, n), lift)
    mean_c = 0.2 * np.exp(3 + 0.8**2 / 2)
    var_c = 0.2 * np.exp(2 * 3 + 2 * 0.8**2) - mean_c**2
    analytic = stats.analytic_power(mean_c * (lift - 1), np.sqrt(var_c) * lift, np.sqrt(var_c), n, n)
    simulated = rate(stats.welch_diff(treated, control).significant)
    se = np.sqrt(analytic * (1 - analytic) / EXPERIMENTS)
    print(f"power: simulated {simulated:.4f}, analytic {analytic:.4f}, tolerance {3 * se + 0.01:.4f}")
    assert 0.3 < analytic < 0.9
    assert abs(simulated - analytic) <= 3 * se + 0.01


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_cuped_variance_ratio_is_one_minus_rho_squared(rho):
    """Both the reported variance reduction and the spread of the estimates over 2,000 experiments.
    Tolerance of the spread ratio: 0.06, about 3 standard errors of a ratio of two variances over
    2,000 draws (it moved by 0.02 between seeds)."""
    rng = np.random.default_rng(int(rho * 10))
    shape = (EXPERIMENTS, 2, 500)
    pre = rng.normal(size=shape)
    post = rho * pre + np.sqrt(1 - rho**2) * rng.normal(size=shape)
    post[:, 1] += 0.05  # an injected effect: CUPED keeps it
    result = stats.cuped(post[:, 1], pre[:, 1], post[:, 0], pre[:, 0])
    plain = stats.welch_diff(post[:, 1], post[:, 0])
    spread_ratio = result.estimate.diff.var() / plain.diff.var()
    print(
        f"CUPED rho {rho}: reported variance ratio {1 - result.variance_reduction.mean():.4f}, "
        f"spread ratio {spread_ratio:.4f}, 1 - rho^2 {1 - rho**2:.4f}"
    )
    assert abs((1 - result.variance_reduction.mean()) - (1 - rho**2)) < 0.01
    assert abs(spread_ratio - (1 - rho**2)) < 0.06
    assert abs(result.estimate.diff.mean() - 0.05) < 0.003
    assert abs(result.theta.mean() - rho) < 0.01


def test_ratio_metric_delta_method_covers_with_clustered_sessions():
    """Revenue per session when users (the unit of randomization) hold several sessions each with a
    user-level spend: the delta-method interval covers the true ratio about 95% of the time, the
    naive interval that treats sessions as independent does not."""
    rng = np.random.default_rng(3)
    sessions = rng.poisson(3, (EXPERIMENTS, 2, 500)) + 1
    spend = rng.gamma(2.0, 5.0, (EXPERIMENTS, 2, 500))  # each user's own level: sessions of a user correlate
    revenue_u = spend * sessions * rng.gamma(4.0, 0.25, sessions.shape)
    est = stats.ratio_diff(revenue_u[:, 1], sessions[:, 1], revenue_u[:, 0], sessions[:, 0])
    delta_cover = rate((est.lo <= 0) & (est.hi >= 0))
    per_session = revenue_u / sessions  # each user's sessions as if independent, weighted by their count
    naive_se = np.sqrt(
        sum(
            (
                (per_session[:, a] ** 2 * sessions[:, a]).sum(-1) / sessions[:, a].sum(-1)
                - (revenue_u[:, a].sum(-1) / sessions[:, a].sum(-1)) ** 2
            )
            / sessions[:, a].sum(-1)
            for a in (0, 1)
        )
    )
    naive_cover = rate(np.abs(est.diff) <= 1.96 * naive_se)
    print(f"ratio metric coverage: delta method {delta_cover:.4f}, sessions as independent {naive_cover:.4f}")
    assert abs(delta_cover - 0.95) <= 0.015
    assert naive_cover < 0.9


def test_srm_flags_a_52_48_split_not_a_fair_one():
    shares = np.array([0.5, 0.5])
    assert stats.srm_test(np.array([10_400, 9_600]), shares).flagged
    assert not stats.srm_test(np.array([10_050, 9_950]), shares).flagged
    fair = np.random.default_rng(4).binomial(20_000, 0.5, 20_000)
    result = stats.srm_test(np.stack([fair, 20_000 - fair], -1), shares, alpha=0.01)
    print(
        f"SRM: 52/48 of 20k p={stats.srm_test(np.array([10_400, 9_600]), shares).p:.2e}, "
        f"false-positive rate at 0.01 {rate(result.flagged):.4f}"
    )
    assert abs(rate(result.flagged) - 0.01) <= 3 * np.sqrt(0.01 * 0.99 / 20_000)
    three = stats.srm_test(np.array([5_000, 2_500, 2_500]), np.array([0.5, 0.25, 0.25]))
    assert not three.flagged and three.chi2 == 0


def test_welch_matches_scipy():
    rng = np.random.default_rng(5)
    t, c = rng.lognormal(1, 1, 300), rng.lognormal(1.1, 0.7, 450)
    ours = stats.welch_diff(t, c, alpha=0.1)
    theirs = sps.ttest_ind(t, c, equal_var=False)
    interval = theirs.confidence_interval(0.9)
    np.testing.assert_allclose([ours.p, ours.lo, ours.hi], [theirs.pvalue, interval.low, interval.high], rtol=1e-10)


def test_cuped_theta_matches_the_regression_slope():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 500))
    y = 2 * x + rng.normal(size=x.shape)
    pooled = sps.linregress(x.ravel(), y.ravel())
    assert stats.cuped(y[1], x[1], y[0], x[0]).theta == pytest.approx(pooled.slope, rel=1e-10)


def test_horizon_boundaries_match_known_values():
    assert stats.horizon_boundary(0.05, looks=1) == pytest.approx(1.95996, abs=1e-3)
    assert stats.horizon_boundary(0.05, looks=5) == pytest.approx(2.040, abs=2e-3)  # O'Brien-Fleming's constant for 5 looks
    assert stats.horizon_boundary(0.05) == pytest.approx(2.2414, abs=1e-3)  # continuous monitoring
