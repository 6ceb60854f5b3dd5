"""The Triton model repository writer: folder layout, and config.pbtxt parsed as Triton's own ModelConfig."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from hyperrec.export.triton_repo import write_model_repository


def two_tower_like(path: Path, batch_axis: str | int = "batch", external: bool = False) -> Path:
    """items [batch, length] int64 + device [batch] int64 -> user_vector [batch, 4] float (mean item embedding + device embedding)."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(size=(51, 4)).astype(np.float32), "item_table"),
        numpy_helper.from_array(rng.normal(size=(4, 4)).astype(np.float32), "device_table"),
    ]
    nodes = [
        helper.make_node("Gather", ["item_table", "items"], ["embedded"]),
        helper.make_node("ReduceMean", ["embedded"], ["pooled"], axes=[1], keepdims=0),
        helper.make_node("Gather", ["device_table", "device"], ["device_vector"]),
        helper.make_node("Add", ["pooled", "device_vector"], ["user_vector"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_tower_like",
        [
            helper.make_tensor_value_info("items", TensorProto.INT64, [batch_axis, "length"]),
            helper.make_tensor_value_info("device", TensorProto.INT64, [batch_axis]),
        ],
        [helper.make_tensor_value_info("user_vector", TensorProto.FLOAT, [batch_axis, 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path), save_as_external_data=external, location=f"{path.name}.data", size_threshold=0)
    return path


def ranker_like(path: Path) -> Path:
    """features [batch, 3] float -> scores [batch] float."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["features"], ["scores"], axes=[1], keepdims=0)],
        "ranker_like",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch"])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(path))
    return path


def read_config(folder: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


@pytest.fixture()
def models(tmp_path) -> dict[str, Path]:
    return {"encoder": two_tower_like(tmp_path / "encoder.onnx"), "ranker": ranker_like(tmp_path / "ranker.onnx")}


def test_layout_one_folder_per_model_with_the_onnx_file_copied(tmp_path, models):
    root = write_model_repository(tmp_path / "repo", models)
    assert sorted(p.name for p in root.iterdir()) == ["README.txt", "encoder", "ranker"]
    for name, source in models.items():
        assert sorted(str(p.relative_to(root / name)) for p in (root / name).rglob("*")) == ["1", "1/model.onnx", "config.pbtxt"]
        assert (root / name / "1" / "model.onnx").read_bytes() == source.read_bytes()
    assert f"tritonserver --model-repository={root.resolve()}" in (root / "README.txt").read_text()


def test_config_declares_the_onnx_graph_without_the_batch_axis(tmp_path, models):
    root = write_model_repository(tmp_path / "repo", models, max_batch_size=64, preferred_batch_sizes=(4, 16), max_queue_delay_us=250)
    encoder, ranker = read_config(root / "encoder"), read_config(root / "ranker")
    assert (encoder.name, encoder.platform, encoder.backend, encoder.max_batch_size) == ("encoder", "onnxruntime_onnx", "onnxruntime", 64)
    items, device = encoder.input
    assert (items.name, items.data_type, list(items.dims), items.HasField("reshape")) == ("items", model_config_pb2.TYPE_INT64, [-1], False)
    # a batch-only tensor: Triton needs non-empty dims, the model gets [batch]
    assert (device.name, device.data_type, list(device.dims), list(device.reshape.shape)) == (
        "device",
        model_config_pb2.TYPE_INT64,
        [1],
        [],
    )
    assert device.HasField("reshape")
    (vector,) = encoder.output
    assert (vector.name, vector.data_type, list(vector.dims)) == ("user_vector", model_config_pb2.TYPE_FP32, [4])
    (features,), (scores,) = ranker.input, ranker.output
    assert (features.name, features.data_type, list(features.dims)) == ("features", model_config_pb2.TYPE_FP32, [3])
    assert (scores.name, list(scores.dims), scores.HasField("reshape")) == ("scores", [1], True)
    for config in (encoder, ranker):
        assert list(config.dynamic_batching.preferred_batch_size) == [4, 16]
        assert config.dynamic_batching.max_queue_delay_microseconds == 250


@pytest.mark.parametrize(
    "gpu, kind", [(False, model_config_pb2.ModelInstanceGroup.KIND_CPU), (True, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
)
def test_instance_group_kind(tmp_path, models, gpu, kind):
    root = write_model_repository(tmp_path / "repo", models, gpu=gpu)
    for name in models:
        (group,) = read_config(root / name).instance_group
        assert (group.count, group.kind) == (1, kind)


def test_rewriting_replaces_a_model_folder(tmp_path, models):
    root = write_model_repository(tmp_path / "repo", models)
    (root / "ranker" / "2").mkdir()
    write_model_repository(root, {"ranker": models["ranker"]})
    assert sorted(p.name for p in (root / "ranker").iterdir()) == ["1", "config.pbtxt"]
    assert (root / "encoder" / "config.pbtxt").exists()


def test_external_weights_travel_with_the_model(tmp_path):
    source = two_tower_like(tmp_path / "encoder.onnx", external=True)
    root = write_model_repository(tmp_path / "repo", {"encoder": source})
    assert (root / "encoder" / "1" / "encoder.onnx.data").read_bytes() == (tmp_path / "encoder.onnx.data").read_bytes()
    onnx.checker.check_model(str(root / "encoder" / "1" / "model.onnx"))  # resolves the side file


def test_bad_inputs_are_refused_with_the_reason(tmp_path, models):
    with pytest.raises(ValueError, match="dynamic first"):
        write_model_repository(tmp_path / "a", {"fixed": two_tower_like(tmp_path / "fixed.onnx", batch_axis=2)})
    with pytest.raises(ValueError, match="preferred_batch_sizes"):
        write_model_repository(tmp_path / "b", models, max_batch_size=16, preferred_batch_sizes=(8, 32))
    with pytest.raises(ValueError, match="model name"):
        write_model_repository(tmp_path / "c", {"my model": models["ranker"]})
    with pytest.raises(FileNotFoundError, match="no ONNX file"):
        write_model_repository(tmp_path / "d", {"ranker": tmp_path / "missing.onnx"})
