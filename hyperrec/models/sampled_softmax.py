"""The correction both sampled-softmax losses share (SASRec's shared negatives, the two-tower's
in-batch + sampled negatives): Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus
Item Recommendations", RecSys 2019."""

from __future__ import annotations

import torch


def corrected_logits(scores: torch.Tensor, log_q: torch.Tensor, accidental_hits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """score / temperature - log q(item), and -inf where a negative is the row's own target.

    Frequently drawn (popular) items are over-represented among sampled negatives; subtracting the
    log probability of drawing each one makes the sampled softmax an unbiased estimate of the full
    softmax over exp(score / temperature). An accidental hit is masked so that the model is not
    pushed away from the right answer. `log_q` and `accidental_hits` broadcast to `scores`' shape."""
    return (scores / temperature - log_q).masked_fill(accidental_hits, float("-inf"))
