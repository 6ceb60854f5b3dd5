"""The bundle's models as callables: the encoder (sequences + context -> user vectors) and the
scorer (features -> scores), on ONNX Runtime in process. Triton's counterparts with the same call
signatures are in triton_client.py."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np


class Encoder(Protocol):
    max_len: int
    behaviour: bool  # reads (B, 3, L) sequences: item, kind and gap ids (UserState.behaviour_sequence); else (B, L) items

    def __call__(self, sequences: np.ndarray, context: dict[str, np.ndarray]) -> np.ndarray: ...


def sequence_feeds(sequences: np.ndarray) -> dict[str, np.ndarray]:
    """The encoder's sequence inputs by name: `items`, and of (B, 3, L) behaviour sequences `kinds` and `gaps` too."""
    if sequences.ndim == 3:
        return {"items": sequences[:, 0], "kinds": sequences[:, 1], "gaps": sequences[:, 2]}
    return {"items": sequences}


class Scorer(Protocol):
    def __call__(self, features: np.ndarray) -> np.ndarray: ...


class OnnxModel:
    """An ONNX Runtime session fed by input name; inputs it does not declare are not passed."""

    def __init__(self, path: Path, threads: int = 1, providers: list[str] | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        if providers is None:  # the GPU when this ONNX Runtime build has one (onnxruntime-gpu), else the CPU
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.inputs = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {name: feeds[name] for name in self.inputs})[0]


class OnnxEncoder:
    def __init__(self, path: Path, max_len: int, threads: int = 1, providers: list[str] | None = None):
        self.model = OnnxModel(path, threads, providers)
        self.max_len = max_len
        self.behaviour = "kinds" in self.model.inputs

    def __call__(self, sequences: np.ndarray, context: dict[str, np.ndarray]) -> np.ndarray:
        return self.model.run(sequence_feeds(sequences) | context)


class OnnxScorer:
    def __init__(self, path: Path, threads: int = 1, providers: list[str] | None = None):
        self.model = OnnxModel(path, threads, providers)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        if not len(features):
            return np.zeros(0, np.float32)
        return self.model.run({"features": np.ascontiguousarray(features, np.float32)})
