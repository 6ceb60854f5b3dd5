"""`hyperrec monitor`: a running endpoint's monitors as tables and plots, read from its /readyz and /metrics.

Per version: the degraded share, online CTR and conversion with their exposures, rollbacks and canary
outcomes; per version and ranker column: drift PSI and KS against the bundle's reference (the score's
PSI bound marked); the events' arrival lag (quantiles from the histogram's buckets: upper bounds).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from hyperrec.eval.report import print_table, save_figure, write_table

Samples = dict[str, list[tuple[dict[str, str], float]]]  # sample name -> (labels, value)


def scrape(url: str, timeout_s: float = 5.0) -> tuple[dict, Samples]:
    """The server's readiness and its metric samples. Over one kept-alive connection that this client closes: a
    server that closes first (as it does for `Connection: close` clients, urllib's) leaves its port in TIME_WAIT,
    and Ray Serve binds without SO_REUSEADDR, so a restart within a minute would fail to bind."""
    with httpx.Client(base_url=url, timeout=timeout_s) as client:
        ready = client.get("/readyz").raise_for_status().json()
        text = client.get("/metrics").raise_for_status().text
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return ready, samples


def _by_label(samples: Samples, name: str, label: str, **match: str) -> dict[str, float]:
    return {s[label]: v for s, v in samples.get(name, []) if all(s.get(k) == m for k, m in match.items())}


def version_table(ready: dict, samples: Samples) -> pd.DataFrame:
    columns = {
        "degraded share": _by_label(samples, "hyperrec_degraded_share", "version"),
        "exposures": _by_label(samples, "hyperrec_online_exposures", "version"),
        "CTR": _by_label(samples, "hyperrec_online_ctr", "version"),
        "conversion": _by_label(samples, "hyperrec_online_conversion", "version"),
        "rollbacks from it": _by_label(samples, "hyperrec_rollbacks_total", "from_version"),
        "canary promoted": _by_label(samples, "hyperrec_canary_outcomes_total", "version", outcome="promoted"),
        "canary rolled back": _by_label(samples, "hyperrec_canary_outcomes_total", "version", outcome="rolled back"),
    }
    roles = {ready["model_version"]: "current"} | ({ready["last_good"]: "last-good"} if ready.get("last_good") else {})
    if ready.get("canary"):
        roles[ready["canary"]["version"]] = "canary"
    versions = sorted(set(roles) | {v for values in columns.values() for v in values})
    table = pd.DataFrame({"role": [roles.get(v, "") for v in versions]}, index=pd.Index(versions, name="version"))
    for name, values in columns.items():
        table[name] = [values.get(v, np.nan) for v in versions]
    return table


def drift_table(samples: Samples) -> pd.DataFrame:
    psi = {(s["version"], s["column"]): v for s, v in samples.get("hyperrec_drift_psi", [])}
    ks = {(s["version"], s["column"]): v for s, v in samples.get("hyperrec_drift_ks", [])}
    index = pd.MultiIndex.from_tuples(sorted(psi), names=["version", "column"])
    return pd.DataFrame({"PSI": [psi[k] for k in index], "KS": [ks.get(k, np.nan) for k in index]}, index=index)


def lag_buckets(samples: Samples) -> tuple[np.ndarray, np.ndarray]:
    """(upper bounds in seconds, cumulative counts) of the event-lag histogram."""
    rows = sorted((float(s["le"]), v) for s, v in samples.get("hyperrec_event_lag_seconds_bucket", []))
    return np.array([le for le, _ in rows]), np.array([n for _, n in rows])


def lag_quantiles(bounds: np.ndarray, cumulative: np.ndarray, quantiles=(0.5, 0.9, 0.99)) -> dict[str, float]:
    """Each quantile as the upper bound of the bucket that holds it (inf: beyond the last bound)."""
    if not len(cumulative) or cumulative[-1] == 0:
        return {}
    return {f"p{round(100 * q)}": float(bounds[np.searchsorted(cumulative, q * cumulative[-1])]) for q in quantiles}


def plot_drift(drift: pd.DataFrame, bound: float, path: Path) -> None:
    versions = list(dict.fromkeys(drift.index.get_level_values("version")))
    columns = list(dict.fromkeys(drift.index.get_level_values("column")))
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(columns) + 1.5))
    height = 0.8 / max(len(versions), 1)
    for i, version in enumerate(versions):
        values = [drift["PSI"].get((version, c), np.nan) for c in columns]
        ax.barh(np.arange(len(columns)) + i * height - 0.4 + height / 2, values, height, label=version)
    ax.axvline(bound, color="red", linestyle="--", label=f"score PSI bound {bound}")
    ax.set_yticks(np.arange(len(columns)), columns, fontsize=7)
    ax.set_xlabel("PSI against the bundle's reference")
    ax.set_title("drift of the ranker's live candidates")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_quality(versions: pd.DataFrame, path: Path) -> None:
    shown = versions.dropna(subset=["CTR"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    x = np.arange(len(shown))
    ax.bar(x - 0.2, shown["CTR"], 0.4, label="CTR")
    ax.bar(x + 0.2, shown["conversion"], 0.4, label="conversion")
    ax.set_xticks(
        x, [f"{v}\n({r or 'old'}, {int(n):,} answers)" for v, r, n in zip(shown.index, shown["role"], shown["exposures"])], fontsize=7
    )
    ax.set_ylabel("share of answers")
    ax.set_title("online quality from delayed labels")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_lag(bounds: np.ndarray, cumulative: np.ndarray, path: Path) -> None:
    counts = np.diff(np.r_[0, cumulative])
    fig, ax = plt.subplots(figsize=(6, 3.2))
    labels = [f"<= {b:g} s" if np.isfinite(b) else "more" for b in bounds]
    ax.bar(np.arange(len(counts)), counts)
    ax.set_xticks(np.arange(len(counts)), labels, rotation=45, fontsize=7)
    ax.set_ylabel("events")
    ax.set_title("event lag: arrival minus event time")
    save_figure(fig, path)


def run_monitor(url: str, out: Path, console: Console, score_psi_bound: float = 0.25) -> list[Path]:
    """Print the report and write its tables and plots under `out`; returns the files written."""
    ready, samples = scrape(url)
    console.print(f"[bold]{url}[/]: serving {ready['model_version']}, last-good {ready.get('last_good') or 'none'}")
    if ready.get("canary"):
        console.print(f"  canary: {ready['canary']['version']} answers {ready['canary']['share']:.0%} of the shoppers")
    for key in ("canary_outcome", "rolled_back", "warning"):
        if ready.get(key):
            console.print(f"  {key.replace('_', ' ')}: {ready[key]}")
    versions = version_table(ready, samples)
    print_table(versions, "versions")
    files = write_table(versions, out, "versions")
    if versions["CTR"].notna().any():
        plot_quality(versions, out / "online_quality.png")
        files.append(out / "online_quality.png")
    drift = drift_table(samples)
    if len(drift):
        print_table(drift.sort_values("PSI", ascending=False).head(10), "largest drift (PSI, KS) of the live candidates")
        files += write_table(drift, out, "drift")
        plot_drift(drift, score_psi_bound, out / "drift_psi.png")
        files.append(out / "drift_psi.png")
    else:
        console.print("drift: no check has had enough candidate rows yet")
    bounds, cumulative = lag_buckets(samples)
    quantiles = lag_quantiles(bounds, cumulative)
    unknown = sum(v for _, v in samples.get("hyperrec_unknown_item_events_total", []))
    if quantiles:
        console.print(f"events: {int(cumulative[-1]):,} accepted, lag {', '.join(f'{q} <= {v:g} s' for q, v in quantiles.items())}")
        plot_lag(bounds, cumulative, out / "event_lag.png")
        files.append(out / "event_lag.png")
    console.print(f"events about unknown items: {int(unknown):,}")
    console.print(f"tables and plots in {out}")
    return files
