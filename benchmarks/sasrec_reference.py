"""An independent plain SASRec, and a bare loop that trains it or hyperrec's SASRec on Instacart.

    .venv/bin/python benchmarks/sasrec_reference.py                        # the reference model
    .venv/bin/python benchmarks/sasrec_reference.py --model hyperrec dim=64 ffn_mult=4 embedding_scale=false

The reference follows Kang & McAuley 2018 (SASRec): item embedding scaled by sqrt(d) plus a learned
position embedding, dropout on the sum, pre-LayerNorm blocks of causal self-attention and a
pointwise ReLU feed-forward of width d, dropout after each, a final LayerNorm, the output tied to
the item embedding; Xavier-normal initialisation, Adam (betas 0.9, 0.98), full softmax with
cross-entropy (Klenitskiy & Vasilev 2023). Data: hyperrec's leave-last-basket-out split and its
end-aligned training windows; evaluation: hyperrec's full-ranking evaluation (valid each epoch,
test with the best epoch's weights), so the numbers are comparable with `hyperrec train`.
`--model hyperrec key=value ...` trains hyperrec.models.sasrec.SASRec (params override its config)
in the same loop, which separates the model from the training loop (Ray Train, AdamW, clipping).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hyperrec.config import DataConfig
from hyperrec.data.sequences import make_split
from hyperrec.data.sources import load_dataset
from hyperrec.data.windows import training_windows
from hyperrec.eval.evaluate import evaluate_model
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.models.sequence_recommender import SequenceRecommender


class ReferenceBlock(nn.Module):
    def __init__(self, dim: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = (t.view(B, L, self.n_heads, -1).transpose(1, 2) for t in self.qkv(self.ln_1(x)).split(D, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        x = x + F.dropout(self.out(y.transpose(1, 2).reshape(B, L, D)), self.dropout, self.training)
        return x + self.ffn(self.ln_2(x))


class ReferenceSASRec(nn.Module):
    def __init__(self, n_items: int, max_len: int, dim: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.item_emb = nn.Embedding(n_items + 1, dim, padding_idx=0)
        self.pos_emb = nn.Embedding(max_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(ReferenceBlock(dim, n_heads, dropout) for _ in range(n_layers))
        self.ln_f = nn.LayerNorm(dim)
        for name, p in self.named_parameters():
            if p.dim() > 1:
                nn.init.xavier_normal_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        L, D = items.shape[1], self.item_emb.embedding_dim
        positions = torch.arange(self.pos_emb.num_embeddings - L, self.pos_emb.num_embeddings, device=items.device)
        x = self.drop(self.item_emb(items) * math.sqrt(D) + self.pos_emb(positions))
        pos = torch.arange(L, device=items.device)
        mask = ((pos[:, None] >= pos[None, :]) & (items != 0)[:, None, :]) | (pos[:, None] == pos[None, :])
        for block in self.blocks:
            x = block(x, mask[:, None])
        return self.ln_f(x)

    def score_next(self, items: torch.Tensor) -> torch.Tensor:
        return self.forward(items)[:, -1] @ self.item_emb.weight[1:].T

    def loss(self, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        keep = targets != 0
        return F.cross_entropy(self.forward(items)[keep] @ self.item_emb.weight[1:].T, targets[keep] - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["reference", "hyperrec"], default="reference")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--max-len", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--optimizer", choices=["adam", "adamw"], default="adam", help="adam: betas (0.9, 0.98); adamw: torch defaults")
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("params", nargs="*", help="hyperrec SASRecConfig overrides, key=value (--model hyperrec)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = DataConfig(source="instacart", split="last_basket")
    split = make_split(load_dataset(data), data)
    items, targets = (torch.from_numpy(a) for a in training_windows(split.valid.history, args.max_len))
    n_items = split.valid.history.n_items
    if args.model == "reference":
        model: nn.Module = ReferenceSASRec(n_items, args.max_len, dim=64, n_layers=2, n_heads=2, dropout=0.2)
    else:
        overrides = dict(kv.split("=", 1) for kv in args.params)
        model = SASRec(SASRecConfig.model_validate({"max_len": args.max_len, **overrides}), n_items)
    if args.optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    print(f"{args.model} {' '.join(args.params)} | {len(items)} windows | load {os.getloadavg()[0]:.1f}", flush=True)
    best, best_state, epoch_seconds = -1.0, None, []
    for epoch in range(args.epochs):
        started, model = time.perf_counter(), model.train()
        order = torch.from_numpy(np.random.default_rng(args.seed * 7919 + epoch).permutation(len(items)))
        total, n_steps = 0.0, len(items) // args.batch_size
        for step in range(n_steps):
            batch = order[step * args.batch_size : (step + 1) * args.batch_size]
            loss = model.loss(items[batch], targets[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            optimizer.step()
            total += loss.item()
        epoch_seconds.append(time.perf_counter() - started)
        valid = evaluate_model(SequenceRecommender(model, args.max_len).fit(split.valid.history), split.valid, [10], 100).summary
        recall = valid["recall@10"]
        print(f"epoch {epoch + 1}: loss {total / n_steps:.3f}  valid recall@10 {recall:.4f}  train {epoch_seconds[-1]:.1f} s", flush=True)
        if recall > best:
            best, best_state = recall, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    test = evaluate_model(SequenceRecommender(model, args.max_len).fit(split.test.history), split.test, [10], 100).summary
    print(
        f"RESULT {args.model} {' '.join(args.params)}: best valid recall@10 {best:.4f}, test recall@10 {test['recall@10']:.4f}, "
        f"{np.median(epoch_seconds):.1f} s/epoch (median train), load {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
