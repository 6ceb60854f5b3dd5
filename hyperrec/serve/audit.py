"""The audit log of decisions: one record per /recommend answer, in JSON lines chained by SHA-256.

A line is `{"prev": <hash of the line before>, ...the record..., "hash": <SHA-256 of this line up to
its hash field>}`. Editing a line breaks its own hash; deleting or reordering lines (or whole files)
breaks the next line's `prev`. The chain runs across the files of a chain folder in name order and
starts from GENESIS. What a hash chain cannot show is the loss of the newest lines at its end.

Beside the decisions, the chain holds the changes of what the endpoint serves (`ModelEventRecord`: a start,
an admin's swap, a rollback by the monitors, a canary started, promoted or rolled back, with the reasons),
so that a decision's version can be traced to who or what put it there.

Records hold pseudonyms (`Pseudonyms.of`) of the user and session ids, never the ids themselves:
`hyperrec audit --user ID` finds a shopper's records by hashing ID under the same key. A shopper without
analytics consent (withdrawn, or unknown because the online store did not answer) is left out: their
decisions are still recorded, with the consent snapshot that says why, and with no user or session.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from hyperrec.bundle.placements import SOURCES
from hyperrec.bundle.retrieval import Candidates
from hyperrec.config import StrictModel
from hyperrec.serve.privacy import ConsentSnapshot, Pseudonyms
from hyperrec.serve.schemas import Exploration, RecommendRequest, RecommendResponse, ServedBy

GENESIS = "0" * 64  # `prev` of a chain's first line
FILE_GLOB = "decisions-*.jsonl"
_SEALED = re.compile(rb'^(\{"prev":"([0-9a-f]{64})",.*),"hash":"([0-9a-f]{64})"\}$', re.DOTALL)  # one line, no newline


class AuditedItem(StrictModel):
    item_id: str
    score: float
    reason: str
    propensity: float | None = Field(None, description="the exploration slot's probability of this pick; None = not the slot's")


class CandidatePool(StrictModel):
    """What retrieval handed the ranker, after blocked items were dropped, per source (placements.SOURCES; those that
    brought none left out). Sources overlap: an item the shopper bought that ANN also found counts in both."""

    count: int
    sources: dict[str, int]


class DecisionRecord(StrictModel):
    decision_id: str = Field(description="the response's trace_id")
    time: datetime
    user: str | None = Field(description="pseudonym of the user id (None: anonymous, or no analytics consent)")
    session: str | None = Field(description="pseudonym of the session id (None: none, or no analytics consent)")
    consent: ConsentSnapshot = Field(description="the shopper's consent by purpose when the answer was made")
    placement: str | None = Field(description="the placement that answered (the request's context.page, or home: see degraded)")
    experiment: str | None = Field(None, description="the experiment the endpoint ran (None: none)")
    arm: str | None = Field(None, description="the shopper's arm of it, or holdout")
    model_version: str
    served_by: ServedBy
    degraded: list[str]
    candidates: CandidatePool | None = Field(description="None: no retrieval ran (popularity answer)")
    items: list[AuditedItem]
    exploration: Exploration | None = Field(None, description="the exploration slot's pool and probabilities (off-policy evaluation)")
    latency_ms: float


ModelEventKind = Literal["start", "swap", "rollback", "canary_started", "canary_promoted", "canary_rolled_back", "canary_stopped"]


class ModelEventRecord(StrictModel):
    """A change of the version the endpoint serves (or of its canary), in the chain beside the decisions."""

    record: Literal["model_event"] = "model_event"
    time: datetime
    kind: ModelEventKind
    from_version: str | None = Field(description="what was served before (None at start)")
    to_version: str = Field(description="what is served after; for a canary event, the canary's version")
    reasons: list[str] = Field([], description="why: the broken monitor bounds, or what promoted a canary")


@dataclass(frozen=True)
class Decision:
    """What the request path hands the audit writer: cheap to make; the record is built off the request path."""

    request: RecommendRequest
    response: RecommendResponse
    pool: CandidatePool | None
    consent: ConsentSnapshot
    at: float  # time.time() of the answer

    def record(self, pseudonyms: Pseudonyms) -> DecisionRecord:
        request, response = self.request, self.response
        named = self.consent.analytics
        return DecisionRecord(
            decision_id=response.trace_id,
            time=datetime.fromtimestamp(self.at, UTC),
            user=pseudonyms.of(request.user_id) if named and request.user_id is not None else None,
            session=pseudonyms.of(request.session_id) if named and request.session_id is not None else None,
            consent=self.consent,
            placement=response.placement,
            experiment=response.experiment,
            arm=response.arm,
            model_version=response.model_version,
            served_by=response.served_by,
            degraded=response.degraded,
            candidates=self.pool,
            items=[
                AuditedItem(item_id=i.item_id, score=i.score, reason=i.reason, propensity=self._propensity(p))
                for p, i in enumerate(response.items)
            ],
            exploration=response.exploration,
            latency_ms=response.latency_ms,
        )

    def _propensity(self, position: int) -> float | None:
        slot = self.response.exploration
        return slot.propensity if slot is not None and slot.position == position else None


def candidate_pool(candidates: Candidates) -> CandidatePool:
    """How many candidates each source brought (an item two sources brought counts for both)."""
    counts = {name: int(np.count_nonzero(candidates.sources & (1 << bit))) for bit, name in enumerate(SOURCES)}
    return CandidatePool(count=len(candidates.items), sources={name: n for name, n in counts.items() if n})


# -- the chain -----------------------------------------------------------------------------------


def seal(record: DecisionRecord | ModelEventRecord, prev: str) -> tuple[str, str]:
    """The record's line (with its newline) and its hash."""
    body = f'{{"prev":"{prev}",' + record.model_dump_json()[1:]
    digest = hashlib.sha256(body.encode()).hexdigest()
    return f'{body[:-1]},"hash":"{digest}"}}\n', digest


@dataclass(frozen=True)
class Break:
    """The first line where the chain does not hold (1-based line number in `file`)."""

    file: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def chain_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(FILE_GLOB))


def chains(path: Path) -> list[Path]:
    """The chain folders at `path`: the folder itself if it holds records, else its `chain-*` folders."""
    if chain_files(path):
        return [path]
    return sorted(p for p in path.glob("chain-*") if p.is_dir())


def _lines(file: Path) -> list[bytes]:
    """The file's lines without their newline; the last one is b"" unless a write was cut short."""
    return file.read_bytes().split(b"\n")


def verify(path: Path) -> Break | None:
    """Check every chain under `path` (the audit folder or one chain folder); the first broken line, or None."""
    for folder in chains(path):
        prev = GENESIS
        for file in chain_files(folder):
            *lines, rest = _lines(file)
            if rest:
                return Break(file, len(lines) + 1, "an unfinished line (a write cut short)")
            for number, raw in enumerate(lines, 1):
                found = _SEALED.match(raw)
                if found is None:
                    return Break(file, number, "not a sealed record")
                body, claimed_prev, digest = found.group(1) + b"}", found.group(2).decode(), found.group(3).decode()
                if hashlib.sha256(body).hexdigest() != digest:
                    return Break(file, number, "the line was edited: its hash does not match its content")
                if claimed_prev != prev:
                    return Break(file, number, "a line before it was deleted or moved: prev is not the previous line's hash")
                prev = digest
    return None


def last_hash(folder: Path) -> str:
    """The hash of the newest complete line in a chain folder (GENESIS if none): where the chain goes on."""
    for file in reversed(chain_files(folder)):
        with file.open("rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - (1 << 20)))  # a line is a few kB: the last MiB holds the last one
            for raw in reversed(f.read().split(b"\n")[:-1]):  # [-1]: after the last newline (empty, or a torn line)
                found = _SEALED.match(raw)
                if found is not None:
                    return found.group(3).decode()
    return GENESIS


def _fields(path: Path) -> Iterator[dict[str, Any]]:
    """Every record's fields under `path`, chain by chain, in written order (lines that do not parse are skipped: see verify)."""
    for folder in chains(path):
        for file in chain_files(folder):
            for raw in _lines(file):
                try:
                    fields = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                fields.pop("prev", None)
                fields.pop("hash", None)
                yield fields


def read_records(path: Path) -> Iterator[DecisionRecord]:
    """Every decision record under `path`, in written order."""
    for fields in _fields(path):
        if fields.get("record") != "model_event":
            yield DecisionRecord.model_validate(fields)


def read_model_events(path: Path) -> Iterator[ModelEventRecord]:
    """Every model event under `path`, in written order."""
    for fields in _fields(path):
        if fields.get("record") == "model_event":
            yield ModelEventRecord.model_validate(fields)
