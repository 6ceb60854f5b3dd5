"""The pre-LayerNorm transformer block of both sequence encoders: SASRec's (causal) and the two-tower
user tower's (bidirectional) differ only in the boolean attention mask they pass.

    x = x + attn(ln_1(x), mask);  x = x + mlp(ln_2(x))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x: [B, L, D]; mask: bool, broadcastable to [B, heads, L, L], True where query i may attend to key j."""
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q, k, v = (t.view(B, L, self.n_heads, D // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.resid_dropout(self.proj(y.transpose(1, 2).reshape(B, L, D)))


class MLP(nn.Module):
    def __init__(self, dim: int, dropout: float, ffn_mult: int = 4):
        super().__init__()
        self.fc = nn.Linear(dim, ffn_mult * dim)
        self.proj = nn.Linear(ffn_mult * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float, ffn_mult: int = 4):
        """`ffn_mult`: the feed-forward's hidden width as a multiple of `dim` (GPT-2: 4; SASRec: 1)."""
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, n_heads, dropout)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, dropout, ffn_mult)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))
