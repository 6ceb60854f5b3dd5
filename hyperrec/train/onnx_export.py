"""torch -> ONNX with dynamic axes, and the parity check every export runs.

The dynamo exporter is used (the legacy one cannot export `nn.TransformerEncoder`-style
attention at a variable length); weights are folded into the .onnx file so that one file is
the whole model (Triton and ONNX Runtime read the same file).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn


@dataclass(frozen=True)
class Parity:
    name: str
    max_abs_error: float
    tolerance: float
    cases: int

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_error <= self.tolerance)

    def as_dict(self) -> dict:
        return {"max_abs_error": self.max_abs_error, "tolerance": self.tolerance, "cases": self.cases, "passed": self.passed}


def export_onnx(module: nn.Module, example: dict[str, torch.Tensor], path: Path, output: str, dynamic: dict[str, dict[int, str]]) -> Path:
    """Export `module(**example)` to `path` (one self-contained file); `dynamic` = input -> {axis: name}."""
    module = module.eval()
    dims: dict[str, torch.export.Dim] = {}
    shapes = {}
    for name in example:
        axes = dynamic.get(name, {})
        shapes[name] = {axis: dims.setdefault(label, torch.export.Dim(label, min=1)) for axis, label in axes.items()} or None
    program = torch.onnx.export(
        module, (), kwargs=example, dynamo=True, dynamic_shapes=shapes, input_names=list(example), output_names=[output],
        external_data=False, verbose=False,
    )  # fmt: skip
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))
    return path


def check_parity(name: str, module: nn.Module, session, cases: list[dict[str, np.ndarray]], tolerance: float) -> Parity:
    """Max abs difference between ONNX Runtime and torch over `cases` (inputs by name)."""
    worst = 0.0
    with torch.no_grad():
        for case in cases:
            expected = module(**{k: torch.from_numpy(v) for k, v in case.items()}).float().numpy()
            got = session.run(None, case)[0]
            if got.shape != expected.shape:
                return Parity(name, float("inf"), tolerance, len(cases))
            worst = max(worst, float(np.abs(got - expected).max()) if got.size else 0.0)
    return Parity(name, worst, tolerance, len(cases))
