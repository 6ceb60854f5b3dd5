"""A free TCP port on this machine, for the servers hyperrec starts itself (Redis, Triton, a local Ray cluster's GCS)."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick; another process could still take it before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
