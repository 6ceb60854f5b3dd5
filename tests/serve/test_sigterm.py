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
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

HYPERREC = Path(sys.executable).parent / "hyperrec"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC).isoformat()
START_S, STOP_S, GONE_S = 300, 60, 10


def _stat(pid: int) -> tuple[int, int, int, int] | None:
    """(parent, process group, session, start time) of a live process, from /proc; None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    if fields[0] == "Z":  # a zombie has exited
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])


def _processes() -> dict[int, tuple[int, int, int, int]]:
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            found[int(entry.name)] = stat
    return found


def _family(leader: int) -> dict[int, int]:
    """pid -> start time of every live process of `leader`'s session or group, or descended from it."""
    table = _processes()
    family = {pid for pid, (_, group, session, _) in table.items() if leader in (group, session)} | {leader}
    grew = True
    while grew:
        children = {pid for pid, (parent, *_) in table.items() if parent in family} - family
        family |= children
        grew = bool(children)
    return {pid: table[pid][3] for pid in family if pid in table}


def _alive(recorded: dict[int, int]) -> list[int]:
    """The recorded processes still running (the same ones: same start time, not a reused pid)."""
    return [pid for pid, started in recorded.items() if (stat := _stat(pid)) is not None and stat[3] == started]


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
    except OSError:
        return "?"


@pytest.fixture()
def server(exported, tmp_path):
    """A `hyperrec serve` subprocess, ready; yields (process, base URL, recorded processes, log path)."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERREC_"))}  # its own cluster, no token
    command = [str(HYPERREC), "serve", "--registry", str(exported.path.parent), "--port", str(port), f"event_log={tmp_path / 'log'}"]
    with log.open("wb") as out:
        # `trap '' INT` then exec: SIGINT stays ignored in the server, as in a background job of a script.
        process = subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=tmp_path,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    recorded: dict[int, int] = {}
    try:
        deadline = time.monotonic() + START_S
        while time.monotonic() < deadline and process.poll() is None:
            recorded |= _family(process.pid)
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"hyperrec serve was not ready within {START_S} s (exit code {process.poll()}):\n{log.read_text()[-3000:]}")
        recorded |= _family(process.pid)
        yield process, url, recorded, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        recorded |= _family(process.pid)
        for pid in _alive(recorded):
            os.kill(pid, signal.SIGKILL)


def test_sigterm_exits_0_and_leaves_no_process(server):
    process, url, recorded, log = server
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.post("/admin/model", json={"version": "latest"}).status_code == 404  # no admin token: admin calls off
        sold_out = {"event_type": "stock_change", "item_id": "x", "stock": 0, "timestamp": NOW}
        assert client.post("/events", json=[sold_out]).status_code == 403
        view = {"event_type": "view", "user_id": "u", "session_id": "s", "item_id": "x", "timestamp": NOW}
        assert client.post("/events", json=[view]).json()["accepted"] == 1
    ray_processes = [_command(pid) for pid in recorded if pid != process.pid]
    assert any("raylet" in c for c in ray_processes) and any("gcs_server" in c for c in ray_processes), ray_processes

    os.kill(process.pid, signal.SIGTERM)
    started = time.monotonic()
    try:
        code = process.wait(timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hyperrec serve did not exit within {STOP_S} s of SIGTERM:\n{log.read_text()[-3000:]}")
    stopped_s = time.monotonic() - started
    deadline = time.monotonic() + GONE_S
    while (left := _alive(recorded)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert code == 0, f"exit code {code} after SIGTERM:\n{log.read_text()[-3000:]}"
    assert not left, f"left running {GONE_S} s after exit: {[_command(pid) for pid in left]}"
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    print(f"SIGTERM -> exit 0 in {stopped_s:.1f} s; {len(recorded)} processes, none left")
