"""What export turns into ONNX for each model kind: the user encoder, and the item vectors.

`exportable(kind, model)` returns an `ExportPlan`: a module whose forward takes named numpy-able
inputs (`items` [B, L] ids 1..n, 0 = padding; a multi-behaviour SASRec also `kinds` and `gaps` [B, L];
two-tower also `device`, `hour`, `weekday` [B])
and returns the user vector [B, D]; an example input for tracing; which input axes are dynamic;
and the item vectors [n_items, D] (row j = item index j) that retrieval indexes.

The two-tower item tower keeps its ID and category tables in a TorchRec `EmbeddingBagCollection`
fed a `KeyedJaggedTensor`, whose values have data-dependent shapes (the ids left after masking)
that the ONNX conversion rejects; so export uses `ExportItemTower`, the same maths with plain
lookups on the same weight tensors.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hyperrec.config import ModelKind
from hyperrec.data.behaviours import N_GAP_IDS, N_KIND_IDS
from hyperrec.models.sasrec import SASRec
from hyperrec.models.two_tower import N_DEVICES, N_HOURS, N_WEEKDAYS, ItemTower, TwoTower


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
    """The query vector at the last position (`SASRec.query`, through the served head) whose dot product with an
    item's (tied) embedding is SASRec's next-item score, without the repeat head (the ranker's repeat features take
    that role in serving). A behaviour model also reads each event's kind and gap ids."""

    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor, kinds: torch.Tensor | None = None, gaps: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.query(items, kinds, gaps)


def _sasrec_plan(model: SASRec) -> ExportPlan:
    max_len = model.config.max_len
    example = {"items": torch.randint(0, model.n_items + 1, (2, max_len))}
    if model.config.behaviour:
        example |= {"kinds": torch.randint(0, N_KIND_IDS, (2, max_len)), "gaps": torch.randint(0, N_GAP_IDS, (2, max_len))}
    with torch.no_grad():
        vectors = model.item_embeddings()[1:].float().numpy()
    dynamic = {name: {0: "batch", 1: "length"} for name in example}
    return ExportPlan(SASRecUserEncoder(model).eval(), example, dynamic, vectors, max_len)


class ExportItemTower(nn.Module):
    """`ItemTower` in eval mode (no ID dropout) with each single-id SUM bag written as an
    `F.embedding` lookup, which exports; padding (row 0) is an empty bag, i.e. a zero vector.
    It holds the tower itself, so the weights are the trained ones, shared and never copied."""

    def __init__(self, tower: ItemTower):
        super().__init__()
        self.tower = tower

    def forward(self, item_rows: torch.Tensor) -> torch.Tensor:
        """item_rows: LongTensor of any shape [...] -> [..., dim] unit vectors."""
        tower = self.tower
        bags = tower.sparse.embedding_bags
        real = (item_rows > 0).unsqueeze(-1)
        item_id = torch.where(real, F.embedding(item_rows, bags["item_id"].weight), 0.0)
        category = torch.where(real, F.embedding(tower.category[item_rows], bags["category"].weight), 0.0)
        return tower.combine(item_rows, item_id, category)


class TwoTowerUserEncoder(nn.Module):
    """`TwoTower.user_vectors` in eval mode, with `ExportItemTower` embedding the history."""

    def __init__(self, model: TwoTower):
        super().__init__()
        self.max_len = model.config.max_len
        self.item_tower = ExportItemTower(model.item_tower)
        self.user_tower = model.user_tower

    def forward(self, items: torch.Tensor, device: torch.Tensor, hour: torch.Tensor, weekday: torch.Tensor) -> torch.Tensor:
        items = items[:, -self.max_len :]
        return self.user_tower(self.item_tower(items), items > 0, device, hour, weekday)


def _two_tower_plan(model: TwoTower) -> ExportPlan:
    """The user encoder, the item vectors, and the item tower as an extra module (`item_tower`), so
    serving can embed items added after training from their row (content features are buffers)."""
    max_len = model.config.max_len
    batch = 2
    # Context examples span their whole range: export.py draws random parity cases below the max.
    example = {
        "items": torch.randint(0, model.n_items + 1, (batch, max_len)),
        "device": torch.tensor([0, N_DEVICES - 1]),
        "hour": torch.tensor([0, N_HOURS - 1]),
        "weekday": torch.tensor([0, N_WEEKDAYS - 1]),
    }
    dynamic = {"items": {0: "batch", 1: "length"}, "device": {0: "batch"}, "hour": {0: "batch"}, "weekday": {0: "batch"}}
    encoder = TwoTowerUserEncoder(model).eval()  # also puts both towers in eval mode for item_vectors
    return ExportPlan(
        encoder,
        example,
        dynamic,
        model.item_vectors().float().numpy(),
        max_len,
        extra={"item_tower": encoder.item_tower},
        extra_examples={"item_tower": {"item_rows": torch.randint(1, model.n_items + 1, (batch,))}},
        extra_dynamic={"item_tower": {"item_rows": {0: "batch"}}},
    )


PLANS: dict[ModelKind, Callable[[nn.Module], ExportPlan]] = {"sasrec": _sasrec_plan, "two_tower": _two_tower_plan}


def exportable(kind: ModelKind, model: nn.Module) -> ExportPlan:
    if kind not in PLANS:
        raise ValueError(f"export of model kind '{kind}' is not supported (supported: {', '.join(PLANS)})")
    return PLANS[kind](model)
