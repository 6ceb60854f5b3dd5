"""The registry on disk: versions appear whole, CURRENT moves only past the promotion gate."""

import json

import pytest

from hyperrec.registry import MANIFEST, Registry, RegistryError


def publish(registry: Registry, recall: float | None, parity: bool = True) -> str:
    version, staging = registry.stage()
    (staging / "model.onnx").write_text("weights")
    metrics = {} if recall is None else {"recall@10": recall}
    registry.commit(version, staging, {"metrics": metrics, "parity": {"passed": parity}})
    return version


def test_versions_are_numbered_and_published_whole(tmp_path):
    registry = Registry(tmp_path)
    assert registry.versions() == [] and registry.current() is None
    version, staging = registry.stage()
    assert version == "v0001" and registry.versions() == []  # staging is invisible
    registry.commit(version, staging, {"metrics": {}})
    assert registry.versions() == ["v0001"]
    assert json.loads((tmp_path / "v0001" / MANIFEST).read_text())["version"] == "v0001"
    assert publish(registry, 0.1) == "v0002"


def test_promotion_gate_moves_current_and_last_good(tmp_path):
    registry = Registry(tmp_path)
    first = publish(registry, 0.30)
    assert registry.promote(first, "recall@10").promoted
    assert registry.current() == first and registry.last_good() == first

    worse = publish(registry, 0.29)
    decision = registry.promote(worse, "recall@10")
    assert not decision.promoted and "does not beat" in decision.reason and registry.current() == first

    better = publish(registry, 0.31)
    assert not registry.promote(better, "recall@10", min_delta=0.05).promoted
    assert registry.promote(better, "recall@10", min_delta=0.005).promoted
    assert (registry.current(), registry.last_good()) == (better, first)
    assert registry.resolve("last-good") == first and registry.resolve() == better and registry.resolve("latest") == better

    broken = publish(registry, 0.99, parity=False)
    assert registry.promote(broken, "recall@10").reason == "ONNX parity check failed"
    assert registry.promote(worse, "recall@10", force=True).promoted and registry.current() == worse


def test_unknown_versions_are_clear_errors(tmp_path):
    registry = Registry(tmp_path)
    with pytest.raises(RegistryError, match="no 'current' version yet"):
        registry.resolve()
    publish(registry, 0.1)
    with pytest.raises(RegistryError, match=r"no version 'v0042' \(have: v0001\)"):
        registry.resolve("v0042")
