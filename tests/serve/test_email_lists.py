"""`hyperrec email`: lists for the shoppers who said yes to email (and nobody else), made by the served flow from
the event log, with an item sent `max_sends` times left out of the next run's lists."""

import asyncio

import pandas as pd

from hyperrec.data.events import events_to_frame, validate_events
from hyperrec.data.offline_store import OfflineStore
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.email_lists import write_email_lists
from tests.serve.test_flow import NOW


def consent(user: str, granted: bool, at: str = NOW) -> dict:
    return {"event_type": "consent", "user_id": user, "session_id": f"{user}-s", "purpose": "email", "granted": granted, "timestamp": at}


def test_only_consenting_shoppers_get_lists_and_the_send_cap_holds(exported, tmp_path):
    seeded = sorted(pd.read_parquet(exported.path / "user_baskets.parquet")["user_id"].astype(str).unique())
    yes, withdrew = seeded[0], seeded[1]
    item = str(pd.read_parquet(exported.path / "items.parquet")["item_id"].iloc[0])
    newcomer = [
        {"event_type": "purchase", "user_id": "newcomer", "session_id": "n-s", "order_id": "n-o", "item_id": item, "timestamp": NOW},
        consent("newcomer", True),
    ]
    events = [consent(yes, True), consent(withdrew, True, "2026-11-27T10:00:00+00:00"), consent(withdrew, False), *newcomer]
    report = validate_events(events)
    assert not report.rejected
    OfflineStore(tmp_path / "log").append(events_to_frame(report.accepted))
    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=tmp_path / "log")
    sent = tmp_path / "sent.parquet"

    first = asyncio.run(write_email_lists(config, tmp_path / "1.parquet", sent, k=5, max_sends=1, log=lambda *_: None))
    lists = pd.read_parquet(tmp_path / "1.parquet")
    assert set(lists["user_id"]) == {yes, "newcomer"} and first.consented == 2 and first.users == len(seeded) + 1
    assert (lists.groupby("user_id").size() == 5).all() and set(lists["served_by"]) == {"ranker"}
    assert list(lists[lists["user_id"] == yes]["rank"]) == [1, 2, 3, 4, 5]

    second = asyncio.run(write_email_lists(config, tmp_path / "2.parquet", sent, k=5, max_sends=1, log=lambda *_: None))
    again = pd.read_parquet(tmp_path / "2.parquet")
    for user in (yes, "newcomer"):  # every item of the first email went out once: none is sent again
        assert not set(again[again["user_id"] == user]["item_id"]) & set(lists[lists["user_id"] == user]["item_id"])
    assert second.capped == 10 and len(pd.read_parquet(sent)) == 20

    everyone = ServeConfig.model_validate(config.model_dump() | {"privacy": {"consent": {"email": True}}})
    third = asyncio.run(write_email_lists(everyone, tmp_path / "3.parquet", tmp_path / "other.parquet", k=2, log=lambda *_: None))
    assert third.consented == len(seeded)  # the default is yes now: everyone but the shopper who withdrew
    assert withdrew not in set(pd.read_parquet(tmp_path / "3.parquet")["user_id"])
