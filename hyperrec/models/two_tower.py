"""Two-tower retriever: a user tower and an item tower that meet in one dot product.

Read top to bottom: config, item features, item tower, user tower, the model and its loss.

- Items are rows 1..n_items of every item table; row 0 is padding (the catalog's row i is item row
  i + 1). An item is its ID embedding plus content: category, price bucket and, optionally, a text
  vector. The ID and category tables live in a TorchRec `EmbeddingBagCollection`: with
  `train.sharded_embeddings` the training package shards it across the workers (TorchRec's planner,
  a fused optimizer that updates only the rows a step looked up); otherwise it runs unsharded, as
  plain `nn.EmbeddingBag`s. Either way the state dict holds the full tables.
- Cold start. ID embeddings start at zero and, during training, each item's ID is dropped with
  probability `id_dropout` (an empty bag pools to zero), so the content path alone learns to place
  items. An item whose ID row was never trained therefore still has a zero ID embedding: its full
  vector equals `encode_content_only`, and it lands next to items with similar content.
- A user is the item vectors of their recent items (the item tower's own output, so both towers
  share one space) run through a small bidirectional transformer, pooled, and combined with
  context: device, hour of day, day of week.
- Training is a sampled softmax over the batch's positives plus `n_sampled_negatives` items drawn
  from q = exp(item_log_q), with every logit corrected by -log q (Yi et al., "Sampling-bias-corrected
  neural modeling for large corpus item recommendations", RecSys 2019) and accidental hits masked.

Both towers return L2-normalised vectors, so retrieval is exact or approximate (FAISS) maximum inner
product search over `item_vectors()`. No training loop or data loading lives here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn
from torchrec.modules.embedding_configs import EmbeddingBagConfig, PoolingType
from torchrec.modules.embedding_modules import EmbeddingBagCollection
from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

from hyperrec.config import StrictModel
from hyperrec.data.catalog import UNKNOWN_CATEGORY
from hyperrec.models.sampled_softmax import corrected_logits
from hyperrec.models.transformer import Block

N_DEVICES = 4  # 0 unknown, 1 web, 2 ios, 3 android
N_HOURS = 24
N_WEEKDAYS = 7
UNIT_UNIFORM = 3**0.5  # uniform(-a, a) with a = sqrt(3) has unit variance, like nn.Embedding's N(0, 1) init


class TwoTowerConfig(StrictModel):
    dim: int = Field(64, ge=1, description="width of every embedding and of the output vectors")
    max_len: int = Field(50, ge=1, description="most recent items the user tower reads")
    n_heads: int = Field(2, ge=1)
    n_layers: int = Field(1, ge=0, description="transformer blocks in the user tower; 0 = pooling + MLP only")
    dropout: float = Field(0.1, ge=0, lt=1)
    temperature: float = Field(0.05, gt=0)
    n_sampled_negatives: int = Field(256, ge=0, description="drawn from q, in addition to in-batch negatives")
    id_dropout: float = Field(0.1, ge=0, le=1, description="probability of dropping an item's ID embedding in training")
    n_price_buckets: int = Field(10, ge=1, description="quantile buckets of known prices; bucket 0 = unknown")

    @model_validator(mode="after")
    def _heads_divide_dim(self) -> TwoTowerConfig:
        if self.dim % self.n_heads:
            raise ValueError(f"dim ({self.dim}) must be divisible by n_heads ({self.n_heads})")
        return self


# --------------------------------------------------------------------------------------------
# Item features
# --------------------------------------------------------------------------------------------


@dataclass
class ItemFeatures:
    """Content of item rows 0..n_items (row 0 = padding, all zeros).

    `category_vocab[c - 1]` names category id c; `price_edges` are the quantile edges used, so a new
    item can be bucketed the same way (`1 + searchsorted(price_edges, price, side="right")`).
    """

    category: Tensor  # LongTensor[n_items + 1], 0 = padding
    price_bucket: Tensor  # LongTensor[n_items + 1], 0 = unknown price
    text: Tensor | None = None  # FloatTensor[n_items + 1, text_dim]
    category_vocab: tuple[str, ...] = ()
    price_edges: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        n = len(self.category)
        if self.category.ndim != 1 or self.price_bucket.shape != (n,):
            shapes = f"{tuple(self.category.shape)} and {tuple(self.price_bucket.shape)}"
            raise ValueError(f"category and price_bucket must be 1-d of the same length; got {shapes}")
        if self.text is not None and (self.text.ndim != 2 or len(self.text) != n):
            raise ValueError(f"text must be [n_items + 1 = {n}, text_dim]; got {tuple(self.text.shape)}")

    @property
    def n_items(self) -> int:
        return len(self.category) - 1

    @property
    def n_categories(self) -> int:
        """Rows of the category table, padding included."""
        return max(len(self.category_vocab), int(self.category.max())) + 1

    @classmethod
    def from_catalog(cls, catalog: pd.DataFrame, n_price_buckets: int, text: np.ndarray | None = None) -> ItemFeatures:
        """Catalog row i becomes item row i + 1. Categories map to ids 1..C in sorted order (a missing
        category is "unknown"); known prices map to quantile buckets 1..n_price_buckets, NaN to 0.
        `text`, if given, is one vector per catalog row."""
        if n_price_buckets < 1:
            raise ValueError(f"n_price_buckets must be >= 1; got {n_price_buckets}")
        n = len(catalog)
        names = (
            catalog["category"].fillna(UNKNOWN_CATEGORY).astype(str).to_numpy() if "category" in catalog else np.full(n, UNKNOWN_CATEGORY)
        )
        vocab, codes = np.unique(names, return_inverse=True)
        category = np.zeros(n + 1, dtype=np.int64)
        category[1:] = codes + 1

        price = np.full(n, np.nan)
        if "price" in catalog:
            price = pd.to_numeric(catalog["price"], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        known = ~np.isnan(price)
        edges = np.quantile(price[known], np.linspace(0, 1, n_price_buckets + 1)[1:-1]) if known.any() else np.empty(0)
        price_bucket = np.zeros(n + 1, dtype=np.int64)
        price_bucket[1:][known] = 1 + np.searchsorted(edges, price[known], side="right")

        text_rows = None
        if text is not None:
            text = np.asarray(text, dtype=np.float32)
            if text.ndim != 2 or len(text) != n:
                raise ValueError(f"text must have one row per catalog item ({n}); got shape {text.shape}")
            text_rows = torch.from_numpy(np.concatenate([np.zeros((1, text.shape[1]), np.float32), text]))
        return cls(
            category=torch.from_numpy(category),
            price_bucket=torch.from_numpy(price_bucket),
            text=text_rows,
            category_vocab=tuple(str(v) for v in vocab),
            price_edges=tuple(float(e) for e in edges),
        )


# --------------------------------------------------------------------------------------------
# Item tower
# --------------------------------------------------------------------------------------------


class ItemTower(nn.Module):
    """Item row -> unit vector from ID + category (TorchRec tables), price bucket and text."""

    def __init__(self, config: TwoTowerConfig, features: ItemFeatures):
        super().__init__()
        d = config.dim
        self.id_dropout = config.id_dropout
        # Feature tensors are buffers: they move with .to(device) and travel in the state dict.
        self.register_buffer("category", features.category.long())
        self.register_buffer("price_bucket", features.price_bucket.long())
        self.register_buffer("text", None if features.text is None else features.text.float())
        # Init is given as min/max because TorchRec's sharded kernels honour those (not init_fn).
        # ID rows start at zero: a row that is never trained stays zero, which is exactly a dropped
        # ID, so cold items get content-only vectors. Category rows start at unit variance like the
        # nn.Embedding tables (TorchRec's default, +-sqrt(1 / rows), is far smaller, and the price
        # embedding would drown the category signal early in training).
        self.sparse = EmbeddingBagCollection(
            tables=[
                EmbeddingBagConfig(
                    name="item_id",
                    feature_names=["item_id"],
                    num_embeddings=features.n_items + 1,
                    embedding_dim=d,
                    pooling=PoolingType.SUM,
                    weight_init_min=0.0,
                    weight_init_max=0.0,
                ),
                EmbeddingBagConfig(
                    name="category",
                    feature_names=["category"],
                    num_embeddings=features.n_categories,
                    embedding_dim=d,
                    pooling=PoolingType.SUM,
                    weight_init_min=-UNIT_UNIFORM,
                    weight_init_max=UNIT_UNIFORM,
                ),
            ]
        )
        self.price = nn.Embedding(config.n_price_buckets + 1, d)
        self.text_proj = None if features.text is None else nn.Linear(features.text.shape[1], d)
        n_parts = 3 + (self.text_proj is not None)
        self.mlp = nn.Sequential(nn.Linear(n_parts * d, 2 * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(2 * d, d))

    def _encode(self, rows: Tensor, keep_id: Tensor) -> Tensor:
        """rows: LongTensor[N]; keep_id: BoolTensor[N]. A dropped ID (and padding) is an empty bag,
        which the SUM pooling turns into a zero vector; so is the category of padding."""
        real = rows > 0
        keep_id = keep_id & real
        kjt = KeyedJaggedTensor(
            keys=["item_id", "category"],
            values=torch.cat([rows[keep_id], self.category[rows][real]]),
            lengths=torch.cat([keep_id, real]).int(),  # key-major: all item_id lengths, then category
        )
        pooled = self.sparse(kjt)
        return self.combine(rows, pooled["item_id"], pooled["category"])

    def combine(self, rows: Tensor, item_id: Tensor, category: Tensor) -> Tensor:
        """[..., dim] ID and category embeddings of `rows` -> unit vectors, with price and text added.
        The one place the tower's parts meet: training (pooled bags) and the ONNX twin (lookups) call it."""
        parts = [item_id, category, self.price(self.price_bucket[rows])]
        if self.text_proj is not None:
            parts.append(self.text_proj(self.text[rows]))
        return F.normalize(self.mlp(torch.cat(parts, dim=-1)), dim=-1)

    def forward(self, item_rows: Tensor, drop_ids: bool = False) -> Tensor:
        """[N] item rows -> [N, dim] unit vectors. With `drop_ids`, each ID embedding is dropped with
        probability `id_dropout` (no rescaling: content-only must look the same at serving time)."""
        keep = torch.ones_like(item_rows, dtype=torch.bool)
        if drop_ids and self.id_dropout > 0:
            keep = torch.rand(item_rows.shape, device=item_rows.device) >= self.id_dropout
        return self._encode(item_rows, keep)

    def encode_content_only(self, item_rows: Tensor) -> Tensor:
        """Vectors from content alone (category, price, text): for items with no trained ID."""
        return self._encode(item_rows, torch.zeros_like(item_rows, dtype=torch.bool))


# --------------------------------------------------------------------------------------------
# User tower
# --------------------------------------------------------------------------------------------


class UserTower(nn.Module):
    """Recent item vectors + context -> unit vector.

    Takes item *vectors*, not rows, so that serving can feed precomputed `item_vectors()` and export
    this module to ONNX without the TorchRec tables."""

    def __init__(self, config: TwoTowerConfig):
        super().__init__()
        d = config.dim
        self.max_len = config.max_len
        self.position = nn.Embedding(config.max_len, d)  # position L-1 = most recent (left padding)
        nn.init.normal_(self.position.weight, std=0.02)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config.dim, config.n_heads, config.dropout) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.device_emb = nn.Embedding(N_DEVICES, d)
        self.hour_emb = nn.Embedding(N_HOURS, d)
        self.weekday_emb = nn.Embedding(N_WEEKDAYS, d)
        # pooled sequence (last position, masked mean) + three context embeddings
        self.mlp = nn.Sequential(nn.Linear(5 * d, 2 * d), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(2 * d, d))

    def forward(self, history: Tensor, valid: Tensor, device: Tensor, hour: Tensor, weekday: Tensor) -> Tensor:
        """history: [B, L, D] item vectors (anything at padding); valid: BoolTensor[B, L], left-padded;
        device, hour, weekday: LongTensor[B] in 0..3, 0..23, 0..6. Returns [B, D]."""
        history, valid = history[:, -self.max_len :], valid[:, -self.max_len :]
        length = history.shape[1]
        mask = valid.unsqueeze(-1).to(history.dtype)
        positions = torch.arange(self.max_len - length, self.max_len, device=history.device)
        x = self.drop(history * mask + self.position(positions))
        # A row with no valid item attends to everything (instead of nothing, which gives NaN); its
        # sequence output is zeroed by the pooling below, so it is scored on context alone.
        attend = (valid | ~valid.any(dim=1, keepdim=True))[:, None, None, :]
        for block in self.blocks:
            x = block(x, attend)
        x = self.ln_f(x) * mask
        last = x[:, -1]  # the most recent item; zero when the row is all padding
        mean = x.sum(dim=1) / mask.sum(dim=1).clamp(min=1)
        context = [self.device_emb(device), self.hour_emb(hour), self.weekday_emb(weekday)]
        return F.normalize(self.mlp(torch.cat([last, mean, *context], dim=-1)), dim=-1)


# --------------------------------------------------------------------------------------------
# Model and loss
# --------------------------------------------------------------------------------------------


def sampled_softmax_logits(scores: Tensor, candidate_log_q: Tensor, temperature: float, candidates: Tensor, positives: Tensor) -> Tensor:
    """logQ-corrected logits (sampled_softmax.py) of a sampled softmax whose target for row i is column i.

    scores: [B, C] dot products of B users with C candidates, the first B of which are the rows'
    positives; candidate_log_q: [C] log probability that each candidate is drawn as a negative;
    candidates: [C] their item rows; positives: [B] each row's positive item row. A candidate that is
    the row's own positive anywhere but column i (a duplicate in the batch or a sampled negative) is
    an accidental hit."""
    hit = candidates.unsqueeze(0) == positives.unsqueeze(1)
    hit[:, : len(positives)].fill_diagonal_(False)
    return corrected_logits(scores, candidate_log_q.unsqueeze(0), hit, temperature)


class TwoTower(nn.Module):
    def __init__(self, config: TwoTowerConfig, n_items: int, features: ItemFeatures):
        super().__init__()
        if features.n_items != n_items:
            raise ValueError(f"features cover {features.n_items} items (rows 1..n, plus padding row 0) but n_items is {n_items}")
        top_bucket = int(features.price_bucket.max())
        if top_bucket > config.n_price_buckets:
            raise ValueError(
                f"features use price bucket {top_bucket} but config.n_price_buckets is {config.n_price_buckets}; "
                "build them with ItemFeatures.from_catalog(..., n_price_buckets=config.n_price_buckets)"
            )
        self.config = config
        self.n_items = n_items
        self.item_tower = ItemTower(config, features)
        self.user_tower = UserTower(config)

    def user_vectors(self, items: Tensor, device: Tensor, hour: Tensor, weekday: Tensor) -> Tensor:
        """items: left-padded LongTensor[B, L] of item rows (0 = padding), the most recent last; only
        the last `max_len` are read. Returns [B, dim] unit vectors. In training mode the history's
        item IDs are dropped like the candidates' (see `id_dropout`)."""
        items = items[:, -self.config.max_len :]
        history = self.item_tower(items.reshape(-1), drop_ids=self.training).view(*items.shape, -1)
        return self.user_tower(history, items > 0, device, hour, weekday)

    @torch.no_grad()
    def item_vectors(self, item_rows: Tensor | None = None, batch_size: int = 8192) -> Tensor:
        """[N, dim] unit vectors of `item_rows` (default: all items 1..n_items, so index j is item row
        j + 1), computed in batches without gradients, for indexing. Call `.eval()` first."""
        if item_rows is None:
            item_rows = torch.arange(1, self.n_items + 1, device=self.item_tower.category.device)
        return torch.cat([self.item_tower(chunk) for chunk in item_rows.split(batch_size)])

    def sample_negatives(self, item_log_q: Tensor) -> Tensor:
        """`n_sampled_negatives` item rows drawn with replacement from q = exp(item_log_q) (never row 0)."""
        probs = item_log_q.detach().exp().clone()
        probs[0] = 0
        return torch.multinomial(probs, self.config.n_sampled_negatives, replacement=True)

    def logits(
        self,
        items: Tensor,
        device: Tensor,
        hour: Tensor,
        weekday: Tensor,
        positives: Tensor,
        item_log_q: Tensor,
        negatives: Tensor | None = None,
    ) -> Tensor:
        """[B, B + S] corrected logits over in-batch positives then sampled negatives (drawn here
        unless given); row i's target is column i."""
        if item_log_q.shape != (self.n_items + 1,):
            raise ValueError(
                f"item_log_q must have one entry per item row 0..n_items ({self.n_items + 1}); got shape {tuple(item_log_q.shape)}"
            )
        if negatives is None:
            negatives = self.sample_negatives(item_log_q) if self.config.n_sampled_negatives else positives[:0]
        candidates = torch.cat([positives, negatives])
        candidate_log_q = item_log_q[candidates]
        if not torch.isfinite(candidate_log_q).all():
            bad = candidates[~torch.isfinite(candidate_log_q)].unique()[:5].tolist()
            raise ValueError(
                f"item_log_q is not finite for candidate items {bad} (q = 0 would make their logit +inf); "
                "compute it from the positives you train on, or smooth it"
            )
        users = self.user_vectors(items, device, hour, weekday)
        scores = users @ self.item_tower(candidates, drop_ids=self.training).T
        return sampled_softmax_logits(scores, candidate_log_q, self.config.temperature, candidates, positives)

    def loss(self, items: Tensor, device: Tensor, hour: Tensor, weekday: Tensor, positives: Tensor, item_log_q: Tensor) -> Tensor:
        """Mean sampled-softmax cross-entropy of each row's positive item.

        item_log_q: FloatTensor[n_items + 1], log of each item's probability of being drawn as a
        candidate: its share of training positives (which is how in-batch negatives are drawn) and
        the distribution sampled negatives are drawn from. Every positive needs a finite log q;
        items with q = 0 (log q = -inf, e.g. row 0 and items never bought) are never sampled."""
        logits = self.logits(items, device, hour, weekday, positives, item_log_q)
        return F.cross_entropy(logits, torch.arange(len(positives), device=logits.device))
