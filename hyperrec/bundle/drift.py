"""Drift of what the served ranker sees: each input feature and the score, live against the
reference export stored in the bundle.

Export computes the reference from what the served ranker will see: the candidates serving's own
retrieval hands it for the export's shoppers (`serving_reference`), and their scores; a monitor
(hyperrec/serve/monitors.py) compares a window of live candidates with it:
- PSI (population stability index) over the reference's deciles: sum (live - ref) * ln(live / ref);
  the usual reading is < 0.1 stable, 0.1-0.25 moderate, > 0.25 a real shift;
- the two-sample Kolmogorov-Smirnov statistic (largest gap between the two empirical CDFs) and the
  1-Wasserstein distance (area between them), against a stored sample of the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from hyperrec.config import StrictModel

BINS = 10
SAMPLE = 2_000  # reference values kept per column for KS and Wasserstein
EPS = 1e-4  # proportion floor: an empty bin on either side must not make PSI infinite


def psi(reference_share: np.ndarray, live_share: np.ndarray) -> float:
    ref, live = np.maximum(reference_share, EPS), np.maximum(live_share, EPS)
    return float(np.sum((live - ref) * np.log(live / ref)))


def ks_statistic(reference: np.ndarray, live: np.ndarray) -> float:
    grid = np.concatenate([reference, live])
    ref_cdf = np.searchsorted(np.sort(reference), grid, side="right") / len(reference)
    live_cdf = np.searchsorted(np.sort(live), grid, side="right") / len(live)
    return float(np.max(np.abs(ref_cdf - live_cdf)))


def wasserstein(reference: np.ndarray, live: np.ndarray) -> float:
    grid = np.sort(np.concatenate([reference, live]))
    ref_cdf = np.searchsorted(np.sort(reference), grid[:-1], side="right") / len(reference)
    live_cdf = np.searchsorted(np.sort(live), grid[:-1], side="right") / len(live)
    return float(np.sum(np.abs(ref_cdf - live_cdf) * np.diff(grid)))


class ColumnDrift(StrictModel):
    psi: float
    ks: float
    wasserstein: float
    shifted: bool


class DriftReport(StrictModel):
    rows: int = Field(description="live rows compared")
    psi_bound: float
    columns: dict[str, ColumnDrift]

    @property
    def shifted(self) -> list[str]:
        return [name for name, column in self.columns.items() if column.shifted]


class DriftReference:
    """Per column: the reference's inner decile edges, its share in each bin and a sample of its values."""

    def __init__(self, names: list[str], edges: np.ndarray, shares: np.ndarray, sample: np.ndarray):
        self.names, self.edges, self.shares, self.sample = names, edges, shares, sample

    @classmethod
    def from_values(cls, names: list[str], values: np.ndarray, seed: int = 0) -> DriftReference:
        """`values`: [rows, len(names)], e.g. the ranker's input features with its score as the last column."""
        values = np.asarray(values, np.float64)
        edges = np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1], axis=0).T  # [columns, BINS - 1]
        shares = np.stack([_shares(values[:, c], edges[c]) for c in range(len(names))])
        rows = np.random.default_rng(seed).permutation(len(values))[:SAMPLE]
        return cls(list(names), edges, shares, values[rows])

    def compare(self, values: np.ndarray, psi_bound: float = 0.25) -> DriftReport:
        """Live `values` (same columns) against the reference; a column is shifted when its PSI exceeds `psi_bound`."""
        values = np.asarray(values, np.float64)
        columns = {}
        for c, name in enumerate(self.names):
            live = values[:, c]
            score = psi(self.shares[c], _shares(live, self.edges[c]))
            reference = self.sample[:, c]
            columns[name] = ColumnDrift(
                psi=score, ks=ks_statistic(reference, live), wasserstein=wasserstein(reference, live), shifted=score > psi_bound
            )
        return DriftReport(rows=len(values), psi_bound=psi_bound, columns=columns)

    def save(self, path: Path) -> None:
        np.savez(path, names=np.array(self.names), edges=self.edges, shares=self.shares, sample=self.sample)

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        saved = np.load(path)
        return cls([str(n) for n in saved["names"]], saved["edges"], saved["shares"], saved["sample"])


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of `values` in each of the bins the inner `edges` make; a value on an edge goes to the bin above
    (constant columns, whose edges coincide, then put everything in one bin on both sides)."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1) / max(len(values), 1)
