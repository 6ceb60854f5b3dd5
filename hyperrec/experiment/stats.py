"""The statistics of an A/B test, written out: pure functions on numpy arrays.

Every estimate is "treatment minus control". The moment-based functions broadcast over leading
axes, so one call analyses a thousand simulated experiments (or every daily look of one) at once;
the array-based ones are thin wrappers that compute the moments of unit-level values first.
Distribution quantiles (t, normal, chi-square) come from scipy.stats; the estimators are here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import stats as sps
from scipy.optimize import brentq


@dataclass(frozen=True)
class Estimate:
    """A difference (treatment - control) with its standard error, a two-sided interval and p-value."""

    diff: np.ndarray | float
    se: np.ndarray | float
    lo: np.ndarray | float
    hi: np.ndarray | float
    p: np.ndarray | float

    @property
    def significant(self) -> np.ndarray | bool:
        return (self.lo > 0) | (self.hi < 0)


def welch_from_moments(mean_t, var_t, n_t, mean_c, var_c, n_c, alpha: float = 0.05) -> Estimate:
    """Difference of two means with Welch's unequal-variance t interval (Welch-Satterthwaite df).
    `var_*` are sample variances (ddof=1); all arguments broadcast."""
    a, b = np.asarray(var_t) / n_t, np.asarray(var_c) / n_c
    se = np.sqrt(a + b)
    df = (a + b) ** 2 / (a**2 / (np.asarray(n_t) - 1) + b**2 / (np.asarray(n_c) - 1))
    diff = np.asarray(mean_t) - np.asarray(mean_c)
    q = sps.t.ppf(1 - alpha / 2, df)
    p = 2 * sps.t.sf(np.abs(diff / se), df)
    return Estimate(diff, se, diff - q * se, diff + q * se, p)


def welch_diff(y_t: np.ndarray, y_c: np.ndarray, alpha: float = 0.05, axis: int = -1) -> Estimate:
    """Difference in means of a per-unit metric (e.g. revenue per user), Welch interval."""
    return welch_from_moments(
        y_t.mean(axis), y_t.var(axis, ddof=1), y_t.shape[axis], y_c.mean(axis), y_c.var(axis, ddof=1), y_c.shape[axis], alpha
    )


def _ratio_and_variance(num: np.ndarray, den: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """R = sum(num) / sum(den) over units and Var(R) by the delta method (first-order Taylor of
    mean(num) / mean(den) around the means), which keeps the units of randomization independent."""
    n = num.shape[axis]
    mn, md = num.mean(axis), den.mean(axis)
    vn, vd = num.var(axis, ddof=1), den.var(axis, ddof=1)
    cov = ((num - np.expand_dims(mn, axis)) * (den - np.expand_dims(md, axis))).sum(axis) / (n - 1)
    ratio = mn / md
    return ratio, (vn - 2 * ratio * cov + ratio**2 * vd) / (md**2 * n)


def ratio_interval(num: np.ndarray, den: np.ndarray, alpha: float = 0.05) -> tuple[float, float, float]:
    """One arm's ratio metric (per-user sums of numerator and denominator) with its normal delta-method interval."""
    ratio, variance = _ratio_and_variance(num, den, -1)
    half = sps.norm.ppf(1 - alpha / 2) * np.sqrt(variance)
    return float(ratio), float(ratio - half), float(ratio + half)


def ratio_se(num: np.ndarray, den: np.ndarray) -> float:
    """The delta-method standard error of one ratio metric from per-unit sums (e.g. true revenue and slates per shopper)."""
    return float(np.sqrt(_ratio_and_variance(num, den, -1)[1]))


def ratio_diff(num_t: np.ndarray, den_t: np.ndarray, num_c: np.ndarray, den_c: np.ndarray, alpha: float = 0.05, axis: int = -1) -> Estimate:
    """Difference of ratio metrics (e.g. revenue per session, clicks per impression) when units of
    randomization (users) hold several units of analysis (sessions): inputs are per-user sums of the
    numerator and denominator; the interval is normal with delta-method variances."""
    r_t, v_t = _ratio_and_variance(num_t, den_t, axis)
    r_c, v_c = _ratio_and_variance(num_c, den_c, axis)
    diff, se = r_t - r_c, np.sqrt(v_t + v_c)
    z = sps.norm.ppf(1 - alpha / 2)
    return Estimate(diff, se, diff - z * se, diff + z * se, 2 * sps.norm.sf(np.abs(diff / se)))


@dataclass(frozen=True)
class Cuped:
    """A CUPED-adjusted difference, the adjustment's slope and the share of variance it removed."""

    estimate: Estimate
    theta: np.ndarray | float
    variance_reduction: np.ndarray | float  # 1 - Var(adjusted) / Var(raw); approaches rho^2


def cuped(y_t: np.ndarray, x_t: np.ndarray, y_c: np.ndarray, x_c: np.ndarray, alpha: float = 0.05, axis: int = -1) -> Cuped:
    """CUPED (Deng et al. 2013): y - theta (x - mean x) with x each unit's pre-period value.
    theta = Cov(y, x) / Var(x) on both arms pooled (so it does not depend on the assignment and the
    adjusted difference stays unbiased); the adjusted values go through Welch's interval."""
    y, x = np.concatenate([y_t, y_c], axis), np.concatenate([x_t, x_c], axis)
    my, mx = np.expand_dims(y.mean(axis), axis), np.expand_dims(x.mean(axis), axis)
    theta = ((y - my) * (x - mx)).sum(axis) / ((x - mx) ** 2).sum(axis)
    th = np.expand_dims(theta, axis)
    adj_t, adj_c = y_t - th * (x_t - mx), y_c - th * (x_c - mx)
    raw_var = y_t.var(axis, ddof=1) / y_t.shape[axis] + y_c.var(axis, ddof=1) / y_c.shape[axis]
    adj_var = adj_t.var(axis, ddof=1) / adj_t.shape[axis] + adj_c.var(axis, ddof=1) / adj_c.shape[axis]
    return Cuped(welch_diff(adj_t, adj_c, alpha, axis), theta, 1 - adj_var / raw_var)


@dataclass(frozen=True)
class Srm:
    """Sample-ratio mismatch: Pearson's chi-square of the arms' unit counts against the configured shares."""

    chi2: np.ndarray | float
    p: np.ndarray | float
    flagged: np.ndarray | bool


def srm_test(counts: np.ndarray, shares: np.ndarray, alpha: float = 0.001) -> Srm:
    """A mismatch means the assignment or the logging is broken, so no difference can be trusted.
    The conventional threshold is strict (p < 0.001): the check runs on every experiment, often.
    `counts` may hold many experiments on leading axes (arms on the last)."""
    counts, shares = np.asarray(counts, float), np.asarray(shares, float)
    expected = counts.sum(-1, keepdims=True) * shares / shares.sum()
    chi2 = ((counts - expected) ** 2 / expected).sum(-1)
    p = sps.chi2.sf(chi2, counts.shape[-1] - 1)
    return Srm(chi2, p, p < alpha)


def confidence_sequence(diff, se, tau, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Always-valid confidence sequence for a difference of means (normal mixture, as in the mSPRT
    of Johari et al. 2017 and Howard et al. 2021): with the effect's mixing prior N(0, tau^2) and the
    estimate's variance V = se^2, the mixture likelihood ratio of "effect = theta" crosses 1/alpha
    exactly when |diff - theta| exceeds the radius below. By Ville's inequality the chance that the
    true difference ever leaves the sequence, however often one looks, is at most alpha (for normal
    estimates; asymptotically with the variance estimated). `tau` is pre-registered, in the metric's units."""
    v, t2 = np.asarray(se) ** 2, np.asarray(tau) ** 2
    radius = np.sqrt(v * (v + t2) / t2 * (2 * np.log(1 / alpha) + np.log((v + t2) / v)))
    return np.asarray(diff) - radius, np.asarray(diff) + radius


def _crossing_continuous(c: float) -> float:
    """P(sup_{t<=1} |W(t)| >= c) for a standard Brownian motion (the two-sided series, Feller 1951)."""
    k = np.arange(-50, 51)
    return 1 - float(np.sum((-1.0) ** k * (sps.norm.cdf((2 * k + 1) * c) - sps.norm.cdf((2 * k - 1) * c))))


def _crossing_at_looks(c: float, looks: int, step: float = 0.01) -> float:
    """P(max_k |W(k / K)| >= c) for K equally spaced looks, by recursive numerical integration
    (Armitage, McPherson and Rowe 1969) of the density of S_k = sqrt(K) W(k/K) over the continuation
    region |S_k| < c sqrt(K), a random walk with N(0, 1) steps (midpoint rule, one convolution a look)."""
    bound = c * np.sqrt(looks)
    n = int(np.ceil(2 * bound / step))
    h = 2 * bound / n
    grid = -bound + (np.arange(n) + 0.5) * h
    offsets = np.arange(-int(8 / h), int(8 / h) + 1) * h
    kernel = sps.norm.pdf(offsets) * h
    density = sps.norm.pdf(grid)  # S_1 ~ N(0, 1)
    for _ in range(looks - 1):
        density = np.convolve(density, kernel)[len(offsets) // 2 : len(offsets) // 2 + n]
    return 1 - float(density.sum() * h)


@lru_cache(maxsize=64)
def horizon_boundary(alpha: float = 0.05, looks: int | None = None) -> float:
    """c such that a Brownian motion on [0, 1] leaves [-c, c] with probability alpha: a constant
    boundary on the sum scale (the O'Brien-Fleming shape). `looks=None` covers monitoring at any
    times, continuously (about 2.241 at alpha 0.05); `looks=K` covers K equally spaced pre-registered
    looks (daily looks over a K-day horizon) and spends exactly alpha on them (1.96 for K = 1)."""
    if looks is None:
        return float(brentq(lambda c: _crossing_continuous(c) - alpha, 1.0, 10.0))
    return float(brentq(lambda c: _crossing_at_looks(c, looks) - alpha, 1.0, 10.0, xtol=1e-4))


def horizon_sequence(diff, se, fraction, alpha: float = 0.05, looks: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Confidence sequence valid under peeking up to a pre-registered horizon (the planned units): at
    information fraction t = units so far / planned units, diff +- c se / sqrt(t) with c from
    `horizon_boundary`. Under the null, (diff / se) sqrt(t) is a Brownian motion W(t) sampled at the
    looks, so the chance of ever excluding the truth before t = 1 is at most alpha: all of it is
    spent on the planned horizon, where the normal mixture spends it on forever. With `looks=None`
    any look times are covered (conservative at a few looks); with `looks=K` the K equally spaced
    looks t = 1/K, ..., 1 are, at level alpha exactly. Looks past the horizon (t > 1) are not covered."""
    radius = horizon_boundary(alpha, looks) * np.asarray(se) / np.sqrt(np.asarray(fraction))
    return np.asarray(diff) - radius, np.asarray(diff) + radius


@dataclass(frozen=True)
class StopRule:
    """The stop rule's decision over a series of looks (last axis)."""

    lo: np.ndarray  # running intersection of the confidence sequence (itself valid)
    hi: np.ndarray
    stop_look: np.ndarray  # first look whose sequence excludes 0, -1 where none did

    @property
    def stopped(self) -> np.ndarray:
        return self.stop_look >= 0


def sequential_stop(lo: np.ndarray, hi: np.ndarray) -> StopRule:
    """Given a confidence sequence at each look (last axis), stop at the first look where it excludes
    zero (the sign says which arm wins); otherwise keep running up to the pre-registered horizon and
    report no detectable difference."""
    lo, hi = np.maximum.accumulate(lo, axis=-1), np.minimum.accumulate(hi, axis=-1)
    excludes = (lo > 0) | (hi < 0)
    return StopRule(lo, hi, np.where(excludes.any(-1), excludes.argmax(-1), -1))


def analytic_power(effect: float, sd_t: float, sd_c: float, n_t: int, n_c: int, alpha: float = 0.05) -> float:
    """Power of the two-sided fixed-horizon test of a true difference `effect` (normal approximation)."""
    se = np.sqrt(sd_t**2 / n_t + sd_c**2 / n_c)
    z = sps.norm.ppf(1 - alpha / 2)
    return float(sps.norm.cdf(effect / se - z) + sps.norm.cdf(-effect / se - z))
