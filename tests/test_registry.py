"""The registry on disk: versions appear whole, CURRENT moves only past the promotion gate."""

import json

import pytest

from hyperrec.bundle.manifest import MANIFEST, BundleError, Manifest, ParityCheck
from hyperrec.registry import Registry, RegistryError


def manifest(recall: float | None = None, parity: bool = True) -> Manifest:
    check = ParityCheck(max_abs_error=1e-7 if parity else 1.0, tolerance=1e-4, cases=1, passed=parity)
    metrics = {} if recall is None else {"recall@10": recall}
    return Manifest(
        model_kind="sasrec",
        max_len=4,
        dim=2,
        n_items=3,
        encoder_inputs=["items"],
        feature_names=["f"],
        metrics=metrics,
        parity={"encoder": check},
        export_seconds=0.0,
    )


def publish(registry: Registry, recall: float | None, parity: bool = True) -> str:
    version, staging = registry.stage()
    (staging / "model.onnx").write_text("weights")
    registry.commit(version, staging, manifest(recall, parity))
    return version


def test_versions_are_numbered_and_published_whole(tmp_path):
    registry = Registry(tmp_path)
    assert registry.versions() == [] and registry.current() is None
    version, staging = registry.stage()
    assert version == "v0001" and registry.versions() == []  # staging is invisible
    registry.commit(version, staging, manifest())
    assert registry.versions() == ["v0001"]
    assert json.loads((tmp_path / "v0001" / MANIFEST).read_text())["version"] == "v0001"
    assert registry.manifest("v0001") == manifest().model_copy(update={"version": "v0001", "created": registry.manifest("v0001").created})
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


def test_a_schema_1_manifest_is_upgraded_when_read(tmp_path):
    """Versions exported before the typed manifest (no schema_version, the parity verdict beside the checks) still load."""
    old = manifest(0.3).model_dump(mode="json", exclude={"schema_version", "trained"})
    old["parity"] = {"passed": True, "tolerance": 1e-4, "encoder": old["parity"]["encoder"]}
    (tmp_path / "v0001").mkdir()
    (tmp_path / "v0001" / MANIFEST).write_text(json.dumps(old))
    loaded = Registry(tmp_path).manifest("v0001")
    assert (
        loaded.schema_version == 2 and list(loaded.parity) == ["encoder"] and loaded.parity_passed and loaded.metrics == {"recall@10": 0.3}
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"schema_version": 9}, r"v0001: manifest schema 9, this hyperrec reads 2; .*hyperrec export"),
        ({"max_len": "long"}, r"v0001: .*manifest.json field 'max_len': .*hyperrec export"),
        ({"surprise": 1}, r"v0001: .*field 'surprise': Extra inputs are not permitted"),
    ],
)
def test_an_unreadable_manifest_names_the_version_and_what_to_do(tmp_path, change, message):
    (tmp_path / "v0001").mkdir()
    (tmp_path / "v0001" / MANIFEST).write_text(json.dumps(manifest().model_dump(mode="json") | change))
    with pytest.raises(BundleError, match=message):
        Registry(tmp_path).manifest("v0001")
