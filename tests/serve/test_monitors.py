"""The monitor's window, evidence thresholds, bounds and gauges, against known truths (no model needed)."""

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hyperrec.bundle.drift import DriftReference
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.monitors import Monitor, MonitorConfig, RowWindow

NAMES = ["ann_score", "log_count", "score"]


def rows(rng: np.random.Generator, n: int, score_shift: float = 0.0) -> np.ndarray:
    return np.column_stack([rng.normal(0, 1, n), rng.exponential(1, n), rng.normal(score_shift, 1, n)])


@pytest.fixture(scope="module")
def reference() -> DriftReference:
    return DriftReference.from_values(NAMES, rows(np.random.default_rng(0), 20_000))


def gauge(metrics: ServeMetrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(name)


def test_the_window_keeps_the_newest_rows_in_any_batch_size():
    window, seen = RowWindow(7, 1), []
    for batch in ([1, 2, 3], [4, 5, 6, 7, 8], [9], list(range(10, 30))):
        window.add(np.array(batch, np.float32)[:, None])
        seen += batch
        assert sorted(window.values().ravel().tolist()) == seen[-7:]


def serve(monitor: Monitor, rng: np.random.Generator, requests: int, score_shift: float = 0.0, degraded_every: int = 0) -> bool:
    due = False
    for r in range(requests):
        values = rows(rng, 40, score_shift)
        monitor.observe_ranking("v1", values[:, :-1], values[:, -1])
        due = monitor.observe_answer("v1", degraded=bool(degraded_every) and r % degraded_every == 0) or due
    return due


def test_an_unshifted_version_breaks_no_bound_and_a_shifted_score_does(reference):
    rng = np.random.default_rng(1)
    for _ in range(20):  # a fresh monitor each time: no false alarm over 20 windows of well-behaved traffic
        monitor = Monitor(MonitorConfig(), ServeMetrics())
        assert serve(monitor, rng, 150)
        assert monitor.check("v1", reference).broken == []
    metrics = ServeMetrics()
    monitor = Monitor(MonitorConfig(), metrics)
    serve(monitor, rng, 150, score_shift=1.0)
    verdict = monitor.check("v1", reference)
    assert len(verdict.broken) == 1 and verdict.broken[0].startswith("score PSI")
    assert verdict.drift.shifted == ["score"]
    assert gauge(metrics, "hyperrec_drift_psi", version="v1", column="score") > 0.25
    assert gauge(metrics, "hyperrec_drift_psi", version="v1", column="ann_score") < 0.1


def test_no_verdict_on_too_little_evidence(reference):
    monitor = Monitor(MonitorConfig(min_rows=2_000, min_answers=100, check_every=10), ServeMetrics())
    assert serve(monitor, np.random.default_rng(2), 40, score_shift=2.0, degraded_every=1)  # 1,600 rows, 40 answers
    verdict = monitor.check("v1", reference)
    assert verdict.drift is None and verdict.degraded_share is None and verdict.broken == []


def test_a_degraded_share_over_its_bound_breaks_it(reference):
    metrics = ServeMetrics()
    monitor = Monitor(MonitorConfig(degraded_window=200, degraded_share_bound=0.2), metrics)
    serve(monitor, np.random.default_rng(3), 200, degraded_every=10)  # 10%
    assert monitor.check("v1", reference).broken == []
    serve(monitor, np.random.default_rng(4), 200, degraded_every=3)  # 34%, the window holds only these
    [broken] = monitor.check("v1", reference).broken
    assert broken.startswith("degraded answers 34%")
    assert gauge(metrics, "hyperrec_degraded_share", version="v1") == pytest.approx(67 / 200)


def test_checks_are_due_every_check_every_answers_and_forget_drops_the_evidence(reference):
    monitor = Monitor(MonitorConfig(check_every=5), ServeMetrics())
    due = [monitor.observe_answer("v1", False) for _ in range(12)]
    assert [i for i, d in enumerate(due) if d] == [4, 9]
    monitor.observe_ranking("v1", np.zeros((3, 2)), np.zeros(3))
    monitor.forget("v1")
    assert "v1" not in monitor.windows and "v1" not in monitor.answers


def test_event_lags_and_unknown_items_reach_the_metrics():
    metrics = ServeMetrics()
    monitor = Monitor(MonitorConfig(), metrics)
    monitor.observe_events(np.array([0.05, 3.0, 7200.0, -1.0]), unknown=1)
    assert gauge(metrics, "hyperrec_event_lag_seconds_count") == 4
    assert gauge(metrics, "hyperrec_event_lag_seconds_bucket", le="5.0") == 3  # the clock-skewed -1 s counts as 0
    assert gauge(metrics, "hyperrec_unknown_item_events_total") == 1
