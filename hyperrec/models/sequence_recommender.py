"""A trained sequence model behind the same fit / score interface as the baselines.

`fit` does not train: it records each user's history, the context the model conditions on.
Training happens in hyperrec/train (Ray Train); this adapter is what evaluation and batch
scoring call.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from hyperrec.data.sequences import Interactions
from hyperrec.data.windows import recent_behaviour, recent_items
from hyperrec.models.base import Recommender


class SequenceRecommender(Recommender):
    def __init__(
        self,
        model: nn.Module,
        max_len: int,
        device: str | torch.device = "cpu",
        batch_size: int = 256,
        behaviour: bool = False,
        head: str | None = None,
    ):
        """`behaviour`: the model reads every event with its kind and gap (else what a purchase-only model is served);
        `head`: the head that scores (a behaviour model's next_item or next_purchase; default: its served one)."""
        super().__init__()
        self.model = model
        self.max_len = max_len
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.behaviour = behaviour
        self.head = head

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.history = data

    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        scores = []
        for start in range(0, len(users), self.batch_size):
            batch = users[start : start + self.batch_size]
            if self.behaviour:
                items, kinds, gaps = torch.from_numpy(recent_behaviour(self.history, batch, self.max_len)).to(self.device).unbind(1)
                scores.append(self.model.score_next(items, kinds, gaps, self.head).float().cpu().numpy())
            else:
                items = torch.from_numpy(recent_items(self.history, batch, self.max_len)).to(self.device)
                scores.append(self.model.score_next(items).float().cpu().numpy())
        self.model.train(was_training)
        return np.concatenate(scores) if scores else np.zeros((0, self.history.n_items), np.float32)
