"""The simulator's per-slate standard errors take the shopper as the unit: an A/A comparison of true slate values,
where one shopper's slates share that shopper's level, is covered about 95% of the time; an error over slates as
independent draws is not (it is what made a between-shopper difference look like 5.4 standard errors)."""

import numpy as np
import pandas as pd

from hyperrec.sim.run import slate_mean_se

EXPERIMENTS = 400
SHOPPERS = 600  # per arm


def slates(rng: np.random.Generator) -> pd.DataFrame:
    counts = rng.poisson(2.5, SHOPPERS) + 1
    level = rng.gamma(2.0, 1.5, SHOPPERS)  # the shopper's own value of a slate: their slates correlate
    unit = np.repeat(np.arange(SHOPPERS), counts)
    return pd.DataFrame({"unit_id": unit, "true_revenue": level[unit] * rng.gamma(4.0, 0.25, len(unit))})


def test_an_aa_difference_of_slate_means_is_covered_at_95_percent_by_shopper_errors_not_by_slate_errors():
    rng = np.random.default_rng(5)
    covered, covered_iid = 0, 0
    for _ in range(EXPERIMENTS):
        a, b = slates(rng), slates(rng)
        diff = a["true_revenue"].mean() - b["true_revenue"].mean()
        se = np.hypot(slate_mean_se(a, "true_revenue"), slate_mean_se(b, "true_revenue"))
        iid = np.hypot(*(s["true_revenue"].std(ddof=1) / np.sqrt(len(s)) for s in (a, b)))
        covered += abs(diff) <= 1.96 * se
        covered_iid += abs(diff) <= 1.96 * iid
    coverage, coverage_iid = covered / EXPERIMENTS, covered_iid / EXPERIMENTS
    print(f"A/A coverage of slate means: shopper errors {coverage:.3f}, slate errors {coverage_iid:.3f}")
    assert abs(coverage - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / EXPERIMENTS)
    assert coverage_iid < 0.88


def test_one_shopper_has_no_error():
    one = pd.DataFrame({"unit_id": [7, 7, 7], "true_revenue": [1.0, 2.0, 3.0]})
    assert np.isnan(slate_mean_se(one, "true_revenue"))
