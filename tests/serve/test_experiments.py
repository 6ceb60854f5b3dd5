"""An A/B experiment run by the endpoint's flow: sticky arms with their own policy settings, a holdout, the arm in the
answer and the audit record, and `hyperrec experiment collect` turning the audit and event logs into the logs
`hyperrec experiment analyze` reads."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from hyperrec.config import ConfigError
from hyperrec.experiment.analyze import analyze
from hyperrec.serve.experiment_logs import collect
from tests.serve.test_flow import NOW, ask, make_flow

KEY = "test-key-0123456789abcdef"
USERS = [f"u{i}" for i in range(60)]  # the tiny shop's users: the export knows them


def spec_file(tmp_path, **changes) -> str:
    spec = {
        "name": "margin_test",
        "salt": "margin_test",
        "arms": [
            {"name": "control", "model_version": "current", "share": 0.45},
            {"name": "margin", "overrides": {"policy.margin_weight": 4.0, "policy.diversity": 0.0}, "share": 0.45},
        ],
        "holdout": 0.1,
    } | changes
    path = tmp_path / "experiment.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture()
def flow(exported, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPERREC_ID_KEY", KEY)
    return make_flow(exported, tmp_path, experiment=spec_file(tmp_path))


def test_every_shopper_has_a_sticky_arm_that_serves_its_own_settings(flow, exported, tmp_path):
    arms = {user: ask(flow, user, k=6).arm for user in USERS}
    assert set(arms.values()) == {"control", "margin", "holdout"}
    assert 2 <= Counter(arms.values())["holdout"] <= 15
    assert all(ask(flow, user, k=6).arm == arm for user, arm in list(arms.items())[:20])  # sticky
    answer = ask(flow, USERS[0], k=6)
    assert answer.experiment == "margin_test"
    same = make_flow(exported, tmp_path / "same", policy={"margin_weight": 4.0, "diversity": 0.0})
    default = make_flow(exported, tmp_path / "default")
    for user, arm in arms.items():
        served = [i.item_id for i in ask(flow, user, k=6).items]
        twin = same if arm == "margin" else default  # control and holdout: the endpoint's own settings
        assert served == [i.item_id for i in ask(twin, user, k=6).items], (user, arm)


def test_shoppers_without_analytics_consent_are_in_no_arm(flow):
    user = USERS[1]
    result = flow.ingest(
        [{"event_type": "consent", "user_id": user, "session_id": "s", "purpose": "analytics", "granted": False, "timestamp": NOW}]
    )
    assert result.accepted == 1, result
    answer = ask(flow, user, k=6)
    assert answer.arm is None and answer.experiment == "margin_test" and answer.served_by == "ranker"


def test_an_arm_may_change_only_policy_settings(exported, tmp_path):
    bad = spec_file(
        tmp_path,
        arms=[
            {"name": "a", "model_version": "current", "share": 0.5},
            {"name": "b", "overrides": {"ranking.max_batch_size": 4}, "share": 0.5},
        ],
        holdout=0.0,
    )
    with pytest.raises(ConfigError, match=r"arms\.1\.overrides: 'ranking.max_batch_size' is not a policy setting"):
        make_flow(exported, tmp_path, experiment=bad)
    wrong = spec_file(
        tmp_path,
        arms=[{"name": "a", "model_version": "current", "share": 0.5}, {"name": "b", "overrides": {"policy.diversity": 3}, "share": 0.5}],
        holdout=0.0,
    )
    with pytest.raises(ConfigError, match=r"(?s)arms\.1\.overrides.*diversity"):
        make_flow(exported, tmp_path, experiment=wrong)
    with pytest.raises(ConfigError, match="share"):
        make_flow(exported, tmp_path, experiment=spec_file(tmp_path, holdout=0.3))


def test_collect_turns_the_endpoints_logs_into_an_analyzable_experiment(flow, tmp_path):
    shown = {}
    for user in USERS:
        answer = ask(flow, user, k=6, session_id=f"s-{user}")
        shown[user] = answer.items[0].item_id
    later = (datetime.now(UTC) + timedelta(seconds=5)).isoformat()  # after the answers: credited to their slates
    events = []
    for n, user in enumerate(USERS[:40]):
        item = shown[user]
        events.append({"event_type": "click", "user_id": user, "session_id": f"s-{user}", "item_id": item, "timestamp": later})
        if n % 2 == 0:
            events.append(
                {"event_type": "purchase", "user_id": user, "session_id": f"s-{user}", "item_id": item, "timestamp": later}
                | {"order_id": f"o-{user}", "price": 10.0, "quantity": 2}
            )
    assert flow.ingest(events).accepted == len(events)
    flow.close()  # the audit records queued so far are written
    spec, exposures, outcomes = collect(flow.config, tmp_path / "logs", attribution_s=10 * 365 * 86_400.0)
    assert spec.name == "margin_test" and exposures == len(USERS) and outcomes == len(events)
    result = analyze(tmp_path / "logs", "margin_test", tmp_path / "results", pre_days=1.0)
    assert set(result.arms.index) >= {"control", "margin"}
    revenue = result.arms["revenue_per_unit"]
    assert revenue.sum() > 0 and result.arms["ctr"].max() > 0  # clicks and purchases were credited to their slates
