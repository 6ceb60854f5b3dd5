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
from hyperrec.data.windows import recent_items
from hyperrec.models.base import Recommender


class SequenceRecommender(Recommender):
    def __init__(self, model: nn.Module, max_len: int, device: str | torch.device = "cpu", batch_size: int = 256):
        super().__init__()
        self.model = model
        self.max_len = max_len
        self.device = torch.device(device)
        self.batch_size = batch_size

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        self.history = data

    @torch.no_grad()
    def score(self, users: np.ndarray) -> np.ndarray:
        was_training = self.model.training
        self.model.eval()
        sequences = recent_items(self.history, users, self.max_len)
        scores = [
            self.model.score_next(torch.from_numpy(sequences[start : start + self.batch_size]).to(self.device)).float().cpu().numpy()
            for start in range(0, len(sequences), self.batch_size)
        ]
        self.model.train(was_training)
        return np.concatenate(scores) if scores else np.zeros((0, self.history.n_items), np.float32)
