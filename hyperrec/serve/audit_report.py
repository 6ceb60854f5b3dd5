"""`hyperrec audit`: why did this shopper see this item — their decision records as tables, and the chain check."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hyperrec.data.events import CONSENT_PURPOSES
from hyperrec.serve.audit import DecisionRecord, ModelEventRecord, chain_files, chains, read_model_events, read_records, verify
from hyperrec.serve.privacy import PrivacyConfig, Pseudonyms


def pseudonyms_from_environment(config: PrivacyConfig) -> Pseudonyms:
    """The server's key, required: without it a shopper's records cannot be found (they hold keyed hashes only)."""
    if not os.environ.get(config.id_key_env, "").strip():
        raise ValueError(
            f"{config.id_key_env} is not set: the audit log holds keyed hashes of user and session ids, not the ids; "
            f"set {config.id_key_env} to the key the server ran with"
        )
    return Pseudonyms.from_environment(config)


def find(
    folder: Path, *, user: str | None = None, session: str | None = None, decision: str | None = None, item: str | None = None
) -> list[DecisionRecord]:
    """The records that match every criterion given (`user` and `session` are pseudonyms), in written order."""
    return [
        r
        for r in read_records(folder)
        if (user is None or r.user == user)
        and (session is None or r.session == session)
        and (decision is None or r.decision_id == decision)
        and (item is None or any(i.item_id == item for i in r.items))
    ]


def print_decision(record: DecisionRecord, console: Console, item: str | None = None) -> None:
    pool = record.candidates
    sources = f"{pool.count} ({', '.join(f'{name} {n}' for name, n in pool.sources.items())})" if pool else "none (no retrieval)"
    given = record.consent
    consent = ", ".join(
        f"{p} {'yes' if getattr(given, p) else 'no'}{' (default)' if p in given.defaulted else ''}" for p in CONSENT_PURPOSES
    )
    if not given.known:
        consent = "unknown (online store unreadable: every purpose withheld)"
    console.print(f"[bold]decision {record.decision_id}[/] at {record.time:%Y-%m-%d %H:%M:%S.%f} UTC")
    console.print(
        f"  placement {record.placement or '-'} | model {record.model_version} | served by {record.served_by} | "
        f"arm {record.arm or '-'} | {record.latency_ms:.1f} ms"
    )
    console.print(f"  candidates {sources} | consent {consent} | degraded: {'; '.join(record.degraded) or 'no'}")
    table = Table()
    for column in ("rank", "item", "score", "reason", "propensity"):
        table.add_column(column, justify="right" if column in ("rank", "score", "propensity") else "left")
    for rank, shown in enumerate(record.items, 1):
        propensity = f"{shown.propensity:.3f}" if shown.propensity is not None else "-"
        style = "bold" if shown.item_id == item else None
        table.add_row(str(rank), shown.item_id, f"{shown.score:.4f}", shown.reason, propensity, style=style)
    console.print(table)


def print_model_events(events: list[ModelEventRecord], console: Console) -> None:
    """What the endpoint served when, and who or what changed it (starts, swaps, rollbacks, canaries)."""
    table = Table(title="model events (the last ones, oldest first)", title_justify="left")
    for column in ("time (UTC)", "event", "from", "to", "why"):
        table.add_column(column)
    for e in events:
        table.add_row(f"{e.time:%Y-%m-%d %H:%M:%S}", e.kind, e.from_version or "-", e.to_version, "; ".join(e.reasons) or "-")
    console.print(table)


def run_audit(
    folder: Path,
    privacy: PrivacyConfig,
    console: Console,
    *,
    user: str | None = None,
    session: str | None = None,
    decision: str | None = None,
    item: str | None = None,
    check: bool = False,
    model_events: bool = False,
    limit: int = 20,
) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no audit log here (the server writes it to audit.path, by default beside its event log)")
    if check:
        broken = verify(folder)
        if broken is not None:
            raise ValueError(f"the audit chain is broken: {broken}")
        files = sum(len(chain_files(c)) for c in chains(folder))
        console.print(f"{folder}: {len(chains(folder))} chains, {files} files, every line intact")
    if model_events:
        print_model_events(list(read_model_events(folder))[-limit:], console)
    if user is None and session is None and decision is None:
        return
    ids = pseudonyms_from_environment(privacy) if user is not None or session is not None else None
    found = find(
        folder,
        user=ids.of(user) if ids is not None and user is not None else None,
        session=ids.of(session) if ids is not None and session is not None else None,
        decision=decision,
        item=item,
    )
    criteria = {"user": user, "session": session, "decision": decision, "item": item}
    asked = " ".join(f"{name} {value}" for name, value in criteria.items() if value)
    if not found:
        raise ValueError(f"no decision record for {asked} under {folder}")
    for record in found[-limit:]:
        print_decision(record, console, item)
    shown = f" (the last {limit} shown)" if len(found) > limit else ""
    console.print(f"{len(found)} decision{'s' if len(found) != 1 else ''} for {asked}{shown}")
