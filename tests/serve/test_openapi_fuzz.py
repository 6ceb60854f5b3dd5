"""schemathesis over the real endpoint's OpenAPI document, every check, a short budget: no 5xx, and every
answer (status, content type, body) is one the document declares.

It runs with the admin token, so the admin calls are fuzzed past authentication as well (schemathesis
also sends them without it and with a wrong one, and expects 401 / 403).
"""

import os

import pytest

from hyperrec.bench.fuzz import ST, run_schemathesis
from hyperrec.serve.config import ServeConfig
from tests.conftest import SERVE_PORT

TOKEN_ENV = "HYPERREC_TEST_FUZZ_ADMIN_TOKEN"
TOKEN = "fuzz-admin-token-0123456789abcdef"


@pytest.fixture(scope="module")
def url(ray_cluster, exported, tmp_path_factory):
    if not ST.exists():
        pytest.skip(f"schemathesis is not installed ({ST} missing): `make setup` installs it into .venv-schemathesis")
    from hyperrec.serve.runner import start, stop

    config = ServeConfig(
        registry=exported.path.parent,
        version=exported.version,
        port=SERVE_PORT,
        event_log=tmp_path_factory.mktemp("fuzz") / "log",
        admin={"token_env": TOKEN_ENV, "catalog_token_env": TOKEN_ENV + "_CATALOG"},
    )
    os.environ[TOKEN_ENV] = TOKEN
    try:
        yield start(config)
    finally:
        os.environ.pop(TOKEN_ENV, None)
        stop()


def test_schemathesis_finds_nothing(url, tmp_path):
    report = run_schemathesis(url, max_examples=15, workdir=tmp_path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout_s=240)
    assert report.cases > 100, report.output[-3000:]  # every operation was exercised, not only loaded
    assert set(report.operations) == {
        "POST /recommend",
        "POST /events",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /admin/model",
        "POST /admin/faults",
        "POST /admin/erase",
        "POST /admin/canary",
        "POST /admin/canary/stop",
    }
    assert report.server_errors == 0 and report.failures == 0 and report.returncode == 0, report.summary()
    assert {401, 403} <= set(report.operations["POST /admin/model"].statuses)  # it tried without the token and with a wrong one
