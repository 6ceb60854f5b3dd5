"""Erasure: delete what hyperrec holds about one shopper, and say what went from where.

The shopper is a user id; their sessions are those the online store linked to them and those the event
log names with them, and their anonymous events before they logged in go too. The sessions are found
before anything is deleted, and each place keeps its own links until its own deletion, so an erasure cut
short is finished by running it again.

Not rewritten: registry bundles (a server that seeds its store from a bundle exported before the erasure
loads the user's purchase history again at its next start: export again from the erased offline store) and
the audit log (append-only, checksum-chained, pseudonymous ids only).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hyperrec.data.offline_store import OfflineStore
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.online_store import OnlineStore
from hyperrec.serve.schemas import EraseResponse


def erase_user(user_id: str, store: OnlineStore | None, logs: Mapping[str, OfflineStore]) -> EraseResponse:
    """Delete the user and their sessions from the online store (if given) and their events from each named log."""
    sessions = store.linked_sessions(user_id) if store is not None else set()
    for log in logs.values():
        sessions |= log.sessions_of(user_id)
    removed: dict[str, int] = {}
    if store is not None:
        removed["online_store"] = store.erase([("user", user_id), *(("session", s) for s in sorted(sessions))])
    for place, log in logs.items():
        removed[place] = log.erase(user_id, sessions)
    return EraseResponse(user_id=user_id, sessions=sorted(sessions), removed=removed)


def erase_offline(user_id: str, config: ServeConfig, offline_store: Path | None) -> EraseResponse:
    """`hyperrec erase`: the server's event log, an offline store if given, and the online store if Redis.

    A memory store lives inside the server's process, out of reach here (`POST /admin/erase` reaches it).
    """
    logs = {"event_log": OfflineStore(config.event_log)} if config.event_log is not None else {}
    if offline_store is not None:
        logs["offline_store"] = OfflineStore(offline_store)
    store = shared_store(config)
    try:
        return erase_user(user_id, store, logs)
    finally:
        if store is not None:
            store.close()


def shared_store(config: ServeConfig) -> OnlineStore | None:
    """The online store another process can reach (Redis); a memory store lives inside the server: POST /admin/erase."""
    if config.store.kind != "redis":
        return None
    from hyperrec.serve.redis_store import RedisStore

    return RedisStore(config.store.redis_url, config.store.namespace, consent=config.privacy.consent)
