"""Offline store: events as Parquet partitioned by day and event type.

Appends never rewrite what is there: each append writes new files tagged with a batch number,
and reading sorts by (batch, row) so that events come back exactly as they went in. A new file is
written in a hidden staging folder and renamed into place, so a reader running beside a writer sees
a part whole or not at all (it once read a 4-byte part being written and failed). The store
remembers the content hash of every file ingested into it, so the same file is not appended twice
by mistake; the catalog is merged, newer rows winning. The one rewrite is erasure (`erase`): the
parts holding a shopper's rows are replaced, one file at a time, by copies without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from hyperrec.data.catalog import normalize_catalog
from hyperrec.data.events import EVENT_COLUMNS, EVENT_SCHEMA, EVENT_TYPES, empty_events, normalize_events

_PARTITIONING = ds.partitioning(pa.schema([("event_date", pa.string()), ("event_type", pa.string())]), flavor="hive")


def _dataset_schema() -> pa.Schema:
    """Every column the contract has now, so that parts written before a column existed read as missing values there
    (left to itself, the dataset takes its columns from one part, and an older first part hides the newer columns)."""
    columns = [f for f in EVENT_SCHEMA if f.name != "event_type"]
    return pa.schema([*columns, ("_batch", pa.int64()), ("_row", pa.int64()), *_PARTITIONING.schema])


class OfflineStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.events_dir = self.root / "events"
        self.catalog_path = self.root / "catalog.parquet"
        self.ingest_log = self.root / "ingested.json"

    def has_events(self) -> bool:
        return any(self._parts())

    def _parts(self) -> Iterable[Path]:
        """The event files, not those still being written (in hidden staging folders or under hidden names)."""
        if not self.events_dir.exists():
            return iter(())
        return (p for p in self.events_dir.rglob("*.parquet") if not any(n.startswith(".") for n in p.relative_to(self.events_dir).parts))

    def ingested(self) -> dict[str, dict]:
        """Content hash -> {file, events, at} of every file ingested so far."""
        return json.loads(self.ingest_log.read_text()) if self.ingest_log.exists() else {}

    def record_ingest(self, file: Path, events: int) -> None:
        log = self.ingested()
        log[file_hash(file)] = {"file": str(file), "events": events, "at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        self.root.mkdir(parents=True, exist_ok=True)
        self.ingest_log.write_text(json.dumps(log, indent=2))

    def append(self, events: pd.DataFrame | pa.Table, durable: bool = False) -> int:
        """Write a batch of events (an event table, or one in Arrow with EVENT_SCHEMA); returns how many were written.
        `durable`: the new files and their folders are on disk (fsync) when it returns, as an endpoint needs before it
        acknowledges them."""
        if isinstance(events, pd.DataFrame):
            events = pa.Table.from_pandas(normalize_events(events), schema=EVENT_SCHEMA, preserve_index=False)
        if not events.num_rows:
            return 0
        batch = time.time_ns()
        table = events.select(list(EVENT_COLUMNS)).cast(EVENT_SCHEMA)
        table = table.append_column("_batch", pa.array([batch] * table.num_rows, pa.int64()))
        table = table.append_column("_row", pa.array(range(table.num_rows), pa.int64()))
        table = table.append_column("event_date", pc.strftime(table.column("timestamp"), format="%Y-%m-%d"))
        written: list = []
        staging = self.events_dir / f".staging-{batch}"  # a leading dot: datasets never read it
        ds.write_dataset(
            table,
            staging,
            format="parquet",
            partitioning=_PARTITIONING,
            basename_template=f"part-{batch}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            file_visitor=written.append,
        )
        placed = []
        for file in written:
            source = Path(file.path)
            target = self.events_dir / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            if durable:
                _fsync(source)
            os.replace(source, target)
            placed.append(target)
        shutil.rmtree(staging, ignore_errors=True)
        if durable:
            for folder in {folder for path in placed for folder in path.parents[:3]}:  # type, day and events folders
                _fsync(folder)
        return table.num_rows

    def read(self, event_types: list[str] | None = None) -> pd.DataFrame:
        """All events (or those of the given types) in the order they were appended."""
        if not self.events_dir.exists():
            return empty_events()
        unknown = set(event_types or []) - set(EVENT_TYPES)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}; known: {list(EVENT_TYPES)}")
        dataset = self._dataset()
        row_filter = ds.field("event_type").isin(event_types) if event_types else None
        table = dataset.to_table(filter=row_filter)
        frame = table.to_pandas().sort_values(["_batch", "_row"], kind="stable")
        return normalize_events(frame[list(EVENT_COLUMNS)].reset_index(drop=True))

    def _dataset(self) -> ds.Dataset:
        return ds.dataset(self.events_dir, format="parquet", partitioning=_PARTITIONING, schema=_dataset_schema())

    def user_ids(self) -> set[str]:
        """Every user id the events name (only that column is read)."""
        if not self.has_events():
            return set()
        return {u for u in self._dataset().to_table(columns=["user_id"]).column("user_id").to_pylist() if u is not None}

    def sessions_of(self, user_id: str) -> set[str]:
        """Sessions that events name together with the user (their user events and identify)."""
        if not self.has_events():
            return set()
        table = self._dataset().to_table(columns=["session_id"], filter=ds.field("user_id") == user_id)
        return {s for s in table.column("session_id").to_pylist() if s is not None}

    def erase(self, user_id: str, sessions: Iterable[str]) -> int:
        """Delete the user's events and the anonymous events of their sessions (before they logged in); returns how many.

        Each part that holds any is replaced by a copy without them (written next to it, then renamed over it: a
        reader sees the old part or the new one, never half of one); a part left empty is deleted.
        """
        if not self.events_dir.exists():
            return 0
        session_ids = sorted(set(sessions))
        removed = 0
        for part in sorted(self._parts()):
            table = pq.ParquetFile(part).read()  # the file alone: its partition columns stay in its path
            users, session_column = table.column("user_id"), table.column("session_id")
            their_sessions = pc.is_in(session_column, value_set=pa.array(session_ids, session_column.type))
            anonymous_in_theirs = pc.and_kleene(pc.is_null(users), their_sessions)
            theirs = pc.fill_null(pc.or_kleene(pc.equal(users, user_id), anonymous_in_theirs), False)
            count = pc.sum(theirs).as_py() or 0
            if not count:
                continue
            removed += count
            kept = table.filter(pc.invert(theirs))
            if not kept.num_rows:
                part.unlink()
                continue
            scratch = part.with_name(f".{part.name}.erasing")  # a leading dot: datasets never read it
            pq.write_table(kept, scratch)
            os.replace(scratch, part)
        return removed

    def write_catalog(self, catalog: pd.DataFrame) -> None:
        """Merge into the stored catalog: new items are added, known items take the new values."""
        self.root.mkdir(parents=True, exist_ok=True)
        catalog = normalize_catalog(catalog)
        if self.catalog_path.exists():
            old = self.read_catalog()
            catalog = pd.concat([old[~old["item_id"].isin(catalog["item_id"])], catalog], ignore_index=True)
        catalog.to_parquet(self.catalog_path, index=False)

    def read_catalog(self) -> pd.DataFrame:
        if not self.catalog_path.exists():
            raise FileNotFoundError(f"{self.catalog_path}: no catalog in this store")
        return normalize_catalog(pd.read_parquet(self.catalog_path))


def _fsync(path: Path) -> None:
    """Flush a file's or a folder's entries to disk (a folder: so that the new names survive a crash too)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
