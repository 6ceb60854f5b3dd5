"""`hyperrec simulate CONFIG`: the closed-loop simulated shop as an A/B experiment.

The generator (hyperrec/data/synthetic.py) gives every shopper's organic sessions over the shop's
days: what they browse and buy on their own. The first `history_days` are the served model's
training data (`write_history`). From then on, day by day and in time order, every session's
events go to the shopper's arm through the serving side's ingestion, so the online state the next
request reads has changed; during the experiment each session asks its arm for a slate at each
page visit (`placements`: home at its start, the product page of its first view, the cart page after
its first add to cart), the shopper reacts to it (hyperrec/sim/shoppers.py) and those clicks, carts
and purchases go back with the organic ones, in time order. What an arm changes is what the slates
add to organic shopping: the lift. A slate purchase of an item the shopper buys organically in the
same session (or from an earlier slate of it) is bought once, so recommending what would have been
bought anyway earns clicks, not revenue.

Units are shoppers, assigned by hyperrec/experiment/assignment.py (sticky salted hash). The
exposures (one per slate) and outcomes (organic ones without a trace id; pre-period ones too, for
CUPED) are written as the experiment package's records with the experiment.yaml that
`hyperrec experiment analyze NAME` reads.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import yaml
from rich.console import Console

from hyperrec.data.events import frame_to_records
from hyperrec.data.offline_store import OfflineStore
from hyperrec.data.synthetic import START, SyntheticShop
from hyperrec.eval.report import print_table, save_figure, write_table
from hyperrec.experiment.analyze import arm_metrics, unit_table
from hyperrec.experiment.assignment import Arm, ExperimentSpec, assign_many, unit_key
from hyperrec.experiment.records import write_frame
from hyperrec.experiment.slot_ope import SlotLog, ope_table, resampled_errors
from hyperrec.experiment.stats import ratio_interval, ratio_se
from hyperrec.progress import progress
from hyperrec.serve.schemas import Exploration, RecommendedItem, RecommendRequest, RecommendResponse
from hyperrec.sim.clients import ArmClient, connect
from hyperrec.sim.config import SimConfig
from hyperrec.sim.shoppers import Shoppers, SlateActions, examination

DAY_S = 86_400.0
OUTCOME_KINDS = ("click", "add_to_cart", "purchase")
START_TS = pd.Timestamp(START, tz="UTC")
OPE_REPLICATES = 200


def shop_events(shop: SyntheticShop) -> pd.DataFrame:
    events = pd.concat(list(shop.iter_event_chunks()), ignore_index=True)
    return events.sort_values("timestamp", kind="stable", ignore_index=True)


def write_history(config: SimConfig, store_dir: Path) -> int:
    """The generator's events of the first `history_days` (and its catalog) into an offline store: the training data."""
    shop = SyntheticShop(config.shop)
    events = shop_events(shop)
    history = events[events["timestamp"] < START_TS + pd.Timedelta(days=config.history_days)]
    store = OfflineStore(store_dir)
    if store.has_events():
        raise ValueError(f"{store_dir} already holds events: delete it or write the history elsewhere")
    store.write_catalog(shop.catalog)
    return store.append(history)


def experiment_spec(config: SimConfig) -> ExperimentSpec:
    """The experiment.yaml of the run: each arm's version, and its serve and simulator settings as overrides."""
    arms = []
    for arm in config.arms:
        sim = {"sim.display": arm.display, "sim.popularity": arm.popularity} | ({"sim.url": arm.url} if arm.url else {})
        arms.append(Arm(name=arm.name, model_version=arm.version, overrides=arm.serve | sim, share=arm.share))
    return ExperimentSpec(name=config.name, salt=config.salt or config.name, arms=arms, sequential=config.sequential)


@dataclass
class SimResult:
    arms: pd.DataFrame  # per-arm metrics over the experiment's days
    intervals: pd.DataFrame  # per arm: conversion, revenue and margin per session with 95% intervals (the frontier)
    days: pd.DataFrame  # per arm and day: revenue per session, true slate and slot value, coverage so far
    placements: pd.DataFrame  # per arm and placement: slates, clicks and purchases per slate, true value
    ranks: pd.DataFrame  # position bias: configured examination vs what the clicks show, by rank
    values: pd.DataFrame  # per arm: the simulator's true slate value vs the revenue the logs attribute to slates
    slots: pd.DataFrame | None  # off-policy estimates from each exploration slot's log vs the simulator's truth
    slot_errors: pd.DataFrame | None  # each estimator's bias and RMSE over logs redrawn on the same contexts
    paired: pd.DataFrame | None  # paired runs: every arm's slates for the same visits, in truth, minus the first arm's
    logs: Path
    files: list[Path]
    sessions: int
    seconds: float


class _Log:
    """Exposures, outcomes and the per-rank and per-arm counters, as the run goes."""

    def __init__(self, k: int, arms: list[str]):
        self.exposures: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.rank = {arm: {"exposures": np.zeros(k), "clicks": np.zeros(k), "attraction": np.zeros(k)} for arm in arms}
        self.shown: dict[str, set[str]] = {arm: set() for arm in arms}
        self.slots: list[dict[str, Any]] = []  # the exploration slot's decisions, with the simulator's truth of every pool item
        self.paired: list[dict[str, Any]] = []  # paired runs: every arm's slate of every visit, scored by the simulator's truth

    def count(self, arm: str, items: np.ndarray, actions: SlateActions) -> None:
        n = len(items)
        rank = self.rank[arm]
        rank["exposures"][:n] += 1
        rank["clicks"][:n] += actions.clicked
        rank["attraction"][:n] += actions.attraction
        self.shown[arm].update(items.tolist())

    def outcome(self, user: str, session: str, at: pd.Timestamp, event: str, item: str, value=0.0, margin=0.0, trace=None) -> None:
        self.outcomes.append(
            {"unit_id": user, "session_id": session, "timestamp": at, "event": event, "item_id": item}
            | {"value": value, "margin": margin, "trace_id": trace}
        )


async def _simulate(config: SimConfig, show_progress: bool) -> SimResult:
    started = time.time()
    rng = np.random.default_rng([config.seed, 11])
    shop = SyntheticShop(config.shop)
    shoppers = Shoppers(shop, examination(config.examination, config.k), config.attention)
    events = shop_events(shop)
    seconds = (events["timestamp"] - START_TS).dt.total_seconds().to_numpy()
    events["timestamp"] = events["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # the contract's wire form
    history = seconds < config.history_days * DAY_S
    bought = events[history & (events["event_type"] == "purchase")]
    for user, items in bought.groupby("user_id")["item_id"]:
        shoppers.remember(int(user[1:]), items.map(shoppers.item_index).to_numpy())
    events, seconds = events[~history].reset_index(drop=True), seconds[~history]

    spec = experiment_spec(config)
    user_ids = [f"u{u}" for u in range(config.shop.n_users)]
    arm_of = dict(zip(user_ids, assign_many(spec, [unit_key(u, None) for u in user_ids]), strict=True))
    clients: dict[str, ArmClient] = {arm.name: await connect(arm, config.mode) for arm in config.arms}
    log = _Log(config.k, spec.arm_names)

    sessions = pd.DataFrame({"session_id": events["session_id"], "start": seconds}).groupby("session_id", sort=False)["start"].min()
    sessions = sessions.sort_values(kind="stable")
    day_of = np.floor(sessions.to_numpy() / DAY_S).astype(np.int64)
    keep = np.ones(len(sessions), bool)
    if config.sessions_per_day is not None:
        for day in np.unique(day_of):
            rows = np.flatnonzero(day_of == day)
            keep[rng.permutation(rows)[config.sessions_per_day :]] = False
    sessions, day_of = sessions[keep], day_of[keep]
    by_session = {sid: frame for sid, frame in events[events["session_id"].isin(sessions.index)].groupby("session_id", sort=False)}

    try:
        with progress(total=len(sessions), unit="session", desc=f"simulate {config.name}", disable=not show_progress) as bar:
            for day in range(config.history_days, config.shop.days):
                today = sessions.index[day_of == day]
                live = day >= config.start_day
                if live and len(today):
                    shoppers.start_day(np.array([int(sid.split("-")[0][1:]) for sid in today]), day + 0.5)
                for sid in today:
                    await _session(config, shoppers, clients, log, arm_of, by_session[sid], live, rng)
                    bar.update(1)
                bar.set_postfix(day=f"{day - config.start_day + 1}/{config.days}" if live else f"pre {day - config.history_days + 1}")
    finally:
        for client in clients.values():
            await client.close()
    return _finish(config, spec, log, shop, len(sessions), time.time() - started)


@dataclass(frozen=True)
class Visit:
    """A page the shopper is on when they ask for a slate: `home` at the session's start, a product page at their
    first organic view (its item), the cart page right after their first organic add to cart."""

    at: str  # the contract's wire form of the time (sorts like the time)
    page: str
    item_id: str | None = None

    def sees(self, record: dict[str, Any]) -> bool:
        """Whether the serving side has the event when the slate is asked for: home comes before the session's first
        event; a product or cart page right after the view or add to cart that opened it."""
        return record["timestamp"] < self.at or (self.page != "home" and record["timestamp"] == self.at)


@dataclass
class _Basket:
    """What one session has bought so far: a slate purchase of an item already bought in it is bought once."""

    bought: set[str]
    order_id: str
    lines: int


def visits(pages: list[str], records: list[dict[str, Any]]) -> list[Visit]:
    found = [Visit(records[0]["timestamp"], "home")] if "home" in pages else []
    triggers = {"product": "view", "cart": "add_to_cart"}
    for page in ("product", "cart"):
        first = next((r for r in records if r["event_type"] == triggers[page]), None) if page in pages else None
        if first is not None:
            found.append(Visit(first["timestamp"], page, first["item_id"] if page == "product" else None))
    return sorted(found, key=lambda v: v.at)


async def _session(
    config: SimConfig,
    shoppers: Shoppers,
    clients: dict[str, ArmClient],
    log: _Log,
    arm_of: dict[str, str],
    organic: pd.DataFrame,
    live: bool,
    rng: np.random.Generator,
) -> None:
    """One session: its organic events, and during the experiment a slate at each page visit and the shopper's
    reaction to it. Events reach the serving side in time order up to each visit, so a cart page sees the cart."""
    user, sid = str(organic["user_id"].iloc[0]), str(organic["session_id"].iloc[0])
    arm, u = arm_of[user], int(user[1:])
    records = sorted(frame_to_records(organic), key=lambda r: r["timestamp"])
    for r in records:
        if r["event_type"] in OUTCOME_KINDS:
            value = float(r.get("price", 0.0)) * int(r.get("quantity", 1)) if r["event_type"] == "purchase" else 0.0
            margin = value * shoppers.margin_rate[shoppers.item_index[r["item_id"]]]
            log.outcome(user, sid, pd.Timestamp(r["timestamp"]), r["event_type"], r["item_id"], value, margin)
    serving = list(clients.values()) if config.paired else [clients[arm]]  # paired: every arm follows every shopper
    pending, sent = list(records), []
    if live:
        purchases = [r for r in records if r["event_type"] == "purchase"]
        basket = _Basket({r["item_id"] for r in purchases}, purchases[0]["order_id"] if purchases else f"{sid}-rec", len(purchases))
        for visit in visits(config.placements, records):
            due = [r for r in pending if visit.sees(r)]
            pending = [r for r in pending if not visit.sees(r)]
            sent += await _ingest(serving, due, sid)
            request = _request(config, records[0], visit)
            pending += await _slate(config, shoppers, clients[arm], log, arm, u, records[0], visit, basket, request, rng)
            if config.paired:
                await _unseen_slates(config, shoppers, clients, log, arm, u, sid, visit, request, rng)
    sent += await _ingest(serving, pending, sid)
    purchased = [shoppers.item_index[r["item_id"]] for r in sent if r["event_type"] == "purchase"]
    if purchased:
        shoppers.remember(u, np.array(purchased, np.int64))


async def _ingest(clients: list[ArmClient], records: list[dict[str, Any]], sid: str) -> list[dict[str, Any]]:
    if not records:
        return []
    records = sorted(records, key=lambda r: r["timestamp"])
    for client in clients:
        result = await client.ingest(records)
        if result.rejected:
            raise ValueError(f"the serving side rejected simulated events of session {sid}: {result.rejected[:3]}")
    return records


def _request(config: SimConfig, first: dict[str, Any], visit: Visit) -> RecommendRequest:
    """What the page asks for: the shopper, their device and channel, the page (and its item)."""
    context = first.get("context", {})
    ask = {key: value for key, value in context.items() if key in ("device", "channel")} | {"page": visit.page}
    return RecommendRequest(user_id=first["user_id"], context=ask, k=config.k, item_id=visit.item_id)


async def _answer(
    config: SimConfig, client: ArmClient, arm: str, request: RecommendRequest, rng: np.random.Generator
) -> tuple[RecommendResponse, list[RecommendedItem]]:
    """The arm's answer and its slate as the shop displays it (`display`: served, shuffled or reversed)."""
    answer = await client.recommend(request)
    display = next(a.display for a in config.arms if a.name == arm)
    order = np.arange(len(answer.items))
    if display == "shuffled":
        order = rng.permutation(order)
    elif display == "reversed":
        order = order[::-1]
    return answer, [answer.items[i] for i in order]


async def _slate(
    config: SimConfig,
    shoppers: Shoppers,
    client: ArmClient,
    log: _Log,
    arm: str,
    u: int,
    first: dict[str, Any],
    visit: Visit,
    basket: _Basket,
    request: RecommendRequest,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """Ask the arm for the visit's slate; the shopper's reaction as contract events (and outcomes)."""
    user, sid, context = first["user_id"], first["session_id"], first.get("context", {})
    answer, slate = await _answer(config, client, arm, request, rng)
    items = np.array([shoppers.item_index[s.item_id] for s in slate], np.int64)
    actions = shoppers.react(u, items, rng)
    trace, slot = answer.trace_id, answer.exploration
    at = pd.Timestamp(visit.at)
    true_clicks, true_revenue, true_margin = shoppers.expected_value(items, actions.attraction)
    log.exposures.append(
        {"trace_id": trace, "timestamp": at, "unit_id": user, "session_id": sid, "experiment": config.name, "arm": arm}
        | {"placement": answer.placement, "model_version": answer.model_version}
        | {"explore_item": slot.item_id if slot else None, "explore_propensity": slot.propensity if slot else None}
        | {"slate": [{"item_id": s.item_id, "position": p, "score": s.score} for p, s in enumerate(slate)]}
        | {"true_clicks": true_clicks, "true_revenue": true_revenue, "true_margin": true_margin}  # the simulator's own: not logged
        | {"true_last_clicks": float(shoppers.examine[len(items) - 1] * actions.attraction[-1]) if len(items) else 0.0}
    )
    log.count(arm, items, actions)
    if config.paired:
        log.paired.append(_paired_row(user, sid, visit, arm, arm, true_clicks, true_revenue, true_margin))
    if slot is not None:
        row = _slot_row(shoppers, slot, [s.item_id for s in slate], items, actions, u)
        log.slots.append(row | {"trace_id": trace, "arm": arm, "timestamp": at})

    events: list[dict] = []

    def event(kind: str, rank: int, offset_s: float, **fields) -> None:
        when = at + pd.Timedelta(seconds=offset_s)
        events.append(
            {"event_type": kind, "user_id": user, "session_id": sid, "item_id": slate[rank].item_id}
            | {"timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "context": context | {"page": visit.page}}
            | fields
        )
        if kind in OUTCOME_KINDS:
            value = fields.get("price", 0.0) * fields.get("quantity", 1) if kind == "purchase" else 0.0
            log.outcome(user, sid, when, kind, slate[rank].item_id, value, value * shoppers.margin_rate[items[rank]], trace)

    for rank in np.flatnonzero(actions.clicked):
        event("click", rank, 1.0 + rank)
    for rank in np.flatnonzero(actions.carted):
        event("add_to_cart", rank, 20.0 + rank, quantity=int(actions.quantity[rank]))
    for rank in np.flatnonzero(actions.removed):
        event("remove_from_cart", rank, 40.0 + rank, quantity=int(actions.quantity[rank]))
    for rank in np.flatnonzero(actions.bought):
        if slate[rank].item_id in basket.bought:  # bought anyway (or from an earlier slate), once: the first line stands
            continue
        basket.bought.add(slate[rank].item_id)
        basket.lines += 1
        price, quantity = float(shoppers.price[items[rank]]), int(actions.quantity[rank])
        event("purchase", rank, 60.0 + rank, order_id=basket.order_id, quantity=quantity, price=price, position=basket.lines)
    return events


async def _unseen_slates(
    config: SimConfig,
    shoppers: Shoppers,
    clients: dict[str, ArmClient],
    log: _Log,
    shown: str,
    u: int,
    sid: str,
    visit: Visit,
    request: RecommendRequest,
    rng: np.random.Generator,
) -> None:
    """Paired: every other arm answers the same visit from the same events; the simulator scores its slate with the
    shopper's true attraction at this moment, and nobody sees it (each arm's frequency caps count its own slates)."""
    for arm, client in clients.items():
        if arm == shown:
            continue
        _, slate = await _answer(config, client, arm, request, rng)
        items = np.array([shoppers.item_index[s.item_id] for s in slate], np.int64)
        clicks, revenue, margin = shoppers.expected_value(items, shoppers.attraction(u, items))
        log.paired.append(_paired_row(str(request.user_id), sid, visit, shown, arm, clicks, revenue, margin))


def _paired_row(user: str, sid: str, visit: Visit, shown: str, arm: str, clicks: float, revenue: float, margin: float) -> dict[str, Any]:
    return {"unit_id": user, "session_id": sid, "page": visit.page, "at": visit.at, "shown_arm": shown, "arm": arm} | {
        "true_clicks": clicks,
        "true_revenue": revenue,
        "true_margin": margin,
    }


def _slot_row(shoppers: Shoppers, slot: Exploration, shown: list[str], items: np.ndarray, actions: SlateActions, u: int) -> dict[str, Any]:
    """The slot's logged decision (pool, features, probabilities, what the shopper did with it) and the simulator's
    truth: every pool item's expected clicks and revenue had it taken the slot's place in this slate."""
    place = shown.index(slot.item_id)
    pool = np.array([shoppers.item_index[c.item_id] for c in slot.pool], np.int64)
    clicks, revenue, _ = shoppers.item_values(pool, shoppers.attraction(u, pool), np.full(len(pool), shoppers.examine[place]))
    bought = bool(actions.bought[place])
    return {
        "kind": slot.kind,
        "position": place,
        "pool": [c.item_id for c in slot.pool],
        "probabilities": [c.probability for c in slot.pool],
        "features": [f for c in slot.pool for f in c.features],
        "n_features": len(slot.feature_names),
        "chosen": [c.item_id for c in slot.pool].index(slot.item_id),
        "clicked": float(actions.clicked[place]),
        "revenue": float(shoppers.price[items[place]] * actions.quantity[place]) if bought else 0.0,
        "true_clicks": clicks.tolist(),
        "true_revenue": revenue.tolist(),
    }


def _finish(config: SimConfig, spec: ExperimentSpec, log: _Log, shop: SyntheticShop, n_sessions: int, seconds: float) -> SimResult:
    """Write the logs and experiment.yaml; per-arm, per-rank and true-value tables."""
    folder = config.logs / config.name
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("exposures*.parquet"), *folder.glob("outcomes*.parquet")]:
        old.unlink()  # a re-run replaces the experiment's log
    exposures, outcomes = pd.DataFrame(log.exposures), pd.DataFrame(log.outcomes)
    write_frame(folder / "exposures.parquet", exposures, "exposures")
    write_frame(folder / "outcomes.parquet", outcomes, "outcomes")
    slots = pd.DataFrame(log.slots)
    if len(slots):
        slots.to_parquet(folder / "slots.parquet", index=False)
    paired = pd.DataFrame(log.paired)
    if len(paired):
        paired.to_parquet(folder / "paired.parquet", index=False)
    (folder / "experiment.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))

    exposures["timestamp"] = pd.to_datetime(exposures["timestamp"], utc=True)
    outcomes["timestamp"] = pd.to_datetime(outcomes["timestamp"], utc=True)
    until = exposures["timestamp"].max() + pd.Timedelta(seconds=1)
    units = unit_table(exposures, outcomes, "revenue", config.pre_days, until)
    metrics = arm_metrics(units, spec.arm_names)
    arms = pd.DataFrame(index=metrics.index)
    arms["users"], arms["sessions"] = metrics["units"], metrics["sessions"]
    arms["item_impressions"] = [int(log.rank[a]["exposures"].sum()) for a in arms.index]
    clicks = [log.rank[a]["clicks"].sum() for a in arms.index]
    arms["ctr"] = np.array(clicks) / arms["item_impressions"].to_numpy(float)
    arms["add_to_cart_rate"], arms["conversion"] = metrics["add_to_cart_rate"], metrics["conversion"]
    arms["revenue_per_session"] = metrics["revenue_per_session"]
    per_arm = units.groupby("arm")[["margin", "sessions"]].sum()
    arms["margin_per_session"] = per_arm["margin"] / per_arm["sessions"]
    arms["average_order_value"] = metrics["average_order_value"]
    arms["coverage"] = [len(log.shown[a]) / shop.config.n_items for a in arms.index]

    ranks = pd.DataFrame({"rank": np.arange(1, config.k + 1), "examination": examination(config.examination, config.k)}).set_index("rank")
    for arm in spec.arm_names:
        counts = log.rank[arm]
        ctr = counts["clicks"] / np.maximum(counts["exposures"], 1)
        ranks[f"{arm}: ctr"] = ctr
        ranks[f"{arm}: ctr / ctr@1"] = ctr / ctr[0] if ctr[0] else np.nan
        ranks[f"{arm}: clicks / attraction"] = counts["clicks"] / np.maximum(counts["attraction"], 1e-12)  # estimates examination

    values = true_values(exposures, outcomes, spec.arm_names)
    pages = placement_table(exposures, outcomes, spec.arm_names)
    intervals = arm_intervals(units, outcomes, spec.arm_names)
    days = daily(exposures, outcomes, slots, config, shop.config.n_items)
    ope, ope_errors = slot_estimates(slots) if len(slots) else (None, None)

    out = config.results / config.name
    tables = {"arms": arms, "intervals": intervals, "days": days, "placements": pages, "ranks": ranks, "values": values}
    if ope is not None and ope_errors is not None:
        tables |= {"slots": ope, "slot_errors": ope_errors}
    paired_values = paired_table(paired, spec.arm_names) if len(paired) else None
    if paired_values is not None:
        tables["paired"] = paired_values
    files = [f for stem, table in tables.items() for f in write_table(table, out, stem)]
    files += [plot_frontier(intervals, out / "frontier.png", config.name), plot_days(days, out / "days.png", config.name)]
    return SimResult(arms, intervals, days, pages, ranks, values, ope, ope_errors, paired_values, folder, files, n_sessions, seconds)


INTERVAL_METRICS = {  # name -> the per-shopper sum it divides by their sessions
    "conversion": "orders",
    "revenue_per_session": "revenue",
    "margin_per_session": "margin",
    "slate_clicks_per_session": "slate_clicks",
    "slate_revenue_per_session": "slate_revenue",
    "slate_margin_per_session": "slate_margin",
}


def arm_intervals(units: pd.DataFrame, outcomes: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per arm, with 95% delta-method intervals (shoppers randomized, sessions analysed): conversion, revenue and margin
    per session (every purchase), and the clicks, revenue and margin of what shoppers bought from the slates. The
    slates' share has far less variance (organic shopping, the same in every arm, is left out) but cannot see a
    slate purchase that takes the place of an organic one."""
    slate = outcomes[outcomes["trace_id"].notna()]
    bought = slate[slate["event"] == "purchase"].groupby("unit_id")
    units = units.assign(
        slate_clicks=slate[slate["event"] == "click"].groupby("unit_id").size(),
        slate_revenue=bought["value"].sum(),
        slate_margin=bought["margin"].sum(),
    ).fillna({"slate_clicks": 0.0, "slate_revenue": 0.0, "slate_margin": 0.0})
    rows = {}
    for arm in arms:
        u = units[units["arm"] == arm]
        row: dict[str, float] = {"users": len(u)}
        for name, num in INTERVAL_METRICS.items():
            row[name], row[f"{name}_lo"], row[f"{name}_hi"] = ratio_interval(u[num].to_numpy(float), u["sessions"].to_numpy(float))
        rows[arm] = row
    return pd.DataFrame(rows).T.rename_axis("arm")


def daily(exposures: pd.DataFrame, outcomes: pd.DataFrame, slots: pd.DataFrame, config: SimConfig, n_items: int) -> pd.DataFrame:
    """Per arm and experiment day: sessions, revenue per session (organic and slate purchases), the simulator's true
    value of the slates, of their last place (expected clicks: the exploration slot's place by default, what a slot
    costs in an arm without one) and of the exploration slot's item, and the catalogue coverage so far."""
    frame = exposures[["trace_id", "session_id", "arm", "timestamp", "true_revenue", "true_last_clicks", "slate"]].copy()
    started = frame.groupby("session_id")["timestamp"].transform("min")  # a session's later visits may fall after midnight
    frame["day"] = ((started - START_TS) / pd.Timedelta(days=1)).astype(int) - config.start_day + 1
    bought = outcomes[outcomes["event"] == "purchase"].groupby("session_id")["value"].sum()
    frame["revenue"] = frame["session_id"].map(bought).fillna(0.0)
    if len(slots):
        slot_truth = {t: c[i] for t, c, i in zip(slots["trace_id"], slots["true_clicks"], slots["chosen"], strict=True)}
        frame["slot_true_clicks"] = frame["trace_id"].map(slot_truth)
    else:
        frame["slot_true_clicks"] = np.nan
    rows = []
    for arm in config.arms:
        part = frame[frame["arm"] == arm.name]
        shown: set[str] = set()
        for day, today in part.groupby("day"):
            shown.update(item["item_id"] for slate in today["slate"] for item in slate)
            visits = today.drop_duplicates("session_id")  # a session with several page visits counts once
            rows.append(
                {"arm": arm.name, "day": int(day), "sessions": len(visits), "revenue_per_session": visits["revenue"].mean()}
                | {"true_slate_revenue": today["true_revenue"].mean(), "last_place_true_clicks": today["true_last_clicks"].mean()}
                | {"slot_true_clicks": today["slot_true_clicks"].mean()}
                | {"coverage": len(shown) / n_items}
            )
    return pd.DataFrame(rows).set_index("arm")


def slot_estimates(slots: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Off-policy estimates of each target slot policy from each arm's slot log, next to the simulator's truth
    (clicks on the slot's item per decision); `online` is the clicks measured by the arms that ran the target
    (the log's own arm; for `uniform`, the random slots'). And each estimator's bias and RMSE over OPE_REPLICATES
    logs redrawn on the logged contexts (slot_ope.resampled_errors): one run's error is mostly its own luck."""
    random = slots.loc[slots["kind"] == "random", "clicked"]
    tables, errors = [], []
    for arm, part in slots.groupby("arm", sort=False):
        log = SlotLog.from_frame(part)
        truth = np.zeros_like(log.probabilities)
        for row, clicks in enumerate(part["true_clicks"]):
            truth[row, : len(clicks)] = clicks
        table = ope_table(log, truth)
        table.insert(0, "log", arm)
        table.loc["logging", "online"] = float(log.reward.mean())
        if len(random):
            table.loc["uniform", "online"] = float(random.mean())
        tables.append(table)
        resampled = resampled_errors(log, truth, OPE_REPLICATES)
        resampled.insert(0, "log", arm)
        errors.append(resampled)
    return pd.concat(tables), pd.concat(errors)


def plot_frontier(intervals: pd.DataFrame, path: Path, name: str) -> Path:
    """Margin per session against revenue per session and against conversion (every purchase), and the slates' own
    margin against their clicks and revenue: one point per arm with its 95% intervals."""
    pairs = [
        ("revenue_per_session", "margin_per_session"),
        ("conversion", "margin_per_session"),
        ("slate_clicks_per_session", "slate_margin_per_session"),
        ("slate_revenue_per_session", "slate_margin_per_session"),
    ]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 4))
    for ax, (x_name, y_name) in zip(axes, pairs, strict=True):
        x, y = intervals[x_name], intervals[y_name]
        xerr = [x - intervals[f"{x_name}_lo"], intervals[f"{x_name}_hi"] - x]
        ax.errorbar(x, y, xerr=xerr, yerr=[y - intervals[f"{y_name}_lo"], intervals[f"{y_name}_hi"] - y], fmt="o", capsize=3)
        for arm in intervals.index:
            ax.annotate(str(arm), (x[arm], y[arm]), textcoords="offset points", xytext=(5, 5), fontsize=8)
        ax.set_xlabel(x_name.replace("_", " "))
        ax.set_ylabel(y_name.replace("_", " "))
        ax.grid(alpha=0.3)
    fig.suptitle(f"{name}: per arm, 95% intervals")
    save_figure(fig, path, dpi=110)
    return path


def plot_days(days: pd.DataFrame, path: Path, name: str) -> Path:
    panels = [
        ("revenue_per_session", "revenue per session"),
        ("slot_true_clicks", "true clicks on the slot's item"),
        ("coverage", "coverage so far"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(13, 3.8))
    for ax, (column, label) in zip(axes, panels, strict=True):
        for arm, part in days.groupby(level=0, sort=False):
            if part[column].notna().any():
                ax.plot(part["day"], part[column], marker="o", label=str(arm))
        ax.set_xlabel("day of the experiment")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"{name}: per arm and day")
    save_figure(fig, path, dpi=110)
    return path


def placement_table(exposures: pd.DataFrame, outcomes: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per arm and placement that answered: slates, clicks per slate, what shoppers bought from them (revenue and margin
    per slate, attributed by trace id) and the simulator's true revenue per slate."""
    slate = outcomes[outcomes["trace_id"].notna()]
    clicks = slate[slate["event"] == "click"].groupby("trace_id").size()
    bought = slate[slate["event"] == "purchase"].groupby("trace_id")[["value", "margin"]].sum()
    frame = exposures.set_index("trace_id")[["arm", "placement", "unit_id", "true_revenue"]]
    frame = frame.assign(clicks=clicks, value=bought["value"], margin=bought["margin"]).fillna({"clicks": 0, "value": 0.0, "margin": 0.0})
    groups = frame.groupby(["arm", "placement"])
    table = groups.agg(
        slates=("clicks", "size"),
        clicks_per_slate=("clicks", "mean"),
        revenue_per_slate=("value", "mean"),
        margin_per_slate=("margin", "mean"),
        true_revenue_per_slate=("true_revenue", "mean"),
    )
    table["true_revenue_se"] = pd.Series({key: slate_mean_se(part, "true_revenue") for key, part in groups})
    order = {arm: n for n, arm in enumerate(arms)}
    return table.reset_index().sort_values(["arm", "placement"], key=lambda c: c.map(order) if c.name == "arm" else c).set_index("arm")


def slate_mean_se(slates: pd.DataFrame, column: str) -> float:
    """The standard error of `column`'s mean per slate with the shopper (`unit_id`) as the unit: one shopper's slates
    share their tastes and each arm holds other shoppers, so slates are not independent draws (an error over slates
    put a between-shopper difference at 5.4 of them: README, the behaviour run's replication)."""
    per_shopper = slates.groupby("unit_id")[column].agg(["sum", "size"])
    if len(per_shopper) < 2:
        return float("nan")
    return ratio_se(per_shopper["sum"].to_numpy(np.float64), per_shopper["size"].to_numpy(np.float64))


PAIRED_METRICS = ("revenue", "clicks", "margin")


def paired_table(paired: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per arm and page (and all pages): the simulator's true value of the arm's slates for every visit of the run,
    and their difference from the first arm's slates for the same visits, with 95% intervals over shoppers. Both
    slates answer the same shopper at the same moment from the same events, so the between-shopper difference that
    decides an unpaired comparison at this size is not in it; what is left is how differently the two answer."""
    reference, keys = arms[0], ["session_id", "page"]
    truth = [f"true_{metric}" for metric in PAIRED_METRICS]
    base = paired[paired["arm"] == reference].set_index(keys)[truth]
    rows = []
    for page in ["all", *sorted(paired["page"].unique())]:
        visits = paired if page == "all" else paired[paired["page"] == page]
        for arm in arms:
            mine = visits[visits["arm"] == arm].set_index(keys)
            diff = (mine[truth] - base.loc[mine.index]).assign(unit_id=mine["unit_id"])
            row: dict[str, Any] = {"arm": arm, "page": page, "slates": len(mine), "shown_share": float((mine["shown_arm"] == arm).mean())}
            row |= {f"{column}_per_slate": float(mine[column].mean()) for column in truth}
            for metric, column in zip(PAIRED_METRICS, truth, strict=True):
                mean, se = float(diff[column].mean()), slate_mean_se(diff, column)
                row |= {f"{metric}_diff": mean, f"{metric}_diff_lo": mean - 1.96 * se, f"{metric}_diff_hi": mean + 1.96 * se}
            rows.append(row)
    return pd.DataFrame(rows).set_index("arm")


def true_values(exposures: pd.DataFrame, outcomes: pd.DataFrame, arms: list[str]) -> pd.DataFrame:
    """Per arm: the simulator's expected clicks, revenue and margin of the slates shown (its true value) next to
    the purchases the log attributes to those slates (mean per slate, with its standard error over shoppers), and the
    true value per shopper (the expected lift over organic shopping that analyze's revenue_per_unit sees)."""
    bought = outcomes[outcomes["trace_id"].notna() & (outcomes["event"] == "purchase")].groupby("trace_id")[["value", "margin"]].sum()
    slates = exposures.set_index("trace_id")[["arm", "unit_id", "true_clicks", "true_revenue", "true_margin"]].join(bought)
    slates = slates.fillna({"value": 0.0, "margin": 0.0})
    rows = {}
    for arm in arms:
        part = slates[slates["arm"] == arm]
        n = len(part)
        rows[arm] = {
            "slates": n,
            "true_clicks_per_slate": part["true_clicks"].mean(),
            "true_revenue_per_slate": part["true_revenue"].mean(),
            "measured_revenue_per_slate": part["value"].mean(),
            "measured_se": slate_mean_se(part, "value"),
            "true_margin_per_slate": part["true_margin"].mean(),
            "measured_margin_per_slate": part["margin"].mean(),
            "true_revenue_per_user": part.groupby("unit_id")["true_revenue"].sum().mean(),
        }
    return pd.DataFrame(rows).T.rename_axis("arm")


def simulate(config: SimConfig, show_progress: bool = True) -> SimResult:
    return asyncio.run(_simulate(config, show_progress))


def print_simulation(result: SimResult, config: SimConfig, console: Console) -> None:
    print_table(result.arms, f"{config.name}: per arm over the {config.days} experiment days (ctr per item impression)", console)
    print_table(result.intervals, "per arm with 95% intervals (delta method, shoppers randomized)", console)
    print_table(result.placements, "per arm and placement: slates, and what shoppers clicked and bought from them", console)
    print_table(result.values, "the simulator's true slate value vs what the log attributes to slates", console)
    if result.slots is not None:
        print_table(result.slots, "exploration slot: off-policy estimates of clicks per decision vs the simulator's truth", console)
    if result.slot_errors is not None:
        print_table(result.slot_errors, f"off-policy estimators over {OPE_REPLICATES} logs redrawn on the same contexts", console)
    if result.paired is not None:
        title = f"paired: every arm's slates for the same visits, true value per slate, minus {config.arms[0].name}'s [95%]"
        print_table(result.paired, title, console)
    print_table(result.ranks, "position bias: configured examination vs clicks by rank", console)
    console.print(f"{result.sessions:,} sessions in {result.seconds:.0f} s; logs -> {result.logs}; tables -> {result.files[0].parent}")
    console.print(f"next: hyperrec experiment analyze {config.name} --logs {config.logs} --pre-days {config.pre_days:g}")
