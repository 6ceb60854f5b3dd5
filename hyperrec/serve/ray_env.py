"""Ray Serve settings that Ray reads from the environment once, when it is imported and started.

`ingress: direct` makes the ingress replica itself listen on the configured port, with no Serve
proxy in front (Ray Serve's direct-ingress mode): one process hop less per request. Measured on a
2-core machine, a trivial endpoint at 200 requests/s: p50 18 ms / p99 58 ms through the proxy,
2.0 ms / 4.7 ms direct.

`user_code_thread: false` runs the handlers on the replica's own event loop, the one where direct
ingress parses HTTP (Ray Serve's RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD=0, part of its
throughput-optimized mode). With Serve's default each request crosses from that loop to the
handlers' loop on another thread and back, and under load each crossing waits for the GIL. Measured
on the Instacart export at 200 requests/s (2 cores, load generator in its own process): p99 207-220
ms and 67-70% of a core in the replica with the separate thread, 16-81 ms and 51-59% without.

The variables must be set before `ray.serve` is imported and before the
local Ray cluster starts, so `prepare_environment` runs first in every entry point that serves.
"""

from __future__ import annotations

import os
import socket
import sys

from hyperrec.serve.config import ServeConfig

GRPC_PORT_OFFSET = 1000  # direct ingress also opens a gRPC port per ingress replica
PROXY_PORT_OFFSET = 2000  # Serve's own HTTP port, unused with direct ingress but still bound


def serve_environment(config: ServeConfig) -> dict[str, str]:
    threads = {"RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "1" if config.user_code_thread else "0"}
    if config.ingress != "direct":
        return threads | {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0"}
    http, grpc = config.port, config.port + GRPC_PORT_OFFSET
    return threads | {
        "RAY_SERVE_ENABLE_DIRECT_INGRESS": "1",
        "RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(http),
        "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(http + config.ingress_replicas),
        "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc),
        "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc + config.ingress_replicas),
        "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": str(config.ingress_drain_s),
        # Serve holds a dead replica's port out of use for 150 s (for HAProxy's stale server lists, unused
        # here): the replica Serve starts in its place could not take the endpoint's port back, and the
        # endpoint stayed down (benchmarks/faults_under_load.py, "ingress replica killed").
        "RAY_SERVE_PORT_QUARANTINE_S": "0",
    }


def prepare_environment(config: ServeConfig) -> None:
    """Export the settings; raise if Ray Serve was already imported with different ones."""
    constants = sys.modules.get("ray.serve._private.constants")
    if constants is not None:
        direct = config.ingress == "direct"
        if (
            constants.RAY_SERVE_ENABLE_DIRECT_INGRESS != direct
            or constants.RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD != config.user_code_thread
            or (direct and constants.RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT != config.port)
        ):
            raise RuntimeError(
                f"Ray Serve was imported before its settings for ingress={config.ingress} port={config.port} "
                f"user_code_thread={config.user_code_thread}; call "
                "prepare_environment(config) first"
            )
    os.environ.update(serve_environment(config))


class _ReusableAddressSockets:
    """The `socket` module as Ray Serve's HTTP server code sees it, except that a socket it makes has SO_REUSEADDR."""

    def __getattr__(self, name: str):
        return getattr(socket, name)

    @staticmethod
    def socket(*args, **kwargs) -> socket.socket:
        made = socket.socket(*args, **kwargs)
        made.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return made


def reuse_listening_address() -> None:
    """Let a replica bind its port while the connections of the replica before it linger in TIME_WAIT.

    Ray Serve 2.60's direct-ingress HTTP server binds without SO_REUSEADDR (uvicorn, left to itself, sets
    it). A server that closed its side of a connection first (killed, stopped, or answering a
    `Connection: close` client) leaves the port in TIME_WAIT for a minute, and a replica started
    meanwhile on it (Serve replacing a dead replica, a restart) failed to bind: Serve gave up and
    the endpoint stayed down (benchmarks/faults_under_load.py, tests/serve/test_restart.py). Run in
    the replica process before its HTTP server starts (the ingress's __init__ runs first).
    """
    from ray.serve._private import http_util

    if not isinstance(http_util.socket, _ReusableAddressSockets):
        http_util.socket = _ReusableAddressSockets()  # type: ignore[assignment]
