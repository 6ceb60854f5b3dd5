"""torch -> ONNX with dynamic axes, and the parity check every export runs.

The dynamo exporter is used (the legacy one cannot export `nn.TransformerEncoder`-style
attention at a variable length); weights are folded into the .onnx file so that one file is
the whole model (Triton and ONNX Runtime read the same file).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from hyperrec.bundle.manifest import ParityCheck


def export_onnx(module: nn.Module, example: dict[str, torch.Tensor], path: Path, output: str, dynamic: dict[str, dict[int, str]]) -> Path:
    """Export `module(**example)` to `path` (one self-contained file); `dynamic` = input -> {axis: name}."""
    module = module.eval()
    dims: dict[str, torch.export.Dim] = {}
    shapes = {}
    for name in example:
        axes = dynamic.get(name, {})
        shapes[name] = {axis: dims.setdefault(label, torch.export.Dim(label, min=1)) for axis, label in axes.items()} or None
    program = torch.onnx.export(
        module,
        (),
        kwargs=example,
        dynamo=True,
        dynamic_shapes=shapes,
        input_names=list(example),
        output_names=[output],
        external_data=False,
        verbose=False,
    )
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))
    return path


def check_parity(module: nn.Module, session, cases: list[dict[str, np.ndarray]], tolerance: float) -> ParityCheck:
    """Max abs difference between ONNX Runtime and torch over `cases` (inputs by name)."""
    worst = 0.0
    with torch.no_grad():
        for case in cases:
            expected = module(**{k: torch.from_numpy(v) for k, v in case.items()}).float().numpy()
            got = session.run(None, case)[0]
            if got.shape != expected.shape:
                worst = float("inf")
                break
            worst = max(worst, float(np.abs(got - expected).max()) if got.size else 0.0)
    return ParityCheck(max_abs_error=worst, tolerance=tolerance, cases=len(cases), passed=worst <= tolerance)


def export_checked(
    name: str,
    module: nn.Module,
    example: dict,
    dynamic: dict,
    output: str,
    folder: Path,
    cases: list[dict[str, np.ndarray]],
    tolerance: float,
) -> ParityCheck:
    """`folder/name.onnx`, checked against torch on `cases`; a failed check is an error, not a version."""
    import onnxruntime as ort

    path = export_onnx(module, example, folder / f"{name}.onnx", output, dynamic)
    parity = check_parity(module, ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]), cases, tolerance)
    if not parity.passed:
        raise ValueError(f"{name}.onnx: ONNX Runtime differs from torch by {parity.max_abs_error:.2e} (> {tolerance:.0e}); not exported")
    return parity
