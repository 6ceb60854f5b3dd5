"""A Triton model repository from exported ONNX files: what a full NVIDIA Triton server
(onnxruntime backend, CPU or GPU) is pointed at.

    <root>/README.txt
    <root>/<name>/config.pbtxt
    <root>/<name>/1/model.onnx

Inputs and outputs are read from the ONNX graph. Triton owns the first (batch) axis, so each
tensor's `dims` drop it; dynamic axes become -1. A batch-only tensor (ONNX shape [batch], e.g.
the ranker's `scores`) needs non-empty dims: it is declared `dims: [ 1 ]` with
`reshape: { shape: [ ] }`, so clients send and receive it as [batch, 1].
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import onnx
from onnx import TensorProto

TRITON_TYPES = {
    TensorProto.FLOAT: "TYPE_FP32",
    TensorProto.DOUBLE: "TYPE_FP64",
    TensorProto.FLOAT16: "TYPE_FP16",
    TensorProto.BFLOAT16: "TYPE_BF16",
    TensorProto.INT64: "TYPE_INT64",
    TensorProto.INT32: "TYPE_INT32",
    TensorProto.INT8: "TYPE_INT8",
    TensorProto.UINT8: "TYPE_UINT8",
    TensorProto.BOOL: "TYPE_BOOL",
}
MODEL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")

README = """\
Triton model repository written by hyperrec (one folder per model, ONNX Runtime backend).

Start a full NVIDIA Triton server on it, e.g. with NVIDIA's container:

    tritonserver --model-repository={root}

    docker run --rm --gpus all -p8000:8000 -p8001:8001 -p8002:8002 \\
        -v {root}:/models nvcr.io/nvidia/tritonserver:<yy.mm>-py3 \\
        tritonserver --model-repository=/models

HTTP on :8000, gRPC on :8001, metrics on :8002. Models: {models}.
Without a full server (CPU machine), `hyperrec.serve.triton_process.TritonSidecar` serves this
same folder with the Triton server bundled in nvidia-pytriton (`make triton-setup`).
"""


def _tensor(value: onnx.ValueInfoProto, where: str) -> str:
    kind = value.type.tensor_type
    if kind.elem_type not in TRITON_TYPES:
        raise ValueError(
            f"{where}: tensor '{value.name}' has ONNX type {TensorProto.DataType.Name(kind.elem_type)}, which "
            "Triton config writing does not map"
        )
    dims = list(kind.shape.dim)
    if not dims or dims[0].HasField("dim_value"):
        raise ValueError(f"{where}: tensor '{value.name}' needs a dynamic first (batch) axis for Triton batching")
    rest = [d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:]]
    lines = [f'    name: "{value.name}"', f"    data_type: {TRITON_TYPES[kind.elem_type]}"]
    lines += [f"    dims: [ {', '.join(map(str, rest))} ]"] if rest else ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config(
    name: str, model: onnx.ModelProto, gpu: bool, max_batch_size: int, preferred_batch_sizes: tuple[int, ...], max_queue_delay_us: int
) -> str:
    """config.pbtxt text for one ONNX model (ONNX Runtime backend, dynamic batching, one instance)."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}  # old exporters list weights among the inputs
    inputs = ",\n".join(_tensor(v, name) for v in graph.input if v.name not in weights)
    outputs = ",\n".join(_tensor(v, name) for v in graph.output)
    preferred = ", ".join(map(str, preferred_batch_sizes))
    return (
        f'name: "{name}"\nplatform: "onnxruntime_onnx"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch_size}\n'
        f"input [\n{inputs}\n]\noutput [\n{outputs}\n]\n"
        f"dynamic_batching {{\n  preferred_batch_size: [ {preferred} ]\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}\n"
        f"instance_group [\n  {{\n    count: 1\n    kind: {'KIND_GPU' if gpu else 'KIND_CPU'}\n  }}\n]\n"
    )


def _copy_onnx(source: Path, model: onnx.ModelProto, folder: Path) -> None:
    """Copy the ONNX file as model.onnx, and any external-data files it references (by their own name)."""
    folder.mkdir(parents=True)
    shutil.copyfile(source, folder / "model.onnx")
    for tensor in model.graph.initializer:
        if tensor.data_location == TensorProto.EXTERNAL:
            location = next(e.value for e in tensor.external_data if e.key == "location")
            if not (folder / location).exists():
                shutil.copyfile(source.parent / location, folder / location)


def write_model_repository(
    root: Path,
    models: dict[str, Path],
    gpu: bool = False,
    max_batch_size: int = 256,
    preferred_batch_sizes: tuple[int, ...] = (8, 32, 128),
    max_queue_delay_us: int = 500,
) -> Path:
    """Write `<root>/<name>/{config.pbtxt, 1/model.onnx}` for each `name -> ONNX path`, and a README.

    A model folder already there is replaced (no stale versions)."""
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be at least 1 (got {max_batch_size})")
    if any(not 1 <= size <= max_batch_size for size in preferred_batch_sizes):
        raise ValueError(f"preferred_batch_sizes {list(preferred_batch_sizes)} must lie in 1..max_batch_size ({max_batch_size})")
    root = Path(root)
    for name, source in models.items():
        if not MODEL_NAME.match(name):
            raise ValueError(f"model name '{name}': use letters, digits, '_', '.' and '-' only (it is a folder and a URL part)")
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(f"model '{name}': no ONNX file at {source}")
        model = onnx.load(str(source), load_external_data=False)
        config = model_config(name, model, gpu, max_batch_size, tuple(preferred_batch_sizes), max_queue_delay_us)
        folder = root / name
        if folder.exists():
            shutil.rmtree(folder)
        _copy_onnx(source, model, folder / "1")
        (folder / "config.pbtxt").write_text(config)
    (root / "README.txt").write_text(
        README.format(root=root.resolve(), models=", ".join(sorted(p.parent.name for p in root.glob("*/config.pbtxt"))))
    )
    return root
