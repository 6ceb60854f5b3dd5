"""`hyperrec export`: ONNX with parity, the served ranker, offline metrics, Triton repository, registry."""

import numpy as np
import onnxruntime as ort

from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.cli import main
from hyperrec.registry import Registry


def test_export_writes_a_complete_checked_version(exported):
    path, m = exported.path, exported.manifest
    for name in (
        "encoder.onnx",
        "ranker.onnx",
        "item_vectors.npy",
        "item_index.faiss",
        "items.parquet",
        "user_baskets.parquet",
        "manifest.json",
    ):
        assert (path / name).is_file(), name
    for stage in ("encoder", "ranker"):
        assert m.parity[stage].passed and m.parity[stage].max_abs_error <= 1e-4
    assert m.feature_names == list(FEATURE_NAMES) and m.n_items == len(ItemTable.load(path / "items.parquet"))
    vectors = np.load(path / "item_vectors.npy")
    assert vectors.shape == (m.n_items, m.dim)
    # ONNX files take any batch (and sequence length) and give the declared shapes
    encoder = ort.InferenceSession(str(path / "encoder.onnx"))
    assert encoder.run(None, {"items": np.zeros((3, 5), np.int64)})[0].shape == (3, m.dim)
    ranker = ort.InferenceSession(str(path / "ranker.onnx"))
    assert ranker.run(None, {"features": np.zeros((7, len(FEATURE_NAMES)), np.float32)})[0].shape == (7,)
    # full-ranking metrics of the served path, next to the encoder alone and the run's own test numbers
    for metrics in (m.metrics, m.retrieval_only_metrics):
        assert 0 < metrics["recall@10"] <= 1
    # the encoder alone ranks like the trained model, except that serving never proposes items out of stock
    assert abs(m.retrieval_only_metrics["recall@10"] - m.run_test_metrics["recall@10"]) < 0.05
    assert exported.promotion.promoted and Registry(path.parent).current() == exported.version


def test_triton_repository_holds_the_same_onnx_files(exported):
    repo = exported.path / "triton"
    for model in ("encoder", "ranker"):
        assert (repo / model / "config.pbtxt").is_file()
        assert (repo / model / "1" / "model.onnx").read_bytes() == (exported.path / f"{model}.onnx").read_bytes()
    assert "KIND_CPU" in (repo / "ranker" / "config.pbtxt").read_text()


def test_cli_export_respects_the_promotion_gate(exported, capsys):
    registry = exported.path.parent
    run = exported.manifest.source_run
    before = Registry(registry).versions()
    code = main(["export", run, "cutoffs=2", "ranker.epochs=1", "min_delta=1.0", "--registry", str(registry)])
    out = capsys.readouterr().out
    assert code == 0 and "not promoted" in out and "ONNX parity" in out
    versions = Registry(registry).versions()
    assert len(versions) == len(before) + 1 and Registry(registry).current() == exported.version
    assert Registry(registry).manifest(versions[-1]).parity_passed


def test_cli_export_of_a_missing_run_is_a_clear_error(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--registry", str(tmp_path / "reg")]) == 2
    assert "nope" in capsys.readouterr().err


def test_serving_loads_the_saved_index_when_its_settings_match(exported):
    from hyperrec.bundle.manifest import IndexSettings
    from hyperrec.bundle.retrieval import RetrievalConfig
    from hyperrec.bundle.store import ModelRuntime, load

    bundle = load(exported.path)
    saved = bundle.retrieval(RetrievalConfig(), ModelRuntime())
    assert saved.index.ntotal == exported.manifest.n_items and exported.manifest.index == IndexSettings(index="auto", ann_threshold=100_000)
    rebuilt = bundle.retrieval(RetrievalConfig(index="ivf"), ModelRuntime())
    assert type(rebuilt.index).__name__ == "IndexIVFFlat" and type(saved.index).__name__ == "IndexFlatIP"
