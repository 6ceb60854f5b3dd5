"""Writes the audit log off the request path: a bounded queue, and one thread that batches, appends and fsyncs.

A request only puts a `Decision` on the queue (never blocking: with the queue full the record is dropped,
counted in `hyperrec_audit_dropped_total` and logged once). The thread takes what queues up within
`flush_ms` of a batch's first record, builds and seals the records, appends them, then flushes and fsyncs
once for the batch. Woken for every answer instead, it took the GIL from the request path that often (in
process at 300 req/s: p99 49-136 ms, against 21-30 ms batched; README, "The audit log of decisions").
Files rotate at a size and at each UTC day. `close()` writes everything queued before it, then stops the
thread.

Each writer holds a chain folder (`chain-0`, `chain-1`, ...) under an exclusive lock, so that ingress
replicas sharing a folder write chains of their own; a restarted server takes the free folder back and
goes on with its chain.
"""

from __future__ import annotations

import fcntl
import logging
import os
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from prometheus_client import Counter

from hyperrec.serve.audit import Decision, ModelEventRecord, chain_files, last_hash, seal
from hyperrec.serve.config import AuditConfig
from hyperrec.serve.privacy import Pseudonyms

logger = logging.getLogger(__name__)
MAX_BATCH = 512  # records per write and fsync


def claim_chain(root: Path) -> tuple[Path, IO[str]]:
    """The first chain folder under `root` no other writer holds, and the open lock file that holds it."""
    n = 0
    while True:
        folder = root / f"chain-{n}"
        folder.mkdir(parents=True, exist_ok=True)
        lock = (folder / "LOCK").open("a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return folder, lock
        except BlockingIOError:
            lock.close()
            n += 1


class AuditWriter:
    def __init__(self, root: Path, config: AuditConfig, pseudonyms: Pseudonyms, dropped: Counter):
        self.config = config
        self.pseudonyms = pseudonyms
        self.dropped = dropped
        self.folder, self._chain_lock = claim_chain(root)
        self.prev = last_hash(self.folder)
        self.queue: queue.Queue[Decision | ModelEventRecord | None] = queue.Queue(config.queue_size)
        self._file: IO[bytes] | None = None
        self._day = ""
        self._closed = False
        self._warned = False
        self._lock = threading.Lock()  # orders puts against close: nothing is queued after the stop mark
        self._thread = threading.Thread(target=self._run, name="hyperrec-audit", daemon=True)
        self._thread.start()

    def put(self, decision: Decision | ModelEventRecord) -> None:
        """Queue a decision (or a model event); never blocks. A full queue (or a closed writer) drops it and counts the drop."""
        with self._lock:
            if not self._closed:
                try:
                    self.queue.put_nowait(decision)
                    return
                except queue.Full:
                    pass
        self.dropped.inc()
        if not self._warned:
            self._warned = True
            logger.warning(
                "audit queue full (%d records): decision records are being dropped; hyperrec_audit_dropped_total counts them "
                "(raise audit.queue_size, or give the audit folder a faster disk)",
                self.config.queue_size,
            )

    def close(self) -> None:
        """Write every decision queued so far, then stop; later puts are dropped. Safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.queue.put(None)  # the stop mark; waits only while the thread makes room
        self._thread.join()
        self._chain_lock.close()

    def _run(self) -> None:
        while True:
            batch = [self.queue.get()]
            until = time.monotonic() + self.config.flush_ms / 1000
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get(timeout=max(until - time.monotonic(), 0.0)))
                except queue.Empty:
                    break
            decisions = [d for d in batch if d is not None]
            try:
                if decisions:
                    self._write(decisions)
            except Exception:  # the thread lives on: a dead one would leave close() waiting on a full queue
                logger.exception("audit log: %d decision records not written", len(decisions))
                self.dropped.inc(len(decisions))
            if batch[-1] is None:
                if self._file is not None:
                    self._file.close()
                return

    def _write(self, decisions: list[Decision | ModelEventRecord]) -> None:
        lines = []
        prev = self.prev
        for decision in decisions:
            line, prev = seal(decision.record(self.pseudonyms) if isinstance(decision, Decision) else decision, prev)
            lines.append(line)
        try:
            out = self._current_file()
            out.write("".join(lines).encode())
            out.flush()
            os.fsync(out.fileno())
            self.prev = prev
        except OSError as exc:  # a full or failing disk loses these records, never the server
            logger.error("audit log: %d decision records not written to %s: %s", len(decisions), self.folder, exc)
            self.dropped.inc(len(decisions))
            if self._file is not None:
                self._file.close()
            self._file = None  # the next batch starts a new file, chained to what did reach the disk
            self.prev = last_hash(self.folder)

    def _current_file(self) -> IO[bytes]:
        day = datetime.now(UTC).strftime("%Y%m%d")
        out = self._file
        if out is not None and day == self._day and out.tell() < self.config.rotate_mb * 1_000_000:
            return out
        if out is not None:
            out.close()
        taken = [int(f.stem.rsplit("-", 1)[1]) for f in chain_files(self.folder) if f.stem.startswith(f"decisions-{day}-")]
        path = self.folder / f"decisions-{day}-{max(taken, default=0) + 1:06d}.jsonl"
        self._file, self._day = path.open("xb"), day
        directory = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(directory)  # the new file's name is durable too
        finally:
            os.close(directory)
        return self._file
