"""Serve a Triton model repository (hyperrec/train/triton_repo.py) with the real Triton server
bundled in nvidia-pytriton, on a machine without a full Triton install.

That server has only the Python backend, so each model folder is bound as a pytriton callable
that runs the folder's model.onnx with ONNX Runtime (CPU), under Triton's dynamic batcher with
the folder's config.pbtxt batch settings. Clients see the same contract as a full Triton server
on the same folder (names, types, dims; batch-only tensors travel as [batch, 1]).

Runs in its own venv (.venv-triton: pytriton needs numpy<2), so it imports only the standard
library, numpy, onnxruntime and pytriton:

    .venv-triton/bin/python hyperrec/serve/triton_sidecar.py --repository DIR \\
        --http-port 8000 --grpc-port 8001 --metrics-port 8002

SIGINT or SIGTERM stops the server and its backend processes.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sysconfig
from pathlib import Path

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

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


def batch_settings(config: str) -> tuple[int, DynamicBatcher]:
    """max_batch_size and the dynamic batcher of a config.pbtxt written by triton_repo.py."""
    max_batch = re.search(r"^max_batch_size:\s*(\d+)", config, re.M)
    delay = re.search(r"max_queue_delay_microseconds:\s*(\d+)", config)
    preferred = re.search(r"preferred_batch_size:\s*\[([^\]]*)\]", config)
    return int(max_batch.group(1)) if max_batch else 0, DynamicBatcher(
        max_queue_delay_microseconds=int(delay.group(1)) if delay else 0,
        preferred_batch_size=[int(s) for s in preferred.group(1).split(",")] if preferred else None,
    )


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


def bind_repository(triton: Triton, repository: Path, threads: int) -> list[str]:
    """Bind every `<name>/config.pbtxt` + `<name>/<version>/model.onnx` (newest version) folder."""
    names = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        folder = config_path.parent
        version = max(int(d.name) for d in folder.iterdir() if d.name.isdigit() and (d / "model.onnx").is_file())
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(folder / str(version) / "model.onnx"), options, providers=["CPUExecutionProvider"])
        max_batch_size, batcher = batch_settings(config_path.read_text())
        triton.bind(
            model_name=folder.name,
            infer_func=onnx_callable(session),
            inputs=[wire_tensor(i) for i in session.get_inputs()],
            outputs=[wire_tensor(o) for o in session.get_outputs()],
            model_version=version,
            config=ModelConfig(max_batch_size=max_batch_size, batcher=batcher),
            strict=True,
        )
        names.append(folder.name)
    if not names:
        raise SystemExit(f"no model folders (<name>/config.pbtxt) in {repository}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repository", type=Path, required=True)
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per model")
    args = parser.parse_args()
    ensure_libpython_path()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops as cleanly as Ctrl+C
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    with Triton(config=config) as triton:
        names = bind_repository(triton, args.repository, args.threads)
        print(f"triton ready http={args.http_port} grpc={args.grpc_port} metrics={args.metrics_port} models={','.join(names)}", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
