"""A server started right after another one stopped takes the same port back: the stopped one closed its
connections first (it always does for `Connection: close` clients, such as urllib), which leaves the port
in TIME_WAIT for a minute, and Ray Serve's own HTTP server binds without SO_REUSEADDR
(`hyperrec.serve.ray_env.reuse_listening_address`; before it, the second start failed to bind)."""

import json
import urllib.request

from hyperrec.serve.config import ServeConfig
from tests.conftest import SERVE_PORT


def answer(url: str, user: str) -> dict:
    body = json.dumps({"user_id": user, "k": 3}).encode()
    request = urllib.request.Request(f"{url}/recommend", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:  # urllib sends `Connection: close`
        return json.loads(response.read())


def test_a_restarted_server_takes_its_port_back_at_once(ray_cluster, exported, tmp_path):
    from hyperrec.serve.runner import start, stop

    config = ServeConfig(registry=exported.path.parent, version=exported.version, port=SERVE_PORT, event_log=tmp_path / "log")
    for _ in range(2):
        url = start(config)
        try:
            assert [answer(url, f"restart-{i}")["model_version"] for i in range(3)] == [exported.version] * 3
        finally:
            stop()
