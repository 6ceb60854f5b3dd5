"""Online quality from delayed labels: a label credits the newest exposure that showed its item, within the
attribution window, once per kind; CTR and conversion are taken over a version's newest mature exposures; the
monitors compare a version's CTR with a baseline's only over enough exposures of both."""

import numpy as np

from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.monitors import Monitor, MonitorConfig
from hyperrec.serve.online_quality import OnlineQuality, QualityConfig


def test_a_label_credits_the_newest_exposure_that_showed_the_item():
    quality = OnlineQuality(QualityConfig(attribution_s=100, mature_s=0))
    quality.expose(["user:u", "session:s"], "v1", [1, 2, 3], at=0)
    quality.expose(["user:u"], "v2", [3, 4], at=10)
    assert quality.label(["session:s"], "click", 3, at=20) == "v1"  # the session saw only v1's answer
    assert quality.label(["user:u", "session:s"], "click", 3, at=20) == "v2"  # the newest that showed item 3
    assert quality.label(["user:u"], "purchase", 1, at=50) == "v1"
    assert quality.label(["user:u"], "view", 4, at=50) is None  # a view is no label
    assert quality.label(["user:u"], "click", 9, at=50) is None  # never shown
    assert quality.label(["user:u"], "click", 4, at=111) is None  # past the attribution window
    assert quality.label(["user:other"], "click", 4, at=20) is None
    v1, v2 = quality.of("v1", now=200), quality.of("v2", now=200)
    assert (v1.exposures, v1.clicked, v1.converted) == (1, 1, 1)
    assert (v2.exposures, v2.clicked, v2.ctr) == (1, 1, 1.0)


def test_only_mature_exposures_in_the_window_count():
    quality = OnlineQuality(QualityConfig(window=10, mature_s=60))
    for t in range(30):
        quality.expose([f"user:{t}"], "v1", [t], at=float(t))
        if t % 2 == 0:
            quality.label([f"user:{t}"], "click", t, at=t + 1.0)
    assert quality.of("v1", now=1_000).exposures == 10  # the newest 10
    assert quality.of("v1", now=1_000).ctr == 0.5
    assert quality.of("v1", now=84.5).exposures == 5  # times 20..24 are at least 60 s old, 25..29 not yet


def test_the_shoppers_kept_for_attribution_are_bounded():
    quality = OnlineQuality(QualityConfig(shoppers=100, mature_s=0))
    for u in range(1_000):
        quality.expose([f"user:{u}"], "v1", [u], at=0)
    assert len(quality._shoppers) == 100
    assert quality.label(["user:0"], "click", 0, at=1) is None  # forgotten
    assert quality.label(["user:999"], "click", 999, at=1) == "v1"


def exposures(monitor: Monitor, version: str, n: int, ctr: float, rng: np.random.Generator) -> None:
    for i in range(n):
        shopper = f"user:{version}-{i}"
        monitor.quality.expose([shopper], version, [i], at=0)
        if rng.random() < ctr:
            monitor.quality.label([shopper], "click", i, at=1)


def test_the_ctr_bound_needs_enough_exposures_of_both_versions():
    rng = np.random.default_rng(0)
    config = MonitorConfig(min_exposures=500, ctr_ratio_bound=0.8, quality=QualityConfig(window=5_000, mature_s=0))
    monitor = Monitor(config, ServeMetrics())
    exposures(monitor, "old", 2_000, 0.10, rng)
    exposures(monitor, "new", 400, 0.05, rng)
    assert monitor.check("new", None, baseline="old", now=10).broken == []  # 400 < 500 exposures: no verdict yet
    exposures(monitor, "new", 400, 0.05, rng)
    [broken] = monitor.check("new", None, baseline="old", now=10).broken
    assert broken.startswith("CTR 0.0") and "of old's 0.1" in broken
    exposures(monitor, "same", 2_000, 0.10, rng)
    assert monitor.check("same", None, baseline="old", now=10).broken == []  # as good: no alarm
    assert monitor.check("new", None, now=10).broken == []  # no baseline, no comparison
