"""The same simulation through a running HTTP endpoint (Ray Serve, direct ingress): `mode: http`."""

from __future__ import annotations

import pytest

from hyperrec.data.offline_store import OfflineStore
from hyperrec.experiment.records import log_files, read_log
from hyperrec.serve.config import ServeConfig
from hyperrec.sim.run import simulate
from tests.conftest import SERVE_PORT
from tests.sim.conftest import tiny_config


@pytest.fixture(scope="module")
def endpoint(ray_cluster, exported, tmp_path_factory):
    from hyperrec.serve.runner import start, stop

    log = tmp_path_factory.mktemp("served") / "log"
    config = ServeConfig.model_validate(
        {"registry": str(exported.path.parent), "version": exported.version, "port": SERVE_PORT, "event_log": str(log)}
    )
    yield start(config), log
    stop()


def test_a_short_run_over_http_shops_through_the_endpoint(endpoint, exported, tmp_path):
    url, served_log = endpoint
    arms = [{"name": "a", "share": 0.5, "url": url}, {"name": "b", "share": 0.5, "url": url}]
    shop = {"n_users": 600, "n_items": 200, "n_categories": 5, "sessions_per_user": 10, "days": 90, "seed": 0}
    config = tiny_config(exported, tmp_path / "logs", arms, shop=shop, history_days=85, pre_days=3, days=2, mode="http")
    result = simulate(config, show_progress=False)
    exposures, outcomes = (read_log(files, kind) for files, kind in zip(log_files(config.logs, config.name), ["exposures", "outcomes"]))
    assert set(exposures["arm"]) == {"a", "b"} and set(exposures["model_version"]) == {exported.version}
    assert exposures["trace_id"].is_unique and result.arms["sessions"].sum() == len(exposures)
    # every purchase of the run (organic and from slates) reached the endpoint's event log
    served = OfflineStore(served_log).read(["purchase"])
    assert len(served) == (outcomes["event"] == "purchase").sum() > 0
