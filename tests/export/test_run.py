"""`hyperrec export`: ONNX with parity, the served ranker, offline metrics, Triton repository, registry."""

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from hyperrec.bundle.features import FEATURE_NAMES, ItemTable
from hyperrec.bundle.onnx_models import OnnxScorer
from hyperrec.bundle.retrieval import Retrieval
from hyperrec.bundle.store import load
from hyperrec.cli import main
from hyperrec.export.served_ranker import ranked_lists
from hyperrec.registry import Registry


def test_export_writes_a_complete_checked_version(exported):
    from hyperrec.bundle.onnx_models import OnnxEncoder
    from hyperrec.export.run import load_source
    from hyperrec.models.item_index import load_index

    path, m = exported.path, exported.manifest
    assert Registry(path.parent).manifest(exported.version) == m  # manifest.json reads back as what export returned
    for stage in ("encoder", "ranker"):
        assert m.parity[stage].passed and m.parity[stage].max_abs_error <= 1e-4
    assert m.feature_names == list(FEATURE_NAMES)
    source = load_source(Path(m.source_run))
    split, catalog = source.split, source.dataset.catalog
    assert m.n_items == len(catalog)
    # items.parquet is the item table of the whole history; user_baskets.parquet each user's baskets
    saved, expected = ItemTable.load(path / "items.parquet"), ItemTable.from_history(split.full, catalog)
    for field in ("item_ids", "popularity", "trend", "repeat_rate", "category", "price", "margin", "in_stock"):
        np.testing.assert_array_equal(getattr(saved, field), getattr(expected, field), err_msg=field)
    seeded = load(path).user_baskets()
    assert sorted(seeded) == sorted(str(u) for u in split.user_ids)
    for u, user_id in enumerate(split.user_ids):
        assert [b.tolist() for b in seeded[str(user_id)]] == [b.tolist() for b in split.full.baskets[u]]
    # the item vectors and the saved index: exact inner-product search over them
    vectors = np.load(path / "item_vectors.npy")
    assert vectors.shape == (m.n_items, m.dim)
    index = load_index(path / "item_index.faiss")
    _, found = index.search(vectors[:5], 3)
    np.testing.assert_array_equal(found, np.argsort(-(vectors[:5] @ vectors.T), axis=1, kind="stable")[:, :3])
    # ONNX files take any batch (and sequence length) and give the declared shapes
    encoder = ort.InferenceSession(str(path / "encoder.onnx"))
    assert encoder.run(None, {"items": np.zeros((3, 5), np.int64)})[0].shape == (3, m.dim)
    ranker = ort.InferenceSession(str(path / "ranker.onnx"))
    assert ranker.run(None, {"features": np.zeros((7, len(FEATURE_NAMES)), np.float32)})[0].shape == (7,)
    # the manifest's served-path metrics, recomputed from the written files: the saved encoder, index and
    # ranker over the test history's item table, recall@10 counted by hand
    test_items = ItemTable.from_history(split.test.history, catalog)
    retrieval = Retrieval(OnnxEncoder(path / "encoder.onnx", m.max_len), vectors, test_items, m.retrieval, index=index)
    for scorer, metrics in ((OnnxScorer(path / "ranker.onnx"), m.metrics), (None, m.retrieval_only_metrics)):
        lists = ranked_lists(retrieval, scorer, split.test, 10)
        recall = np.mean([np.isin(row, target).sum() / len(target) for row, target in zip(lists, split.test.targets)])
        assert metrics["recall@10"] == pytest.approx(recall, abs=1e-9)
    per_user = pd.read_csv(path / "served_per_user.csv.gz")
    assert per_user["user"].tolist() == split.test.users.tolist()
    assert per_user["recall@10"].mean() == pytest.approx(m.metrics["recall@10"])
    # the encoder alone ranks like the trained model, except that serving never proposes items out of stock
    assert abs(m.retrieval_only_metrics["recall@10"] - m.run_test_metrics["recall@10"]) < 0.05
    assert exported.promotion.promoted and Registry(path.parent).current() == exported.version


def test_triton_repository_holds_the_same_onnx_files(exported):
    repo = exported.path / "triton"
    for model in ("encoder", "ranker"):
        config = (repo / model / "config.pbtxt").read_text()
        assert config.startswith(f'name: "{model}"\nplatform: "onnxruntime_onnx"\nbackend: "onnxruntime"\n')
        assert "dynamic_batching" in config and "KIND_CPU" in config and "KIND_GPU" not in config
        assert (repo / model / "1" / "model.onnx").read_bytes() == (exported.path / f"{model}.onnx").read_bytes()
    assert 'name: "features"' in (repo / "ranker" / "config.pbtxt").read_text()


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


def test_cli_export_of_a_ranker_without_the_encoders_features(exported, tmp_path, capsys):
    """`ranker_without`: the served ranker still takes every served feature, and reads all but those."""
    registry, run = tmp_path / "registry", exported.manifest.source_run
    options = ["cutoffs=2", "ranker.epochs=1", "ranker_without=[ann_score,ann_inv_rank]", "--registry", str(registry)]
    assert main(["export", run, *options]) == 0
    manifest = Registry(registry).manifest("v0001")
    assert manifest.ranker_without == ["ann_score", "ann_inv_rank"] and manifest.parity_passed
    assert manifest.feature_names == list(FEATURE_NAMES)
    scorer = OnnxScorer(registry / "v0001" / "ranker.onnx")
    features = np.random.default_rng(0).normal(size=(32, len(FEATURE_NAMES))).astype(np.float32)
    moved = features.copy()
    moved[:, [FEATURE_NAMES.index("ann_score"), FEATURE_NAMES.index("ann_inv_rank")]] += 5.0
    np.testing.assert_array_equal(scorer(moved), scorer(features))
    moved[:, FEATURE_NAMES.index("log_count")] += 5.0
    assert not np.allclose(scorer(moved), scorer(features))
    capsys.readouterr()
    assert main(["export", run, "ranker_without=[ann_scor]", "--registry", str(registry)]) == 2
    err = capsys.readouterr().err
    assert "ranker_without" in err and "ann_scor" in err and "the served features are" in err


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


def test_export_stores_the_rankers_drift_reference(exported):
    """What the served ranker will see (serving's candidates for the export's shoppers) and its scores: the
    drift monitors' reference (its own sample is not a shift; the same candidates scored 3 higher are one,
    in the score column only)."""
    from hyperrec.bundle.store import load

    reference = load(exported.path).drift_reference()
    assert reference.names == [*FEATURE_NAMES, "score"]
    assert reference.compare(reference.sample).shifted == []
    moved = reference.sample.copy()
    moved[:, -1] += 3.0
    assert reference.compare(moved).shifted == ["score"]
