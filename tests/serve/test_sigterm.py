"""SIGTERM stops a real `hyperrec serve` cleanly: exit code 0, and no process of its own Ray cluster is left.

The server runs as a background job from a script would: in a session (process group) of its own, with
SIGINT ignored, so only SIGTERM (what systemd, Docker and Kubernetes send) can stop it. It starts its
own local Ray cluster (raylet, gcs_server, DashboardAgent, RuntimeEnvAgent, workers), separate from the
test session's. Every process it started is recorded while it serves; whatever is still alive after
the test is killed, so that a failing run leaves nothing behind.

The same server runs with no admin token in its environment: admin calls are off (404) and stock and
price events are refused (403), while shoppers' events are taken.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import UTC, datetime

import httpx
import pytest

from tests.serve.processes import alive, command

NOW = datetime(2026, 11, 27, 12, tzinfo=UTC).isoformat()
STOP_S, GONE_S = 60, 10


def test_sigterm_exits_0_and_leaves_no_process(server):
    process, url, recorded, log = server
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/admin/model", json={"version": "latest"}).status_code == 404  # no admin token: admin calls off
        sold_out = {"event_type": "stock_change", "item_id": "x", "stock": 0, "timestamp": NOW}
        assert client.post("/events", json=[sold_out]).status_code == 403
        view = {"event_type": "view", "user_id": "u", "session_id": "s", "item_id": "x", "timestamp": NOW}
        assert client.post("/events", json=[view]).json()["accepted"] == 1
    ray_processes = [command(pid) for pid in recorded if pid != process.pid]
    assert any("raylet" in c for c in ray_processes) and any("gcs_server" in c for c in ray_processes), ray_processes

    os.kill(process.pid, signal.SIGTERM)
    started = time.monotonic()
    try:
        code = process.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hyperrec serve did not exit within {STOP_S} s of SIGTERM:\n{log.read_text()[-3000:]}")
    stopped_s = time.monotonic() - started
    deadline = time.monotonic() + GONE_S
    while (left := alive(recorded)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert code == 0, f"exit code {code} after SIGTERM:\n{log.read_text()[-3000:]}"
    assert not left, f"left running {GONE_S} s after exit: {[command(pid) for pid in left]}"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(f"SIGTERM -> exit 0 in {stopped_s:.1f} s; {len(recorded)} processes, none left")
