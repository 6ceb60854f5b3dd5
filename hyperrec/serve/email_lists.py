"""Email lists (`hyperrec email`): one recommendation list for every shopper who said yes to email.

The served model writes them, in this process, through the same request flow as `/recommend`: the online state
rebuilt from the version's seed and the event log, consent, the policy and its reasons; so an email holds what
the shop's home page would show that shopper now. Who gets one: every user the version's seed or the event log
knows whose email consent is granted (their latest `consent` event for `email`, else `privacy.consent.email`,
off unless the shop configures otherwise); a shopper who withdrew personalization gets the non-personal list
the endpoint would give them, as the endpoint says why. The cap: an item sent to a user `max_sends` times
already (the send log, Parquet, which every run appends to) is left out of their next list.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

from hyperrec.progress import progress
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.online_store import make_store
from hyperrec.serve.schemas import RecommendRequest

LIST_COLUMNS = ["user_id", "rank", "item_id", "score", "reason", "model_version", "served_by", "sent_at"]


class EmailRun(BaseModel):
    users: int  # known to the seed or the event log
    consented: int  # with email consent: one list each
    capped: int  # (user, item) pairs left out because they were sent max_sends times already
    rows: int
    out: Path
    sent_log: Path
    seconds: float


def sent_counts(sent_log: Path) -> dict[str, dict[str, int]]:
    """user id -> item id -> times sent, from the send log (empty when there is none yet)."""
    if not sent_log.is_file():
        return {}
    sent = pd.read_parquet(sent_log, columns=["user_id", "item_id"]).value_counts()
    out: dict[str, dict[str, int]] = {}
    for (user, item), times in sent.items():
        out.setdefault(str(user), {})[str(item)] = int(times)
    return out


def known_users(flow: RecommendFlow) -> list[str]:
    """The users of the version's seed and of the event log, sorted."""
    users = set(flow.registry.bundle(flow.current).shopper_ids()) if flow.current else set()
    if flow.event_log is not None:
        users |= flow.event_log.user_ids()
    return sorted(users)


async def write_email_lists(
    config: ServeConfig, out: Path, sent_log: Path, k: int = 10, max_sends: int = 2, log: Callable[[str], object] = print
) -> EmailRun:
    started = time.perf_counter()
    off = {"enabled": False}  # a batch: no decision records, no monitors (nothing to roll back)
    config = config.model_copy(update={"audit": config.audit.model_copy(update=off), "monitors": config.monitors.model_copy(update=off)})
    stages = LocalStages(Registry(config.registry), config, threaded=False)
    flow = RecommendFlow(config, make_store(config), stages)
    await flow.start()
    sent = sent_counts(sent_log)
    users = known_users(flow)
    rows: list[dict] = []
    consented = capped = 0
    now = pd.Timestamp.now(tz="UTC")
    for user in progress(users, desc="email lists", unit="users"):
        state = flow.store.states([("user", user)])[0]
        consent = config.privacy.consent.snapshot(*([state.consent] if state is not None else []))
        if not consent.email:
            continue
        consented += 1
        full = [item for item, times in sent.get(user, {}).items() if times >= max_sends]
        capped += len(full)
        answer = await flow.recommend(RecommendRequest(user_id=user, k=k, exclude=full[:1000], context={"page": "home"}))
        rows += [
            {
                "user_id": user,
                "rank": rank,
                "item_id": item.item_id,
                "score": item.score,
                "reason": item.reason,
                "model_version": answer.model_version,
                "served_by": answer.served_by,
                "sent_at": now,
            }
            for rank, item in enumerate(answer.items, 1)
        ]
    stages.close()
    lists = pd.DataFrame(rows, columns=LIST_COLUMNS)
    out.parent.mkdir(parents=True, exist_ok=True)
    lists.to_parquet(out, index=False)
    previous = pd.read_parquet(sent_log) if sent_log.is_file() else lists.iloc[:0]
    sent_log.parent.mkdir(parents=True, exist_ok=True)
    pd.concat([previous, lists], ignore_index=True).to_parquet(sent_log, index=False)
    seconds = time.perf_counter() - started
    run = EmailRun(users=len(users), consented=consented, capped=capped, rows=len(lists), out=out, sent_log=sent_log, seconds=seconds)
    log(
        f"email lists: {consented:,} of {len(users):,} users consented, {len(lists):,} rows -> {out} "
        f"({capped:,} items left out as sent {max_sends} times; send log {sent_log}; {run.seconds:.1f} s)"
    )
    return run


def email_lists(config: ServeConfig, out: Path, sent_log: Path, k: int, max_sends: int, log: Callable[[str], object] = print) -> EmailRun:
    return asyncio.run(write_email_lists(config, out, sent_log, k, max_sends, log))
