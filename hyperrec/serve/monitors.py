"""Monitors of the live endpoint, and the bounds whose break rolls a version back by itself.

What is watched, per served version:
- drift of what the ranker sees: a window of the newest live candidate rows (its input features
  and its score) against the reference stored in the bundle at export (`hyperrec/bundle/drift.py`:
  PSI, KS, Wasserstein per column);
- the share of degraded answers (not served by the current version's ranker) among the last answers;
- online quality from delayed labels (`hyperrec/serve/online_quality.py`): CTR and conversion of the
  version's recent answers, against a baseline version's (the last-good one; for a canary, the current one);
- the events: how late they arrive (event time to arrival: the online state's freshness) and the
  share about items the served version does not know.

A check runs every `check_every` answers, off the request path (a thread), and sets the gauges on
/metrics. A bound is judged only over enough evidence (`min_rows` candidate rows, `min_answers`
answers, `min_exposures` exposures of both versions). `Monitor.check` returns the broken bounds; the flow
rolls back on them, or ends a canary (RecommendFlow).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from hyperrec.bundle.drift import DriftReference, DriftReport
from hyperrec.config import StrictModel
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.online_quality import OnlineQuality, QualityConfig, VersionQuality


class MonitorConfig(StrictModel):
    enabled: bool = True
    check_every: int = Field(100, ge=1, description="answers between two checks")
    window_rows: int = Field(5_000, ge=100, description="newest live candidate rows (features and score) kept for drift")
    min_rows: int = Field(2_000, ge=100, description="drift is judged over at least this many rows of the version")
    score_psi_bound: float = Field(0.25, gt=0, description="score PSI above this is a real shift: a broken bound")
    feature_psi_bound: float = Field(0.25, gt=0, description="a feature above this is reported as shifted (a gauge, not a rollback)")
    degraded_window: int = Field(200, ge=10, description="answers over which the degraded share is taken")
    min_answers: int = Field(100, ge=1, description="the degraded share is judged over at least this many answers")
    degraded_share_bound: float = Field(0.2, gt=0, le=1, description="a larger share of degraded answers is a broken bound")
    quality: QualityConfig = QualityConfig()
    min_exposures: int = Field(1_000, ge=1, description="CTR is compared over at least this many exposures of both versions")
    ctr_ratio_bound: float = Field(0.8, gt=0, le=1, description="CTR below this share of the baseline version's is a broken bound")
    rollback: bool = Field(True, description="on a broken bound, swap to the last-good version and stay there until an admin swaps")


class RowWindow:
    """The newest `capacity` rows of a fixed width, in a preallocated ring."""

    def __init__(self, capacity: int, width: int):
        self.rows = np.empty((capacity, width), np.float32)
        self.next, self.filled = 0, 0

    def add(self, values: np.ndarray) -> None:
        values = values[-len(self.rows) :]
        n, capacity = len(values), len(self.rows)
        end = self.next + n
        if end <= capacity:
            self.rows[self.next : end] = values
        else:
            split = capacity - self.next
            self.rows[self.next :], self.rows[: n - split] = values[:split], values[split:]
        self.next, self.filled = end % capacity, min(capacity, self.filled + n)

    def values(self) -> np.ndarray:
        return self.rows[: self.filled].copy()


@dataclass
class Verdict:
    version: str
    drift: DriftReport | None
    degraded_share: float | None
    quality: VersionQuality | None
    broken: list[str]  # the bounds broken, each as a sentence (empty: all well)


class Monitor:
    """What one served version's answers and the events look like lately (one per flow)."""

    def __init__(self, config: MonitorConfig, metrics: ServeMetrics):
        self.config, self.metrics = config, metrics
        self.windows: dict[str, RowWindow] = {}
        self.answers: dict[str, deque[bool]] = {}
        self.quality = OnlineQuality(config.quality)
        self.since_check = 0

    def observe_ranking(self, version: str, features: np.ndarray, scores: np.ndarray) -> None:
        """One request's ranked candidates: the ranker's inputs with its score as the last column."""
        if not len(scores):
            return
        rows = np.column_stack([features, scores]).astype(np.float32, copy=False)
        window = self.windows.get(version)
        if window is None:
            window = self.windows[version] = RowWindow(self.config.window_rows, rows.shape[1])
        window.add(rows)

    def observe_answer(self, version: str, degraded: bool) -> bool:
        """Count one answer of `version`; True when a check is due."""
        self.answers.setdefault(version, deque(maxlen=self.config.degraded_window)).append(degraded)
        self.since_check += 1
        if self.since_check < self.config.check_every:
            return False
        self.since_check = 0
        return True

    def observe_events(self, lags_s: np.ndarray, unknown: int) -> None:
        """A batch of accepted events: each one's lag (arrival minus event time) and how many named unknown items."""
        for lag in np.clip(lags_s, 0, None):
            self.metrics.event_lag.observe(float(lag))
        self.metrics.unknown_item_events.inc(unknown)

    def forget(self, version: str) -> None:
        """A version no longer served: its evidence goes (a version served again starts afresh)."""
        self.windows.pop(version, None)
        self.answers.pop(version, None)
        self.quality.forget(version)

    def check(self, version: str, reference: DriftReference | None, baseline: str | None = None, now: float | None = None) -> Verdict:
        """Judge `version` on what it served lately, its CTR against `baseline`'s (at `now`, default: the clock's); sets
        the gauges. Safe to run in a thread."""
        config, broken = self.config, []
        now = time.time() if now is None else now
        drift = None
        window = self.windows.get(version)
        if reference is not None and window is not None and window.filled >= config.min_rows:
            drift = reference.compare(window.values(), psi_bound=config.feature_psi_bound)
            for name, column in drift.columns.items():
                self.metrics.drift_psi.labels(version, name).set(column.psi)
                self.metrics.drift_ks.labels(version, name).set(column.ks)
            score = drift.columns["score"].psi
            if score > config.score_psi_bound:
                broken.append(f"score PSI {score:.2f} > {config.score_psi_bound} over {drift.rows:,} candidate rows")
        answers = self.answers.get(version, ())
        share = float(np.mean(answers)) if len(answers) >= config.min_answers else None
        if share is not None:
            self.metrics.degraded_share.labels(version).set(share)
            if share > config.degraded_share_bound:
                broken.append(f"degraded answers {share:.0%} > {config.degraded_share_bound:.0%} of the last {len(answers)}")
        quality = self.quality.of(version, now)
        self.metrics.online_exposures.labels(version).set(quality.exposures)
        if quality.exposures:
            self.metrics.online_ctr.labels(version).set(quality.ctr)
            self.metrics.online_conversion.labels(version).set(quality.conversion)
        if baseline is not None and baseline != version:
            base = self.quality.of(baseline, now)
            enough = min(quality.exposures, base.exposures) >= config.min_exposures
            if enough and base.ctr > 0 and quality.ctr < config.ctr_ratio_bound * base.ctr:
                broken.append(
                    f"CTR {quality.ctr:.4f} is {quality.ctr / base.ctr:.2f} of {baseline}'s {base.ctr:.4f} "
                    f"(bound {config.ctr_ratio_bound}) over {quality.exposures:,} and {base.exposures:,} exposures"
                )
        return Verdict(version, drift, share, quality, broken)
