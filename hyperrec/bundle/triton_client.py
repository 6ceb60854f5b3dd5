"""Exported models served by Triton: `TritonModel`, `TritonEncoder`, `TritonScorer`, the Triton
counterparts of `OnnxModel`, `OnnxEncoder`, `OnnxScorer` (hyperrec/bundle/onnx_models.py), same
call signatures, over Triton's HTTP API. Works with a full Triton server on a repository written
by hyperrec/export/triton_repo.py and with the sidecar (hyperrec/serve/triton_process.py).
"""

from __future__ import annotations

import threading

import numpy as np
from tritonclient import http

from hyperrec.bundle.onnx_models import sequence_feeds


class TritonModel:
    """One model on a Triton server, fed by input name like `OnnxModel`; inputs it does not
    declare are not passed; returns its first output. Batches larger than the model's
    max_batch_size are sent in parts. A batch-only tensor (ONNX [batch]) travels as [batch, 1]
    (Triton needs non-empty dims): such inputs are lifted here, and such an output comes back
    [batch, 1]. Safe to call from several threads: tritonclient's HTTP client (gevent) only
    works in the thread that made it, so each thread gets its own."""

    def __init__(self, url: str, model_name: str, timeout_s: float = 30.0):
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self._local = threading.local()
        self._clients: list[http.InferenceServerClient] = []
        metadata = self.client.get_model_metadata(model_name)
        self.max_batch_size = int(self.client.get_model_config(model_name).get("max_batch_size", 0))
        self.inputs = {i["name"]: (i["datatype"], len(i["shape"])) for i in metadata["inputs"]}
        output = metadata["outputs"][0]
        self.output = output["name"]
        self.output_dims = [max(d, 0) for d in output["shape"][1:]]
        self.output_dtype = http.triton_to_np_dtype(output["datatype"])

    @property
    def client(self) -> http.InferenceServerClient:
        """This thread's client."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = http.InferenceServerClient(
                self.url, connection_timeout=self.timeout_s, network_timeout=self.timeout_s
            )
            self._clients.append(client)
        return client

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        arrays = {name: np.ascontiguousarray(feeds[name]) for name in self.inputs}
        size = len(next(iter(arrays.values())))
        if size == 0:
            return np.zeros((0, *self.output_dims), self.output_dtype)
        step = self.max_batch_size or size
        parts = [self._infer({name: x[start : start + step] for name, x in arrays.items()}) for start in range(0, size, step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _infer(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        inputs = []
        for name, x in arrays.items():
            datatype, rank = self.inputs[name]
            if x.ndim == rank - 1:
                x = x.reshape(len(x), 1)
            tensor = http.InferInput(name, list(x.shape), datatype)
            tensor.set_data_from_numpy(x, binary_data=True)
            inputs.append(tensor)
        output = http.InferRequestedOutput(self.output, binary_data=True)
        return self.client.infer(self.model_name, inputs, outputs=[output]).as_numpy(self.output)

    def close(self) -> None:
        """Close every thread's connection (an open one holds a stopping server up to its exit timeout)."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._local = threading.local()


class TritonEncoder:
    """`OnnxEncoder` over Triton: (sequences [B, max_len], context inputs [B]) -> user vectors [B, D]."""

    def __init__(self, url: str, model: str = "encoder", *, max_len: int, behaviour: bool = False):
        self.model = TritonModel(url, model)
        self.max_len = max_len
        self.behaviour = behaviour

    def __call__(self, sequences: np.ndarray, context: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.run(sequence_feeds(sequences) | context)


class TritonScorer:
    """`OnnxScorer` over Triton: features [N, F] -> scores [N]."""

    def __init__(self, url: str, model: str = "ranker"):
        self.model = TritonModel(url, model)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0, np.float32)
        return self.model.run({"features": np.ascontiguousarray(features, np.float32)}).reshape(len(features))
