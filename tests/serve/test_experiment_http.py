"""An experiment run by a real `hyperrec serve` over HTTP: every answer names the experiment and the shopper's sticky arm,
and each arm's answer is the one the in-process flow gives that shopper in that experiment (so the arms serve their own
settings over HTTP too: tests/serve/test_experiments.py checks those against single-setting twins)."""

from __future__ import annotations

from pathlib import Path

import httpx

from hyperrec.experiment.assignment import assign, load_spec, unit_key
from tests.serve.conftest import serve_process
from tests.serve.test_experiments import USERS, spec_file
from tests.serve.test_flow import ask, make_flow

GENEROUS = ("budgets.retrieval_ms=3000", "budgets.ranking_ms=3000")  # arms are under test here, not latency on loaded cores


def test_a_served_experiment_answers_sticky_arms_over_http(exported, tmp_path):
    spec = spec_file(tmp_path)
    flow = make_flow(exported, tmp_path / "in_process", experiment=spec)
    expected = load_spec(Path(spec))
    with (
        serve_process(exported, tmp_path, f"experiment={spec}", *GENEROUS) as (_, url, _, _),
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        arms = set()
        for user in USERS:
            first, again = (client.post("/recommend", json={"user_id": user, "k": 6}).json() for _ in range(2))
            assert first["experiment"] == "margin_test"
            assert first["arm"] == again["arm"] == assign(expected, unit_key(user, None))  # sticky, the spec's hash
            twin = ask(flow, user, k=6)
            assert first["served_by"] == twin.served_by and not first["degraded"]  # a shopper with no history: popularity
            assert [i["item_id"] for i in first["items"]] == [i.item_id for i in twin.items], (user, first["arm"])
            arms.add(first["arm"])
        assert arms == {"control", "margin", "holdout"}
