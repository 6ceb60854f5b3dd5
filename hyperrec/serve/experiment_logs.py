"""`hyperrec experiment collect NAME`: an endpoint's experiment as the logs `hyperrec experiment analyze` reads.

The endpoint writes no second log for experiments: its audit log already holds every decision with the
experiment, the arm, the slate and the exploration slot's draw, under pseudonyms of the user and session
ids. Exposures are those records. Outcomes are the event log's clicks, carts and purchases, keyed by the
same pseudonyms (so collecting needs the endpoint's HYPERREC_ID_KEY), with a purchase's value (price x
quantity) and margin (value x the catalogue's margin rate). An outcome is credited to the newest exposure
of the unit that showed its item within `attribution_s` before it (its trace id); others stay organic.
A unit is the user, else the session, as the endpoint assigned it; decisions without analytics consent
carry no pseudonym and are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from hyperrec.config import ConfigError
from hyperrec.data.offline_store import OfflineStore
from hyperrec.experiment.assignment import ExperimentSpec, load_spec
from hyperrec.experiment.records import LogError, write_frame
from hyperrec.registry import Registry
from hyperrec.serve.audit import read_records
from hyperrec.serve.audit_report import pseudonyms_from_environment
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.privacy import Pseudonyms

OUTCOME_EVENTS = ["click", "add_to_cart", "purchase"]


def exposures_from_audit(audit: Path, name: str) -> pd.DataFrame:
    rows = []
    for record in read_records(audit):
        unit = record.user or record.session
        if record.experiment != name or unit is None:
            continue
        slot = record.exploration
        rows.append(
            {"trace_id": record.decision_id, "timestamp": record.time, "unit_id": unit, "session_id": record.session or record.decision_id}
            | {"experiment": name, "arm": record.arm, "placement": record.placement or "home", "model_version": record.model_version}
            | {"slate": [{"item_id": i.item_id, "position": p, "score": i.score} for p, i in enumerate(record.items)]}
            | {"explore_item": slot.item_id if slot else None, "explore_propensity": slot.propensity if slot else None}
        )
    if not rows:
        raise LogError(f"experiment '{name}': no decision of it with a consenting shopper in the audit log {audit}")
    frame = pd.DataFrame(rows)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def outcomes_from_events(events: pd.DataFrame, pseudonyms: Pseudonyms, margin_rate: dict[str, float]) -> pd.DataFrame:
    events = events[events["event_type"].isin(OUTCOME_EVENTS)]
    user, session = events["user_id"], events["session_id"]
    key = np.where(user.notna() & (user != ""), user, session)
    value = np.where(events["event_type"] == "purchase", events["price"].fillna(0.0) * events["quantity"].fillna(1), 0.0)
    return pd.DataFrame(
        {
            "unit_id": [pseudonyms.of(str(k)) for k in key],
            "session_id": [pseudonyms.of(str(s) if isinstance(s, str) and s else str(k)) for s, k in zip(session, key, strict=True)],
            "timestamp": pd.to_datetime(events["timestamp"], utc=True).to_numpy(),
            "event": events["event_type"].to_numpy(),
            "item_id": events["item_id"].to_numpy(),
            "value": value,
            "margin": value * events["item_id"].map(margin_rate).fillna(0.0).to_numpy(),
        }
    )


def attribute(outcomes: pd.DataFrame, exposures: pd.DataFrame, attribution_s: float) -> pd.Series:
    """Each outcome's trace id: the newest exposure of its unit that showed its item within attribution_s before it."""
    shown = exposures[["trace_id", "unit_id", "timestamp", "slate"]].explode("slate").dropna(subset=["slate"])
    shown = shown.assign(item_id=shown["slate"].map(lambda s: s["item_id"])).drop(columns="slate")
    left = outcomes.reset_index()[["index", "unit_id", "item_id", "timestamp"]].sort_values("timestamp")
    joined = pd.merge_asof(
        left,
        shown.sort_values("timestamp"),
        on="timestamp",
        by=["unit_id", "item_id"],
        direction="backward",
        tolerance=pd.Timedelta(seconds=attribution_s),
    )
    return joined.set_index("index")["trace_id"].reindex(outcomes.index)


def collect(config: ServeConfig, logs: Path, attribution_s: float) -> tuple[ExperimentSpec, int, int]:
    """The experiment of a serve config, from its endpoint's audit and event logs, into `<logs>/<name>/` as
    exposures.parquet, outcomes.parquet and experiment.yaml; returns the spec and how many of each were written."""
    if config.experiment is None:
        raise ConfigError("the serve config runs no experiment: give the one the endpoint ran (experiment=configs/experiment/NAME.yaml)")
    if config.event_log is None:
        raise ConfigError("the serve config has no event log (event_log: null): there are no outcomes to collect")
    pseudonyms = pseudonyms_from_environment(config.privacy)  # before any reading: without the key nothing joins
    spec = load_spec(config.experiment)
    registry = Registry(config.registry)
    table = registry.bundle(registry.resolve(config.version)).item_table()
    margin_rate = dict(zip(table.item_ids, np.nan_to_num(table.margin, nan=0.0), strict=True))
    exposures = exposures_from_audit(config.audit_folder(), spec.name)
    events = OfflineStore(config.event_log).read(OUTCOME_EVENTS)
    outcomes = outcomes_from_events(events, pseudonyms, margin_rate)
    outcomes = outcomes[outcomes["unit_id"].isin(set(exposures["unit_id"]))].reset_index(drop=True)
    outcomes["trace_id"] = attribute(outcomes, exposures, attribution_s)
    folder = logs / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("exposures*.parquet"), *folder.glob("outcomes*.parquet")]:
        old.unlink()
    write_frame(folder / "exposures.parquet", exposures, "exposures")
    write_frame(folder / "outcomes.parquet", outcomes, "outcomes")
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    return spec, len(exposures), len(outcomes)
