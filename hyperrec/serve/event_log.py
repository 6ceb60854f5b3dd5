"""The served event log's writer: concurrent /events batches share one durable write (group commit).

A durable append (Parquet part files, fsync) costs 15-25 ms on this machine whatever its size: at 50
batches a second, one write each is a whole core. Here a caller hands its batch over and waits; the
first caller to find no write in progress becomes the writer, and writes everything handed over
meanwhile (its own and others') as one append, then again while more came, and wakes each caller
when its events are on disk. So nothing is acknowledged before it is durable, and under load the
writes per second fall to what the disk needs, not what the traffic asks.
"""

from __future__ import annotations

import threading

import pyarrow as pa

from hyperrec.data.offline_store import OfflineStore


class _Waiting:
    def __init__(self, table: pa.Table):
        self.table = table
        self.done = threading.Event()
        self.error: Exception | None = None


class GroupCommitLog:
    def __init__(self, store: OfflineStore):
        self.store = store
        self._lock = threading.Lock()
        self._pending: list[_Waiting] = []
        self._writing = False

    def append(self, table: pa.Table) -> None:
        """Return once `table`'s events (EVENT_SCHEMA) are on disk (raise what the write raised)."""
        mine = _Waiting(table)
        with self._lock:
            self._pending.append(mine)
            writer = not self._writing
            self._writing = True
        if writer:
            self._write_all()
        mine.done.wait()
        if mine.error is not None:
            raise mine.error

    def _write_all(self) -> None:
        while True:
            with self._lock:
                batch, self._pending = self._pending, []
                if not batch:
                    self._writing = False
                    return
            error = None
            try:
                self.store.append(pa.concat_tables([w.table for w in batch]), durable=True)
            except Exception as exc:  # every caller of this write hears of it
                error = exc
            for waiting in batch:
                waiting.error = error
                waiting.done.set()
