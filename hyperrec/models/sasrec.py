"""SASRec: a causal transformer over a user's item sequence that predicts the next item.

Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018. Trained here with a
full-catalogue cross-entropy loss (Klenitskiy & Vasilev, "Turning Dross Into Gold Loss: is
BERT4Rec really better than SASRec?", RecSys 2023) or, for large catalogues, a sampled softmax
with logQ correction (Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations", RecSys 2019).

Reads top to bottom: config, the attention mask, model, the two losses' helpers (the transformer
block is models/transformer.py, shared with the two-tower user tower).

Conventions:
- item ids are 1..n_items; 0 is padding. Sequences are LEFT-padded, the most recent item last.
- position ids count from the right, so the last position always has the same position
  embedding and any sequence length up to `max_len` works (training and serving alike).
- the output layer is tied to the item embedding: score(item) = hidden . item_embedding(item).
- `score_next` is the exported entry point (ONNX): no Python control flow on tensor values.
- two recipes behind `embedding_scale`, `init` and `ffn_mult`: the defaults are GPT-2's (normal(0.02)
  init, unscaled embeddings, feed-forward 4 x dim; runs trained before these switches load as they
  were); the original SASRec's (sqrt(dim)-scaled input embeddings, Xavier init, feed-forward of width
  dim) learns faster on Instacart's next-item task (README, "Plain SASRec: ablation").
- multi-behaviour input (`behaviour`, in the spirit of MB-STR, Yuan et al., SIGIR 2022, at its simplest):
  each item's embedding plus its event kind's and its time-gap bucket's, trained on the next event of
  the whole stream (search excluded), with an optional second head for the next purchase
  (`purchase_weight`): a linear map of the same hidden state, scored against the same item table. On
  purchase-only data every kind is purchase and the gaps say "same basket" or how far apart baskets were.
- optional repeat head (a copy mechanism, in the spirit of RepeatNet, Ren et al., AAAI 2019):
  score(item) += w_seen * [bought before] + w_count * log(1 + count) + w_decay * log(1 + sum over
  the item's earlier occurrences of decay^age). Grocery baskets are mostly re-purchases, which a
  softmax over embeddings learns slowly from few users; the head gives the transformer a direct
  path to them (personal frequency and recency, as in TIFU-KNN), with its four scalars learned
  at their own, larger learning rate (`repeat_lr`). A behaviour model weighs each earlier event by
  its kind, per head: a carted item can count more towards the next purchase than a viewed one.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from hyperrec.config import StrictModel
from hyperrec.data.behaviours import N_GAP_IDS, N_KIND_IDS
from hyperrec.models.sampled_softmax import corrected_logits
from hyperrec.models.transformer import Block


class SASRecConfig(StrictModel):
    max_len: int = Field(50, ge=1, description="longest sequence (number of position embeddings)")
    dim: int = Field(64, ge=1)
    n_layers: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    dropout: float = Field(0.2, ge=0, lt=1)
    embedding_scale: bool = Field(False, description="multiply the input item embeddings by sqrt(dim), as SASRec and the Transformer do")
    ffn_mult: int = Field(4, ge=1, description="feed-forward hidden width as a multiple of dim (SASRec: 1, GPT-2: 4)")
    init: Literal["gpt2", "xavier"] = Field(
        "gpt2", description="gpt2: normal(0.02), residual projections scaled by 1/sqrt(2 n_layers); xavier: Xavier-normal weights (SASRec)"
    )
    loss: Literal["full_softmax", "sampled_softmax"] = "full_softmax"
    n_negatives: int = Field(256, ge=1, description="negatives per batch for sampled_softmax")
    use_category: bool = Field(False, description="add a category embedding to each item embedding")
    repeat_head: bool = Field(
        False, description="add a learned repeat score (seen flag, count, decayed recency) for items already in the sequence"
    )
    repeat_lr: float = Field(
        0.05,
        gt=0,
        description="learning rate of the repeat head's scalars (a few steps per epoch at the shared rate barely move them)",
    )
    objective: Literal["next_item", "next_basket"] = Field(
        "next_item", description="next_basket: at each basket's last item, predict every item of the next basket (full softmax)"
    )
    behaviour: bool = Field(
        False,
        description="multi-behaviour input: each item also gets the embedding of its event's kind (view, click, add to cart, "
        "remove, purchase) and of its time-gap bucket (data/behaviours.py); the target is the next event's item",
    )
    purchase_weight: float = Field(
        0.0, ge=0, description="behaviour only: weight of a second head's next-purchase loss (0: no purchase head)"
    )
    served_head: Literal["next_item", "next_purchase"] = Field(
        "next_item", description="the head whose query vector scores items when served and evaluated"
    )

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> SASRecConfig:
        if self.dim % self.n_heads != 0:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        if (self.repeat_head or self.objective == "next_basket" or self.behaviour) and self.loss != "full_softmax":
            raise ValueError("repeat_head, behaviour and objective=next_basket are implemented for loss=full_softmax only")
        if self.behaviour and self.objective != "next_item":
            raise ValueError("behaviour is trained on next events: it needs objective next_item")
        if self.purchase_weight > 0 and not self.behaviour:
            raise ValueError("purchase_weight needs behaviour: true (the next purchase is found among the events)")
        if self.served_head == "next_purchase" and self.purchase_weight == 0:
            raise ValueError("served_head next_purchase needs a purchase head: set purchase_weight above 0")
        return self


def attention_mask(items: torch.Tensor) -> torch.Tensor:
    """Bool [B, 1, L, L]: causal AND the key is not padding, OR the key is the query itself.

    The diagonal is always allowed so a query at a padding position still has one key to
    attend to; an all-False row would make the softmax NaN. Real positions never see padding.
    """
    L = items.shape[1]
    pos = torch.arange(L, device=items.device)
    causal = pos[:, None] >= pos[None, :]
    itself = pos[:, None] == pos[None, :]
    allowed = (causal[None] & (items != 0)[:, None, :]) | itself[None]
    return allowed[:, None]


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig, n_items: int, item_categories: torch.Tensor | None = None):
        """`item_categories`: LongTensor[n_items + 1], the category id of each item row (row 0 is
        padding; its value is unused). Required when `config.use_category`, ignored otherwise."""
        super().__init__()
        if n_items < 1:
            raise ValueError(f"n_items must be at least 1, got {n_items}")
        self.config = config
        self.n_items = n_items
        self.item_emb = nn.Embedding(n_items + 1, config.dim, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.dim)
        self.category_emb: nn.Embedding | None = None
        if config.use_category:
            if item_categories is None:
                raise ValueError("config.use_category is true: pass item_categories (LongTensor[n_items + 1], a category id per item row)")
            item_categories = torch.as_tensor(item_categories)
            if item_categories.shape != (n_items + 1,) or item_categories.dtype != torch.long:
                raise ValueError(
                    f"item_categories must be a LongTensor of shape ({n_items + 1},) (row 0 = padding); got "
                    f"{item_categories.dtype} of shape {tuple(item_categories.shape)}"
                )
            if item_categories.min() < 0:
                raise ValueError("item_categories must be non-negative category ids")
            self.register_buffer("item_categories", item_categories.clone())
            self.category_emb = nn.Embedding(int(item_categories.max()) + 1, config.dim)
        if config.repeat_head:
            self.repeat_seen = nn.Parameter(torch.tensor(1.0))
            self.repeat_count_weight = nn.Parameter(torch.tensor(1.0))
            self.repeat_weight = nn.Parameter(torch.tensor(1.0))
            self.repeat_decay_logit = nn.Parameter(torch.tensor(3.0))  # sigmoid(3) ~ 0.95 per item of age
            if config.behaviour:  # per head (next item, next purchase), how much an earlier event of each kind counts
                self.repeat_kind_logit = nn.Parameter(torch.full((2, N_KIND_IDS), math.log(math.e - 1)))  # softplus = 1
        if config.behaviour:
            self.kind_emb = nn.Embedding(N_KIND_IDS, config.dim, padding_idx=0)
            self.gap_emb = nn.Embedding(N_GAP_IDS, config.dim, padding_idx=0)
        if config.purchase_weight > 0:
            self.purchase_head = nn.Linear(config.dim, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config.dim, config.n_heads, config.dropout, config.ffn_mult) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.dim)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            # The kind and gap tables keep normal(0.02) under either recipe: a behaviour model starts close to the plain
            # one (Xavier on their few rows would give them 2x the scaled item embeddings' size and slow its start).
            if config.init == "xavier" and p.dim() == 2 and not name.startswith(("kind_emb", "gap_emb")):
                nn.init.xavier_normal_(p)
            elif config.init == "gpt2" and name.endswith("proj.weight"):  # GPT-2: residual projections by 1/sqrt(2 * n_layers)
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))
        with torch.no_grad():  # normal_ above overwrote the padding rows
            for table in (self.item_emb, getattr(self, "kind_emb", None), getattr(self, "gap_emb", None)):
                if table is not None:
                    table.weight[0].zero_()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """[...] item ids -> [..., dim] item (+ category) embeddings."""
        x = self.item_emb(items)
        if self.category_emb is not None:
            x = x + self.category_emb(self.item_categories[items])
        return x

    def item_embeddings(self) -> torch.Tensor:
        """[n_items + 1, dim]: the embedding of every item row, also the (tied) output layer."""
        x = self.item_emb.weight
        if self.category_emb is not None:
            x = x + self.category_emb(self.item_categories)
        return x

    def forward(self, items: torch.Tensor, kinds: torch.Tensor | None = None, gaps: torch.Tensor | None = None) -> torch.Tensor:
        """items: LongTensor[B, L], left-padded with 0, L <= max_len -> hidden states [B, L, dim].

        kinds, gaps: LongTensor[B, L], the kind and gap ids of a behaviour model's events (data/behaviours.py)."""
        L = items.shape[1]
        if L > self.config.max_len:
            raise ValueError(f"sequence length {L} exceeds max_len {self.config.max_len}; keep the last max_len items")
        positions = torch.arange(self.config.max_len - L, self.config.max_len, device=items.device)
        x = self.embed_items(items)
        if self.config.embedding_scale:
            x = x * math.sqrt(self.config.dim)
        if self.config.behaviour:
            if kinds is None or gaps is None:
                raise ValueError("a behaviour model reads kinds and gaps with its items")
            x = x + self.kind_emb(kinds) + self.gap_emb(gaps)
        x = self.drop(x + self.pos_emb(positions))
        mask = attention_mask(items)
        for block in self.blocks:
            x = block(x, mask)
        return self.ln_f(x)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups: the repeat head's scalars at `repeat_lr` without weight decay, the rest as given."""
        head = {name: p for name, p in self.named_parameters() if name.startswith("repeat_")}
        rest = [p for name, p in self.named_parameters() if name not in head]
        groups = [{"params": rest, "lr": lr, "weight_decay": weight_decay}]
        if head:
            groups.append({"params": list(head.values()), "lr": self.config.repeat_lr, "weight_decay": 0.0})
        return groups

    def repeat_scores(
        self, sequences: torch.Tensor, age: torch.Tensor, kinds: torch.Tensor | None = None, head: str = "next_item"
    ) -> torch.Tensor:
        """[N, n_items] repeat-head scores, per item, from its occurrences before the query.

        w_seen * [count > 0] + w_count * log(1 + count) + w_decay * log(1 + sum of decay^age).
        sequences: [N, L] item ids; age: [N, L] how many positions before the query each item is
        (negative = after the query, ignored). A behaviour model counts an occurrence by its event
        kind's learned weight for that head (softplus, 1 at the start): a carted item can count
        more than a viewed one.
        """
        decay = torch.sigmoid(self.repeat_decay_logit)
        before = ((age >= 0) & (sequences > 0)).float()
        if kinds is not None and self.config.behaviour:
            before = before * F.softplus(self.repeat_kind_logit[int(head == "next_purchase")])[kinds]
        # Per position, its item's sums over the sequence ([N, L, L] rather than [N, n_items]: sequences are short,
        # catalogues are not); each item is then written once, at its last occurrence before the query.
        same = (sequences[:, :, None] == sequences[:, None, :]).float()
        counts = (same * before[:, None, :]).sum(-1)
        decayed = (same * (before * decay ** age.clamp(min=0))[:, None, :]).sum(-1)
        later = torch.ones_like(same).triu(1) * same * (before[:, None, :] > 0)  # the same item again, later, before the query
        last = (before > 0) & ~(later.sum(-1) > 0)
        scores = self.repeat_seen + self.repeat_count_weight * torch.log1p(counts) + self.repeat_weight * torch.log1p(decayed)
        out = scores.new_zeros(sequences.shape[0], self.n_items + 1)
        return out.scatter_add(1, sequences, scores * last)[:, 1:]

    def query(
        self, items: torch.Tensor, kinds: torch.Tensor | None = None, gaps: torch.Tensor | None = None, head: str | None = None
    ) -> torch.Tensor:
        """[B, L] -> [B, dim]: the vector whose dot product with an item's embedding scores it, from the last position,
        through the purchase head when `head` (default: the served one) is next_purchase."""
        last = self.forward(items, kinds, gaps)[:, -1]
        return self.purchase_head(last) if (head or self.config.served_head) == "next_purchase" else last

    def score_next(
        self, items: torch.Tensor, kinds: torch.Tensor | None = None, gaps: torch.Tensor | None = None, head: str | None = None
    ) -> torch.Tensor:
        """[B, L] -> [B, n_items] scores for the next item; column j is item id j + 1."""
        head = head or self.config.served_head
        scores = self.query(items, kinds, gaps, head) @ self.item_embeddings()[1:].T
        if self.config.repeat_head:
            age = torch.arange(items.shape[1] - 1, -1, -1, device=items.device).float().expand(items.shape)
            scores = scores + self.repeat_scores(items, age, kinds, head)
        return scores

    def behaviour_loss(
        self, items: torch.Tensor, kinds: torch.Tensor, gaps: torch.Tensor, targets: torch.Tensor, purchase_targets: torch.Tensor
    ) -> torch.Tensor:
        """Next-event cross-entropy, plus `purchase_weight` x the purchase head's next-purchase cross-entropy, each a mean
        over the positions that have that target (full softmax; `behaviour_windows` makes the arrays)."""
        hidden = self.forward(items, kinds, gaps)
        table = self.item_embeddings()[1:]
        keep = targets != 0
        logits = hidden[keep] @ table.T
        if self.config.repeat_head:
            logits = logits + self._repeat_scores_at(items, keep, kinds)
        loss = F.cross_entropy(logits, targets[keep] - 1)
        bought = purchase_targets != 0
        if self.config.purchase_weight > 0 and bought.any():
            purchase_logits = self.purchase_head(hidden[bought]) @ table.T
            if self.config.repeat_head:
                purchase_logits = purchase_logits + self._repeat_scores_at(items, bought, kinds, "next_purchase")
            loss = loss + self.config.purchase_weight * F.cross_entropy(purchase_logits, purchase_targets[bought] - 1)
        return loss

    def loss(self, items: torch.Tensor, targets: torch.Tensor, item_log_q: torch.Tensor | None = None) -> torch.Tensor:
        """Mean next-item cross-entropy over the positions where `targets` != 0.

        items, targets: LongTensor[B, L] (targets[b, t] is the item after items[b, t]; 0 = ignore).
        item_log_q: sampled_softmax only: log-probabilities [n_items + 1] of the proposal the
        negatives are drawn from (row 0 = -inf; finite for every item that can be a target);
        uniform over items when None.
        """
        if targets.dim() == 3:
            return self.basket_loss(items, targets)
        keep = targets != 0
        hidden = self.forward(items)[keep]  # [N, dim]
        targets = targets[keep]  # [N]
        table = self.item_embeddings()
        if self.config.loss == "full_softmax":
            logits = hidden @ table[1:].T  # padding row excluded from the softmax
            if self.config.repeat_head:
                logits = logits + self._repeat_scores_at(items, keep)
            return F.cross_entropy(logits, targets - 1)
        if item_log_q is None:
            item_log_q = uniform_log_q(self.n_items, device=table.device)
        elif item_log_q.shape != (self.n_items + 1,):
            raise ValueError(f"item_log_q must have shape ({self.n_items + 1},) (row 0 = padding), got {tuple(item_log_q.shape)}")
        negatives = sample_negatives(item_log_q, self.config.n_negatives)
        logits = sampled_softmax_logits(hidden, table, targets, negatives, item_log_q)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def _repeat_scores_at(
        self, items: torch.Tensor, keep: torch.Tensor, kinds: torch.Tensor | None = None, head: str = "next_item"
    ) -> torch.Tensor:
        """Repeat-head scores at every position where `keep` [B, L] is true."""
        rows, positions = keep.nonzero(as_tuple=True)
        age = (positions[:, None] - torch.arange(items.shape[1], device=items.device)[None, :]).float()
        return self.repeat_scores(items[rows], age, None if kinds is None else kinds[rows], head)

    def basket_loss(self, items: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Full-softmax cross-entropy of every item of the next basket, at the positions that end a basket.

        targets: LongTensor[B, L, T], the next basket's items (0-padded) at basket-end positions,
        all zeros elsewhere. Each target item counts once: the loss is the mean over them.
        """
        keep = (targets != 0).any(-1)  # [B, L]
        logits = self.forward(items)[keep] @ self.item_embeddings()[1:].T  # [N, n_items]
        if self.config.repeat_head:
            logits = logits + self._repeat_scores_at(items, keep)
        basket = targets[keep]  # [N, T]
        log_probs = logits.log_softmax(-1).gather(1, (basket - 1).clamp(min=0))
        present = basket != 0
        return -(log_probs * present).sum() / present.sum()


def uniform_log_q(n_items: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Uniform proposal over items 1..n_items as log-probabilities; row 0 (padding) = -inf."""
    log_q = torch.full((n_items + 1,), -math.log(n_items), device=device)
    log_q[0] = -math.inf
    return log_q


def sample_negatives(item_log_q: torch.Tensor, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """`n` item ids drawn with replacement from exp(item_log_q), shared by the whole batch."""
    return torch.multinomial(item_log_q.softmax(0), n, replacement=True, generator=generator)


def sampled_softmax_logits(
    hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, item_log_q: torch.Tensor
) -> torch.Tensor:
    """[N, 1 + K] logQ-corrected logits (sampled_softmax.py), column 0 the target, columns 1.. the K
    negatives shared by every row; a negative equal to the row's target is an accidental hit."""
    scores = torch.cat([(hidden * table[targets]).sum(-1, keepdim=True), hidden @ table[negatives].T], dim=1)
    log_q = torch.cat([item_log_q[targets][:, None], item_log_q[negatives][None, :].expand(len(targets), -1)], dim=1)
    hits = torch.cat([torch.zeros_like(targets, dtype=torch.bool)[:, None], negatives[None, :] == targets[:, None]], dim=1)
    return corrected_logits(scores, log_q, hits)
