"""`hyperrec experiment analyze NAME`: an experiment's logs -> per-arm metrics, differences with
intervals, CUPED, the sample-ratio check and the sequential verdict, as tables and a plot.

The unit of randomization is the unit id (a user, or a session for an anonymous shopper). A unit's
outcomes count from its first exposure on (what the arm could have changed); its CUPED covariate is
the same metric over `pre_days` before the experiment started (what no arm could have changed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from rich.console import Console

from hyperrec.eval.report import print_table, save_figure, write_table
from hyperrec.experiment import stats
from hyperrec.experiment.assignment import HOLDOUT, ExperimentSpec, load_spec
from hyperrec.experiment.records import LogError, log_files, read_log

PRIMARY = {"revenue": "value", "margin": "margin"}  # per-unit metrics CUPED and the stop rule may run on -> outcome field
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class Analysis:
    arms: pd.DataFrame  # per-arm metrics
    differences: pd.DataFrame  # each arm vs control, every metric
    summary: pd.DataFrame  # SRM, CUPED and the sequential verdict per arm
    running: pd.DataFrame  # daily looks: estimate, fixed interval and confidence sequence per arm
    files: list[Path]


def unit_table(exposures: pd.DataFrame, outcomes: pd.DataFrame, metric: str, pre_days: float, until: pd.Timestamp) -> pd.DataFrame:
    """One row per unit: its arm, exposures, sessions and outcomes from its first exposure up to `until`,
    and the pre-period value of `metric`."""
    exposures = exposures[exposures["timestamp"] < until]
    units = exposures.groupby("unit_id").agg(
        arm=("arm", "first"), first_seen=("timestamp", "min"), impressions=("trace_id", "size"), sessions=("session_id", "nunique")
    )
    start = exposures["timestamp"].min()
    mine = outcomes[outcomes["unit_id"].isin(units.index)]
    pre = mine[(mine["timestamp"] < start) & (mine["timestamp"] >= start - pd.Timedelta(days=pre_days))]
    post = mine[(mine["timestamp"] >= mine["unit_id"].map(units["first_seen"])) & (mine["timestamp"] < until)]
    kind = post["event"]
    units["clicks"] = post[(kind == "click") & post["trace_id"].isin(exposures["trace_id"])].groupby("unit_id").size()  # on a slate
    units["cart_sessions"] = post[kind == "add_to_cart"].groupby("unit_id")["session_id"].nunique()
    purchases = post[kind == "purchase"].groupby("unit_id")
    units["orders"] = purchases["session_id"].nunique()  # one order per session with a purchase
    units["revenue"], units["margin"] = purchases["value"].sum(), purchases["margin"].sum()
    units["pre"] = pre[pre["event"] == "purchase"].groupby("unit_id")[PRIMARY[metric]].sum()
    return units.fillna({c: 0 for c in ("clicks", "cart_sessions", "orders", "revenue", "margin", "pre")})


# metric -> (numerator, denominator); a denominator of None is a per-unit mean (Welch), else a ratio (delta method)
METRICS: dict[str, tuple[str, str | None]] = {
    "ctr": ("clicks", "impressions"),
    "add_to_cart_rate": ("cart_sessions", "sessions"),
    "conversion": ("orders", "sessions"),
    "revenue_per_unit": ("revenue", None),
    "margin_per_unit": ("margin", None),
    "revenue_per_session": ("revenue", "sessions"),
    "average_order_value": ("revenue", "orders"),
}


def arm_metrics(units: pd.DataFrame, groups: list[str]) -> pd.DataFrame:
    rows = {}
    for arm in groups:
        u = units[units["arm"] == arm]
        sums = dict(u.sum(numeric_only=True)) | {None: len(u)}  # a per-unit mean divides by the units
        row = {"units": len(u), "sessions": int(sums["sessions"]), "impressions": int(sums["impressions"])}
        rows[arm] = row | {name: sums[num] / sums[den] if sums[den] else np.nan for name, (num, den) in METRICS.items()}
    return pd.DataFrame(rows).T.rename_axis("arm")


def difference(units: pd.DataFrame, arm: str, control: str, metric: str, alpha: float) -> stats.Estimate:
    t, c = units[units["arm"] == arm], units[units["arm"] == control]
    num, den = METRICS[metric]
    if den is None:
        return stats.welch_diff(t[num].to_numpy(float), c[num].to_numpy(float), alpha)
    return stats.ratio_diff(t[num].to_numpy(float), t[den].to_numpy(float), c[num].to_numpy(float), c[den].to_numpy(float), alpha)


def running_estimates(exposures, outcomes, spec: ExperimentSpec, metric: str, pre_days: float) -> pd.DataFrame:
    """A look at the end of every day: the primary metric's difference, its fixed-horizon interval
    and the pre-registered confidence sequence (running intersection) with the stop rule's state."""
    seq = spec.sequential
    start, end = exposures["timestamp"].min(), exposures["timestamp"].max()
    days = max(1, int(np.ceil((end - start) / DAY)))
    rows = []
    for day in range(1, days + 1):
        units = unit_table(exposures, outcomes, metric, pre_days, start + day * DAY)
        control = units[units["arm"] == spec.control_arm][metric].to_numpy(float)
        for arm in [a for a in spec.arm_names if a != spec.control_arm]:
            treated = units[units["arm"] == arm][metric].to_numpy(float)
            if min(len(treated), len(control)) < 2:
                continue
            est = stats.welch_diff(treated, control, seq.alpha)
            if seq.max_units is not None:
                lo, hi = stats.horizon_sequence(est.diff, est.se, min(1.0, len(units) / seq.max_units), seq.alpha)
            else:
                sd = np.sqrt((treated.var(ddof=1) + control.var(ddof=1)) / 2)
                lo, hi = stats.confidence_sequence(est.diff, est.se, seq.tau * sd, seq.alpha)
            rows.append(
                {"arm": arm, "day": day, "units": len(units), "diff": est.diff}
                | {"ci_lo": est.lo, "ci_hi": est.hi, "cs_lo": lo, "cs_hi": hi}
            )
    running = pd.DataFrame(rows, columns=["arm", "day", "units", "diff", "ci_lo", "ci_hi", "cs_lo", "cs_hi"])
    for _, part in running.groupby("arm"):
        rule = stats.sequential_stop(part["cs_lo"].to_numpy(), part["cs_hi"].to_numpy())
        running.loc[part.index, "cs_lo"], running.loc[part.index, "cs_hi"] = rule.lo, rule.hi
    return running


def verdict(running: pd.DataFrame, arm: str, spec: ExperimentSpec) -> str:
    part = running[running["arm"] == arm]
    if part.empty:
        return "too few units for a look"
    excludes = (part["cs_lo"] > 0) | (part["cs_hi"] < 0)
    if excludes.any():
        first = part[excludes].iloc[0]
        better = "better" if first["cs_lo"] > 0 else "worse"
        return f"stop: {arm} {better} than {spec.control_arm} (day {int(first['day'])})"
    horizon = spec.sequential.max_units
    if horizon is not None and part["units"].iloc[-1] >= horizon:
        return f"stop at the horizon ({horizon:,} units): no detectable difference"
    return "continue: the confidence sequence still holds 0"


def plot_running(running: pd.DataFrame, metric: str, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for arm, part in running.groupby("arm"):
        line = ax.plot(part["day"], part["diff"], marker="o", label=f"{arm}: difference")[0]
        ax.fill_between(part["day"], part["cs_lo"], part["cs_hi"], color=line.get_color(), alpha=0.15, label=f"{arm}: confidence sequence")
        ax.plot(part["day"], part["ci_lo"], ls=":", color=line.get_color(), label=f"{arm}: fixed-horizon CI")
        ax.plot(part["day"], part["ci_hi"], ls=":", color=line.get_color())
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel("day of the experiment")
    ax.set_ylabel(f"{metric} per unit, arm - control")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path, dpi=120)


def check_arms(exposures: pd.DataFrame, spec: ExperimentSpec, where: Path) -> list[str]:
    """The groups to analyse (arms, and the holdout when it is logged); an error names what does not match."""
    logged = set(exposures["arm"].unique())
    unknown = sorted(logged - set(spec.arm_names) - {HOLDOUT})
    if unknown:
        raise LogError(f"{where}: arm(s) {unknown} in the exposure log are not arms of experiment '{spec.name}' ({spec.arm_names})")
    missing = [arm for arm in spec.arm_names if arm not in logged]
    if missing:
        raise LogError(f"{where}: arm(s) {missing} of experiment '{spec.name}' are missing from the exposure log (it has {sorted(logged)})")
    return spec.arm_names + ([HOLDOUT] if HOLDOUT in logged else [])


def analyze(logs: Path, name: str, out: Path, spec_path: Path | None = None, metric: str = "revenue", pre_days: float = 14.0) -> Analysis:
    with np.errstate(divide="ignore", invalid="ignore"):  # an arm too small for a variance gets NaN intervals, not warnings
        return _analyze(logs, name, out, spec_path, metric, pre_days)


def _analyze(logs: Path, name: str, out: Path, spec_path: Path | None, metric: str, pre_days: float) -> Analysis:
    if metric not in PRIMARY:
        raise ValueError(f"--metric {metric}: expected one of {PRIMARY}")
    exposure_files, outcome_files = log_files(logs, name)
    spec_path = spec_path or logs / name / "experiment.yaml"
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: no experiment config (the serving side writes it next to the logs; or pass --config)")
    spec = load_spec(spec_path)
    exposures, outcomes = read_log(exposure_files, "exposures"), read_log(outcome_files, "outcomes")
    exposures = exposures[exposures["experiment"] == name]
    if exposures.empty:
        raise LogError(f"{logs / name}: the exposure log holds no rows of experiment '{name}'")
    groups = check_arms(exposures, spec, logs / name)
    mixed = exposures.groupby("unit_id")["arm"].nunique()
    exposures = exposures[~exposures["unit_id"].isin(mixed[mixed > 1].index)]  # a broken assignment; reported below
    alpha = spec.sequential.alpha
    until = max(exposures["timestamp"].max(), outcomes["timestamp"].max()) + pd.Timedelta(microseconds=1)  # after the last slate too
    units = unit_table(exposures, outcomes, metric, pre_days, until)
    arms = arm_metrics(units, groups)

    control, rows, summary = spec.control_arm, [], []
    counts = units["arm"].value_counts()
    shares = spec.shares(with_holdout=HOLDOUT in groups)
    srm = stats.srm_test(np.array([counts.get(g, 0) for g in shares]), np.array(list(shares.values())))
    running = running_estimates(exposures, outcomes, spec, metric, pre_days)
    for arm in [a for a in spec.arm_names if a != control]:
        for name_ in METRICS:
            est = difference(units, arm, control, name_, alpha)
            base = arms.loc[control, name_]
            rows.append(
                {"arm": arm, "metric": name_, "control": base, "treatment": arms.loc[arm, name_], "diff": est.diff}
                | {"ci_lo": est.lo, "ci_hi": est.hi, "p": est.p, "lift": est.diff / base if base else np.nan}
            )
        t, c = units[units["arm"] == arm], units[units["arm"] == control]
        adj = stats.cuped(t[metric].to_numpy(float), t["pre"].to_numpy(float), c[metric].to_numpy(float), c["pre"].to_numpy(float), alpha)
        summary.append(
            {"arm": arm, "metric": f"{metric}_per_unit", "cuped_diff": adj.estimate.diff, "cuped_lo": adj.estimate.lo}
            | {"cuped_hi": adj.estimate.hi, "theta": adj.theta, "variance_reduction": adj.variance_reduction}
            | {"srm_p": srm.p, "srm": "MISMATCH" if srm.flagged else "ok", "mixed_units": int((mixed > 1).sum())}
            | {"sequential": verdict(running, arm, spec)}
        )
    differences = pd.DataFrame(rows).set_index(["arm", "metric"])
    summary_frame = pd.DataFrame(summary).set_index("arm")
    folder = out / name
    tables = {"arms": arms, "differences": differences, "summary": summary_frame}
    files = [path for stem, table in tables.items() for path in write_table(table, folder, stem)]
    files.append(folder / "running.png")
    plot_running(running, metric, files[-1], f"{name}: running estimate and confidence sequence")
    running.to_csv(folder / "running.csv", index=False)
    return Analysis(arms, differences, summary_frame, running, files + [folder / "running.csv"])


def print_analysis(result: Analysis, name: str, console: Console) -> None:
    print_table(result.arms, f"experiment {name}: per arm", console)
    print_table(result.differences, "each arm vs control (Welch / delta-method intervals)", console)
    print_table(result.summary, "CUPED, sample-ratio check, sequential stop rule", console)
    console.print(f"tables and plot -> {result.files[0].parent}")
