"""Start and stop the Ray Serve application (used by `hyperrec serve`, the demo and the tests)."""

from __future__ import annotations

import logging
import signal
import threading
import time

import httpx
import ray
from ray import serve

from hyperrec.logs import init_ray
from hyperrec.serve.app import QUIET_LOGS, build_app
from hyperrec.serve.config import ServeConfig
from hyperrec.serve.ray_env import PROXY_PORT_OFFSET, prepare_environment

APP_NAME = "hyperrec"
STOP = threading.Event()  # set by SIGINT / SIGTERM once handle_stop_signals() ran


def handle_stop_signals() -> None:
    """SIGINT and SIGTERM set STOP. Must run after ray.init: Ray's own handler (installed there) dumps a stack
    on SIGTERM and aborts the process (exit code 134) instead."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: STOP.set())


def start(config: ServeConfig, num_cpus: int | None = None, timeout_s: float = 120.0, handle_signals: bool = False) -> str:
    """Deploy the app (starting a local Ray if none is running); returns its base URL once /readyz answers.

    `handle_signals`: from the moment Ray is up, SIGINT / SIGTERM set STOP (for `wait_then_stop`), so a
    supervisor's SIGTERM sent as soon as /readyz answers, or during the start, still stops cleanly."""
    prepare_environment(config)
    app = build_app(config)  # before Ray starts: a bad token is an error that costs no cluster start
    logging.getLogger("ray.serve").setLevel(logging.WARNING)  # its "ready at" line names Serve's own port, not ours
    if not ray.is_initialized():
        init_ray(num_cpus=num_cpus, include_dashboard=False)
    if handle_signals:
        handle_stop_signals()
    # Direct ingress: the ingress replica binds `port` itself; Serve still reserves its own HTTP
    # port (a bind there fails the replica), so that one is moved out of the way.
    http_port = config.port + PROXY_PORT_OFFSET if config.ingress == "direct" else config.port
    serve.start(http_options={"host": config.host, "port": http_port}, logging_config=QUIET_LOGS)
    serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
    url = f"http://{config.host}:{config.port}"
    deadline = time.time() + timeout_s
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2.0).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        if time.time() > deadline:
            raise TimeoutError(f"{url}/readyz did not answer within {timeout_s:.0f} s (see `ray status` and the Serve logs under /tmp/ray)")
        time.sleep(0.25)


def stop() -> None:
    serve.shutdown()


def wait_then_stop() -> None:
    """Block while the endpoint serves, until Ctrl-C or SIGTERM (what systemd, Docker and Kubernetes
    send; a server started in the background from a script ignores SIGINT); then shut the app and the
    local Ray cluster this process started down, so that no Ray process outlives it."""
    handle_stop_signals()  # again: a no-op after start(..., handle_signals=True)
    try:
        while not STOP.wait(1.0):
            pass
    finally:
        stop()
        ray.shutdown()
