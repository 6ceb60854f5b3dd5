"""Arms and sticky assignment: stable per unit, shares within binomial tolerance, independent across
salts, and config errors that name the field."""

import numpy as np
import pytest

from hyperrec.config import ConfigError
from hyperrec.experiment.assignment import HOLDOUT, ExperimentSpec, assign, assign_many, load_spec, unit_key

IDS = [f"user:{i}" for i in range(100_000)]


def spec(**changes) -> ExperimentSpec:
    raw = {
        "name": "margin_weight",
        "salt": "2024-06-a",
        "arms": [
            {"name": "control", "model_version": "v0003", "share": 0.45},
            {"name": "margin", "overrides": {"policy.margin_weight": 0.3}, "share": 0.45},
        ],
        "holdout": 0.1,
    } | changes
    return ExperimentSpec.model_validate(raw)


def test_assignment_is_sticky_and_keyed_by_user_else_session():
    s = spec()
    assert all(assign(s, key) == assign(s, key) for key in IDS[:1000])
    assert list(assign_many(s, IDS[:1000])) == [assign(s, key) for key in IDS[:1000]]
    assert unit_key("u1", "s1") == "user:u1" and unit_key(None, "s1") == "session:s1"
    with pytest.raises(ValueError, match="user_id or a session_id"):
        unit_key(None, None)


def test_shares_within_binomial_tolerance():
    s = spec()
    groups = assign_many(s, IDS)
    for name, share in {"control": 0.45, "margin": 0.45, HOLDOUT: 0.1}.items():
        observed = np.mean(groups == name)
        assert abs(observed - share) <= 4 * np.sqrt(share * (1 - share) / len(IDS)), (name, observed)


def test_experiments_with_different_salts_are_independent():
    first = assign_many(spec(), IDS) == "margin"
    second = assign_many(spec(salt="2024-06-b"), IDS) == "margin"
    both = np.mean(first & second)
    assert abs(both - first.mean() * second.mean()) <= 4 * np.sqrt(0.45**2 * (1 - 0.45**2) / len(IDS))
    assert abs(np.corrcoef(first, second)[0, 1]) < 0.015


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"holdout": 0.0}, r"arms.\*.share \+ holdout must sum to 1, got control 0.45 \+ margin 0.45 \+ holdout 0 = 0.9"),
        (
            {"arms": [{"name": "a", "share": 0.5}, {"name": "b", "model_version": "v1", "share": 0.4}]},
            r"arms.0 \(a\): needs a model_version or policy",
        ),
        (
            {"arms": [{"name": "a", "model_version": "v1", "share": 0.45}, {"name": "a", "model_version": "v2", "share": 0.45}]},
            r"arms: names must be unique, \['a'\]",
        ),
        ({"control": "nope"}, r"control: 'nope' is not an arm"),
        ({"arms": [{"name": "a", "model_version": "v1", "share": 0.9}]}, r"arms"),
    ],
)
def test_config_errors_name_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        spec(**changes)


def test_yaml_errors_name_the_file_and_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text(
        "name: x\nsalt: s\narms:\n  - {name: a, model_version: v1, share: 0.5}\n  - {name: b, model_version: v2, share: 0.5, colour: red}\n"
    )
    with pytest.raises(ConfigError, match=r"(?s)exp.yaml.*unknown key 'arms.1.colour'"):
        load_spec(path)
    path.write_text("name: x\nsalt: s\narms:\n  - {name: a, model_version: v1, share: 0.5}\n  - {name: b, model_version: v2, share: 0.5}\n")
    assert load_spec(path).control_arm == "a"
