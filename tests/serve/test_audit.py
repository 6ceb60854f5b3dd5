"""The audit log of decisions: one record per real /recommend answer through the in-process flow, pseudonymous,
chained so that an edit, a deletion or a reordering shows, written off the request path, and found again by
`hyperrec audit`."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from hyperrec.cli import main
from hyperrec.registry import Registry
from hyperrec.serve.audit import Decision, chain_files, read_records, verify
from hyperrec.serve.audit_writer import AuditWriter
from hyperrec.serve.config import AuditConfig, ServeConfig
from hyperrec.serve.flow import LocalStages, RecommendFlow
from hyperrec.serve.metrics import ServeMetrics
from hyperrec.serve.online_store import MemoryStore
from hyperrec.serve.privacy import ConsentConfig, Pseudonyms
from hyperrec.serve.schemas import RecommendRequest, RecommendResponse
from tests.conftest import SERVE_PORT

KEY = "test-key-0123456789abcdef"
SHOPPER, VISIT = "shopper-7c41e9", "visit-93b2d0"  # ids that cannot occur by chance in a record's other bytes
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)
DEFAULT_CONSENT = ConsentConfig().snapshot()


@pytest.fixture(autouse=True)
def id_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYPERREC_ID_KEY", KEY)


def make_flow(exported, tmp_path: Path, metrics: ServeMetrics | None = None, **audit) -> RecommendFlow:
    config = ServeConfig(
        registry=exported.path.parent,
        version=exported.version,
        event_log=tmp_path / "log",
        audit={"path": tmp_path / "audit", **audit},
    )
    flow = RecommendFlow(config, MemoryStore(), LocalStages(Registry(config.registry), config), metrics)
    asyncio.run(flow.start())
    return flow


def ask(flow: RecommendFlow, **request) -> RecommendResponse:
    return asyncio.run(flow.recommend(RecommendRequest(**request)))


def shop(flow: RecommendFlow) -> None:
    """SHOPPER views and carts a few items in VISIT: a personal answer with retrieval behind it."""
    table = flow.items[flow.current].table
    items = [str(i) for i in table.item_ids[table.in_stock][:3]]
    events = [
        {"event_type": kind, "user_id": SHOPPER, "session_id": VISIT, "item_id": item, "timestamp": NOW.isoformat()}
        for kind, item in [("view", items[0]), ("view", items[1]), ("add_to_cart", items[2])]
    ]
    assert flow.ingest(events).accepted == 3


def answers(flow: RecommendFlow) -> list[RecommendResponse]:
    """A known user, SHOPPER in a session, the session alone, and a shopper with nothing to personalize on."""
    known = sorted(flow.registry.bundle(flow.current).user_baskets())[0]
    shop(flow)
    viewed = str(flow.items[flow.current].table.item_ids[flow.items[flow.current].table.in_stock][0])
    return [
        ask(flow, user_id=known, context={"page": "home"}),
        ask(flow, user_id=SHOPPER, session_id=VISIT, context={"page": "product", "device": "ios"}, item_id=viewed, k=5),
        ask(flow, session_id=VISIT, context={"page": "cart"}, k=3),
        ask(flow, user_id="nobody-seen-yet", k=4),
    ]


def test_every_answer_writes_one_record_of_its_decision(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    sent = answers(flow)
    flow.close()
    records = list(read_records(tmp_path / "audit"))
    assert [r.decision_id for r in records] == [a.trace_id for a in sent]
    ids = Pseudonyms(KEY.encode())
    for record, answer, page in zip(records, sent, ["home", "product", "cart", "home"], strict=True):
        assert record.placement == page and record.model_version == answer.model_version
        assert (record.served_by, record.degraded, record.latency_ms) == (answer.served_by, answer.degraded, answer.latency_ms)
        assert [(i.item_id, i.score, i.reason) for i in record.items] == [(i.item_id, i.score, i.reason) for i in answer.items]
        assert record.arm is None and all(i.propensity is None for i in record.items)
        assert record.consent == DEFAULT_CONSENT  # nobody here sent a consent event: the configured defaults
        if answer.served_by == "ranker":  # retrieval ran: how many candidates it gave, from where
            assert record.candidates is not None and record.candidates.count >= len(record.items)
            sources = set(record.candidates.sources)
            if page == "home":
                assert sources == {"ann", "repeat", "popularity"}
            if page == "product":  # the page item's neighbours, and what was bought with it if anything was
                assert "similar" in sources and sources <= {"bought_with", "similar"}
            assert sum(record.candidates.sources.values()) >= record.candidates.count  # every candidate has a source
    assert records[1].user == ids.of(SHOPPER) and records[1].session == ids.of(VISIT)
    assert records[2].user is None and records[2].session == ids.of(VISIT)
    assert records[3].served_by == "popularity" and records[3].candidates is None  # nothing to retrieve for
    assert verify(tmp_path / "audit") is None


def test_consent_is_in_the_record_and_without_analytics_the_shopper_is_not(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    shop(flow)

    def consent(purpose: str, user: str, session: str) -> dict:
        return {
            "event_type": "consent",
            "purpose": purpose,
            "granted": False,
            "user_id": user,
            "session_id": session,
            "timestamp": NOW.isoformat(),
        }

    assert flow.ingest([consent("analytics", SHOPPER, VISIT), consent("personalization", "private-one", "private-visit")]).accepted == 2
    unlogged = ask(flow, user_id=SHOPPER, session_id=VISIT)
    private = ask(flow, user_id="private-one")
    flow.close()
    first, second = read_records(tmp_path / "audit")
    assert first.decision_id == unlogged.trace_id and (first.user, first.session) == (None, None)  # recorded, but not whose
    assert not first.consent.analytics and first.consent.personalization and "analytics" not in first.consent.defaulted
    assert second.decision_id == private.trace_id and second.user == Pseudonyms(KEY.encode()).of("private-one")
    assert not second.consent.personalization and second.served_by == "popularity" and second.candidates is None
    assert any("consent: personalization withdrawn" in d for d in second.degraded)


def test_no_raw_user_or_session_id_in_the_audit_files(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    known = answers(flow)[0].user_id
    flow.close()
    written = b"".join(p.read_bytes() for p in (tmp_path / "audit").rglob("*") if p.is_file())
    assert written.count(b'"decision_id"') == 4
    for raw in (SHOPPER, VISIT, known):
        assert raw.encode() not in written
    assert Pseudonyms(KEY.encode()).of(SHOPPER).encode() in written


def sealed_lines(exported, tmp_path: Path, servers: int, each: int) -> Path:
    """Records written through `servers` flows one after the other (each restart begins a new file); the chain folder."""
    for _ in range(servers):
        flow = make_flow(exported, tmp_path)
        for user in sorted(flow.registry.bundle(flow.current).user_baskets())[:each]:
            ask(flow, user_id=user, k=5)
        flow.close()
    [chain] = (tmp_path / "audit").glob("chain-*")  # each restart took the chain back
    return chain


def lines_of(folder: Path) -> list[tuple[Path, list[bytes]]]:
    return [(f, f.read_bytes().splitlines(keepends=True)) for f in chain_files(folder)]


def test_the_chain_verifies_and_shows_an_edit_a_deletion_and_a_reordering(exported, tmp_path):
    chain = sealed_lines(exported, tmp_path, servers=3, each=4)
    files = lines_of(chain)
    assert [len(lines) for _, lines in files] == [5, 5, 5]  # each server's start (a model event), then its 4 decisions
    assert verify(chain) is None
    first, lines = files[0]

    def tampered(name: str, new_lines: list[bytes]) -> Path:
        copy = tmp_path / name
        shutil.copytree(chain, copy)
        (copy / first.name).write_bytes(b"".join(new_lines))
        return copy

    edited = lines[1].replace(b'"served_by":"ranker"', b'"served_by":"last_good"').replace(b'"score":', b'"score":1', 1)
    assert edited != lines[1]
    broken = verify(tampered("edited", [lines[0], edited, *lines[2:]]))
    assert (broken.file.name, broken.line) == (first.name, 2) and "edited" in broken.reason
    broken = verify(tampered("deleted", [lines[0], *lines[2:]]))
    assert (broken.line, "deleted or moved" in broken.reason) == (2, True)
    broken = verify(tampered("reordered", [lines[1], lines[0], *lines[2:]]))
    assert (broken.line, "deleted or moved" in broken.reason) == (1, True)
    broken = verify(tampered("cut", [*lines[:-1], lines[-1][:-40]]))
    assert (broken.line, "unfinished" in broken.reason) == (len(lines), True)
    whole_file_gone = tmp_path / "file-gone"
    shutil.copytree(chain, whole_file_gone)
    (whole_file_gone / files[1][0].name).unlink()
    broken = verify(whole_file_gone)
    assert (broken.file.name, broken.line) == (files[2][0].name, 1)


def test_files_rotate_at_their_size(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    decision = Decision(RecommendRequest(user_id=SHOPPER), ask(flow, user_id=SHOPPER), None, DEFAULT_CONSENT, NOW.timestamp())
    flow.close()
    writer = AuditWriter(tmp_path / "rotating", AuditConfig(rotate_mb=1e-6), Pseudonyms(KEY.encode()), ServeMetrics().audit_dropped)
    for written in (1, 2):
        writer.put(decision)
        deadline = time.monotonic() + 30
        while len(list(read_records(tmp_path / "rotating"))) < written and time.monotonic() < deadline:
            time.sleep(0.01)  # the writer thread appends it
    writer.close()
    assert [len(f.read_bytes().splitlines()) for f in chain_files(writer.folder)] == [1, 1]
    assert verify(tmp_path / "rotating") is None


def test_a_batch_waits_flush_ms_for_more_records_and_a_stop_does_not_wait(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    decision = Decision(RecommendRequest(user_id=SHOPPER), ask(flow, user_id=SHOPPER), None, DEFAULT_CONSENT, NOW.timestamp())
    flow.close()
    writer = AuditWriter(tmp_path / "batched", AuditConfig(flush_ms=5000), Pseudonyms(KEY.encode()), ServeMetrics().audit_dropped)
    for _ in range(5):
        writer.put(decision)
    time.sleep(0.5)
    assert list(read_records(tmp_path / "batched")) == []  # the batch is still gathering
    began = time.monotonic()
    writer.close()
    assert time.monotonic() - began < 4  # the stop mark ends the wait
    assert [len(f.read_bytes().splitlines()) for f in chain_files(writer.folder)] == [5]  # one batch, one fsync
    assert verify(tmp_path / "batched") is None


def test_two_writers_on_one_folder_keep_chains_of_their_own(exported, tmp_path):
    one, two = make_flow(exported, tmp_path), make_flow(exported, tmp_path)
    for flow in (one, two, one):
        ask(flow, user_id="someone")
    one.close()
    two.close()
    chains = sorted(p.name for p in (tmp_path / "audit").glob("chain-*"))
    assert chains == ["chain-0", "chain-1"] and verify(tmp_path / "audit") is None
    assert len(list(read_records(tmp_path / "audit"))) == 3


def test_a_full_queue_drops_records_without_blocking_and_counts_them(exported, tmp_path, caplog):
    flow = make_flow(exported, tmp_path)
    decision = Decision(RecommendRequest(user_id=SHOPPER), ask(flow, user_id=SHOPPER), None, DEFAULT_CONSENT, NOW.timestamp())
    flow.close()
    metrics = ServeMetrics()
    writer = AuditWriter(tmp_path / "small", AuditConfig(queue_size=1), Pseudonyms(KEY.encode()), metrics.audit_dropped)
    sent = 200
    with caplog.at_level(logging.WARNING, logger="hyperrec.serve.audit_writer"):
        for _ in range(sent):  # faster than the writer's fsyncs: the one-record queue overflows (never waits)
            writer.put(decision)
        writer.close()
    dropped = metrics.registry.get_sample_value("hyperrec_audit_dropped_total")
    written = len(list(read_records(tmp_path / "small")))
    assert dropped >= 1 and written >= 1 and written + dropped == sent
    [warning] = caplog.records  # once, for all the drops
    assert "hyperrec_audit_dropped_total" in warning.message
    writer.put(decision)  # after close: dropped, counted, no error
    assert metrics.registry.get_sample_value("hyperrec_audit_dropped_total") == dropped + 1


def test_close_writes_everything_queued(exported, tmp_path):
    flow = make_flow(exported, tmp_path)
    users = sorted(flow.registry.bundle(flow.current).user_baskets())[:40]

    async def burst() -> list[RecommendResponse]:
        return [await flow.recommend(RecommendRequest(user_id=u, k=3)) for u in users]

    sent = asyncio.run(burst())
    flow.close()  # at once: whatever was still queued is written before close returns
    assert [r.decision_id for r in read_records(tmp_path / "audit")] == [a.trace_id for a in sent]
    assert verify(tmp_path / "audit") is None


def test_a_served_endpoint_has_written_every_answer_when_it_stops(ray_cluster, exported, tmp_path):
    """Through Ray Serve: stopping the app (what SIGTERM does) runs the ingress's __del__, which drains the queue."""
    from hyperrec.serve.runner import start, stop

    config = ServeConfig(registry=exported.path.parent, version=exported.version, port=SERVE_PORT, event_log=tmp_path / "log")
    url = start(config)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            bodies = [{"user_id": SHOPPER, "context": {"page": "home"}}, {"session_id": VISIT, "k": 3}] * 10
            traces = [client.post("/recommend", json=body).json()["trace_id"] for body in bodies]
    finally:
        stop()
    records = list(read_records(tmp_path / "audit"))
    assert [r.decision_id for r in records] == traces and verify(tmp_path / "audit") is None
    written = b"".join(p.read_bytes() for p in (tmp_path / "audit").rglob("*.jsonl"))
    assert SHOPPER.encode() not in written and VISIT.encode() not in written


def test_audit_command_answers_why_a_shopper_saw_an_item(exported, tmp_path, capsys, monkeypatch):
    flow = make_flow(exported, tmp_path)
    sent = answers(flow)
    flow.close()
    folder = str(tmp_path / "audit")
    mine = sent[1]
    assert main(["audit", "--path", folder, "--user", SHOPPER]) == 0
    out = capsys.readouterr().out
    assert mine.trace_id in out and sent[0].trace_id not in out and "1 decision for user" in out
    assert all(i.item_id in out and i.reason in out for i in mine.items) and "placement product" in out
    assert f"model {mine.model_version}" in out and f"served by {mine.served_by}" in out

    assert main(["audit", "--path", folder, "--decision", sent[3].trace_id]) == 0
    out = capsys.readouterr().out
    assert sent[3].trace_id in out and "served by popularity" in out and mine.trace_id not in out
    assert main(["audit", "--path", folder, "--session", VISIT, "--item", sent[2].items[0].item_id]) == 0
    assert sent[2].trace_id in capsys.readouterr().out

    assert main(["audit", "--path", folder, "--verify", "--model-events"]) == 0
    out = capsys.readouterr().out
    assert "every line intact" in out and "start" in out and exported.version in out
    [file] = chain_files(tmp_path / "audit" / "chain-0")
    file.write_bytes(file.read_bytes().replace(b'"placement":"home"', b'"placement":"email"'))
    assert main(["audit", "--path", folder, "--verify"]) == 2
    assert ":2: the line was edited" in capsys.readouterr().err  # line 1: the server's start

    assert main(["audit", "--path", folder, "--decision", "no-such-trace"]) == 2
    assert "no decision record" in capsys.readouterr().err
    monkeypatch.delenv("HYPERREC_ID_KEY")
    assert main(["audit", "--path", folder, "--user", SHOPPER]) == 2
    assert "HYPERREC_ID_KEY is not set" in capsys.readouterr().err
