"""What export turns into ONNX for each model kind: the user encoder, and the item vectors.

`exportable(kind, model)` returns an `ExportPlan`: a module whose forward takes named numpy-able
inputs (`items` [B, L] ids 1..n, 0 = padding; two-tower also `device`, `hour`, `weekday` [B])
and returns the user vector [B, D]; an example input for tracing; which input axes are dynamic;
and the item vectors [n_items, D] (row j = item index j) that retrieval indexes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from hyperrec.models.sasrec import SASRec


@dataclass
class ExportPlan:
    encoder: nn.Module
    example: dict[str, torch.Tensor]
    dynamic: dict[str, dict[int, str]]
    item_vectors: np.ndarray
    max_len: int
    extra: dict[str, nn.Module] = field(default_factory=dict)  # more exportable modules (e.g. the item tower), by file stem
    extra_examples: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    extra_dynamic: dict[str, dict[str, dict[int, str]]] = field(default_factory=dict)


class SASRecUserEncoder(nn.Module):
    """The hidden state at the last position: the query vector whose dot product with an item's
    (tied) embedding is SASRec's next-item score, without the repeat head (the ranker's repeat
    features take that role in serving)."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.model(items)[:, -1]


def _sasrec_plan(model: SASRec) -> ExportPlan:
    max_len = model.config.max_len
    example = {"items": torch.randint(0, model.n_items + 1, (2, max_len))}
    with torch.no_grad():
        vectors = model.item_embeddings()[1:].float().numpy()
    return ExportPlan(SASRecUserEncoder(model).eval(), example, {"items": {0: "batch", 1: "length"}}, vectors, max_len)


def exportable(kind: str, model: nn.Module) -> ExportPlan:
    if kind == "sasrec":
        return _sasrec_plan(model)
    raise ValueError(f"export of model kind '{kind}' is not supported (supported: sasrec, two_tower)")
