"""Serve a Triton model repository (hyperrec/export/triton_repo.py) with the real Triton server
bundled in nvidia-pytriton, on a machine without a full Triton install.

That server has only the Python backend, so each model folder is bound as a pytriton callable
that runs the folder's model.onnx with ONNX Runtime (CPU), under Triton's dynamic batcher with
the folder's config.pbtxt batch settings. Clients see the same contract as a full Triton server
on the same folder (names, types, dims; batch-only tensors travel as [batch, 1]).

Runs in its own venv (.venv-triton: pytriton needs numpy<2), so it imports only the standard
library, numpy, onnxruntime and pytriton:

    .venv-triton/bin/python hyperrec/serve/triton_sidecar.py --repository DIR \\
        --http-port 8000 --grpc-port 8001 --metrics-port 8002

Listens on 127.0.0.1 unless --host says otherwise. SIGINT or SIGTERM stops the server and its
backend processes; the server waits up to --exit-timeout seconds for open client connections.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

READY = "triton ready"  # the line TritonSidecar waits for: every model is bound
NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def ensure_libpython_path() -> None:
    """Put this interpreter's libpython folder first on LD_LIBRARY_PATH, before the server starts:
    tritonserver's Python backend stub inherits it, and otherwise loads the system's older
    libpython and fails ('_thread.RLock' object has no attribute '_recursion_count')."""
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    if libdir and paths[0] != libdir:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *filter(None, paths)])


def batch_config(config_path: Path) -> ModelConfig:
    """max_batch_size and the dynamic batcher of a config.pbtxt written by triton_repo.py."""
    text = config_path.read_text()
    max_batch = re.search(r"^max_batch_size:\s*(\d+)", text, re.MULTILINE)
    if not max_batch or int(max_batch.group(1)) < 1:
        raise SystemExit(f"{config_path}: needs max_batch_size >= 1 (the sidecar serves batched models only)")
    delay = re.search(r"max_queue_delay_microseconds:\s*(\d+)", text)
    preferred = re.search(r"preferred_batch_size:\s*\[([^\]]*)\]", text)
    batcher = DynamicBatcher(
        max_queue_delay_microseconds=int(delay.group(1)) if delay else 0,
        preferred_batch_size=[int(s) for s in preferred.group(1).split(",")] if preferred else None,
    )
    return ModelConfig(max_batch_size=int(max_batch.group(1)), batcher=batcher)


def wire_tensor(node: ort.NodeArg) -> Tensor:
    """The tensor as Triton declares it: batch axis dropped, dynamic axes -1, batch-only -> (1,)."""
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in node.shape[1:])
    return Tensor(name=node.name, dtype=NUMPY_TYPES[node.type], shape=dims or (1,))


def onnx_callable(session: ort.InferenceSession):
    """A batched infer function: Triton's [batch, 1] becomes ONNX's [batch] and back."""
    flat_inputs = {i.name for i in session.get_inputs() if len(i.shape) == 1}
    outputs = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        feeds = {name: (x.reshape(-1) if name in flat_inputs else x) for name, x in inputs.items()}
        results = session.run(outputs, feeds)
        return {name: (y.reshape(-1, 1) if y.ndim == 1 else y) for name, y in zip(outputs, results)}

    return infer


@dataclass
class Folder:
    """One model folder of the repository, its ONNX file loaded."""

    name: str
    version: int
    session: ort.InferenceSession
    config: ModelConfig


def load_repository(repository: Path, threads: int) -> list[Folder]:
    """Every `<name>/config.pbtxt` + `<name>/<version>/model.onnx` (newest version) folder, loaded
    before the server starts so that a broken model fails fast."""
    folders = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        folder = config_path.parent
        version = max((int(d.name) for d in folder.iterdir() if d.name.isdigit() and (d / "model.onnx").is_file()), default=None)
        if version is None:
            raise SystemExit(f"{folder}: no <version>/model.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(folder / str(version) / "model.onnx"), options, providers=["CPUExecutionProvider"])
        folders.append(Folder(folder.name, version, session, batch_config(config_path)))
    if not folders:
        raise SystemExit(f"no model folders (<name>/config.pbtxt) in {repository}")
    return folders


def bind(triton: Triton, folder: Folder) -> None:
    triton.bind(
        model_name=folder.name,
        infer_func=onnx_callable(folder.session),
        inputs=[wire_tensor(i) for i in folder.session.get_inputs()],
        outputs=[wire_tensor(o) for o in folder.session.get_outputs()],
        model_version=folder.version,
        config=folder.config,
        strict=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--host", default="127.0.0.1", help="address of all three endpoints (0.0.0.0: every interface)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model")
    parser.add_argument("--exit-timeout", type=int, default=5, help="seconds a stopping server waits for open requests and connections")
    parser.add_argument(
        "--workspace", type=Path, help="new folder for the server's copy and model store (default: one in ~/.cache/pytriton)"
    )
    args = parser.parse_args()
    ensure_libpython_path()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops as cleanly as Ctrl+C
    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        exit_timeout_secs=args.exit_timeout,
    )
    folders = load_repository(args.repository, args.threads)
    with Triton(config=config, workspace=args.workspace) as triton:
        for folder in folders:
            bind(triton, folder)
        print(
            f"{READY} http={args.http_port} grpc={args.grpc_port} metrics={args.metrics_port} models={','.join(f.name for f in folders)}",
            flush=True,
        )
        triton.serve()


if __name__ == "__main__":
    main()
