"""Group commit: concurrent batches all reach the log, each caller returns only after its events are written,
and under concurrency they share writes; a failed write reaches every caller of it."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from hyperrec.data.events import events_to_table, validate_events
from hyperrec.data.offline_store import OfflineStore
from hyperrec.serve.event_log import GroupCommitLog


def views(n: int, tag: str):
    records = [{"event_type": "view", "session_id": f"{tag}-{i}", "item_id": "i", "timestamp": "2026-03-01T12:00:00Z"} for i in range(n)]
    return events_to_table(validate_events(records).accepted)


def test_concurrent_batches_are_all_written_and_share_writes(tmp_path):
    store = OfflineStore(tmp_path / "log")
    log = GroupCommitLog(store)
    writes = []
    append = store.append
    store.append = lambda frame, durable=False: writes.append(len(frame)) or append(frame, durable=durable)

    def one(i: int) -> int:
        log.append(views(3, f"b{i}"))
        return len(set(store.read()["session_id"]) & {f"b{i}-{j}" for j in range(3)})  # its own events, readable on return

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(one, range(64)))
    assert seen == [3] * 64
    assert sorted(store.read()["session_id"]) == sorted(f"b{i}-{j}" for i in range(64) for j in range(3))
    assert sum(writes) == 192 and len(writes) < 64  # batches shared writes


def test_a_failed_write_reaches_its_caller_and_the_next_write_works(tmp_path):
    store = OfflineStore(tmp_path / "log")
    log = GroupCommitLog(store)
    append = store.append
    store.append = lambda frame, durable=False: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        log.append(views(1, "lost"))
    store.append = append
    log.append(views(2, "kept"))
    assert sorted(store.read()["session_id"]) == ["kept-0", "kept-1"]
