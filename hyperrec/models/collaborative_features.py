"""Ranking features that need the whole user population, computed from a `HistorySummary`:

- collaborative (`neighbor_features`): over the user's nearest users (cosine of `user_vectors`),
  the item's weighted mean decayed share and the share of neighbours who bought it.
- basket context (`last_basket_features`): mean similarity to the items of the user's last basket,
  by in-basket co-occurrence (complements) and by in-history co-occurrence (`cooccurrence`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from hyperrec.models.features import HistorySummary


def user_vectors(summary: HistorySummary, decay_index: int = -1) -> sp.csr_matrix:
    """users x items: each user's decayed purchase shares (`decayed_share` of every bought item)."""
    n_users = len(summary.n_baskets)
    users = summary.keys // summary.n_items
    share = summary.decayed[:, decay_index] / np.maximum(summary.decayed_mass[users, decay_index], 1e-12)
    return sp.csr_matrix((share, (users, summary.keys % summary.n_items)), shape=(n_users, summary.n_items))


def neighbor_features(
    vectors: sp.csr_matrix, batch_users: np.ndarray, rows: np.ndarray, items: np.ndarray, k: int
) -> dict[str, np.ndarray]:
    """Collaborative features: over each user's k nearest other users (cosine of `user_vectors`),
    the similarity-weighted mean vector value of the item and the share of neighbours who bought it."""
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    unit = sp.diags(1.0 / np.maximum(norms, 1e-12)) @ vectors
    sims = (unit[batch_users] @ unit.T).toarray()
    sims[np.arange(len(batch_users)), batch_users] = -np.inf  # not your own neighbour
    k = min(k, vectors.shape[0] - 1)
    if k < 1:
        return {"nbr_score": np.zeros(len(items)), "nbr_share": np.zeros(len(items))}
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    weight = np.maximum(np.take_along_axis(sims, top, axis=1), 0.0)
    n = len(batch_users)
    w = sp.csr_matrix((weight.ravel(), (np.repeat(np.arange(n), k), top.ravel())), shape=(n, vectors.shape[0]))
    uniform = sp.csr_matrix((np.full(n * k, 1.0 / k), (np.repeat(np.arange(n), k), top.ravel())), shape=(n, vectors.shape[0]))
    weighted = sp.diags(1.0 / np.maximum(weight.sum(axis=1), 1e-12)) @ w @ vectors
    bought = uniform @ (vectors > 0).astype(np.float64)
    return {
        "nbr_score": np.asarray(weighted[rows, items]).ravel(),
        "nbr_share": np.asarray(bought[rows, items]).ravel(),
    }


def cooccurrence(summary: HistorySummary) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Item x item cosine similarities: of co-occurrence in one basket (complements) and in one
    user's history (complements and substitutes); diagonals zeroed."""
    flat = summary.flat
    basket = (
        np.cumsum(np.r_[True, (flat.user[1:] != flat.user[:-1]) | (flat.pos[1:] != flat.pos[:-1])]) - 1
        if len(flat.user)
        else np.empty(0, np.int64)
    )
    n_baskets = int(basket.max()) + 1 if len(basket) else 0
    out = []
    for rows, n_rows in ((basket, n_baskets), (flat.user, len(summary.n_baskets))):
        x = sp.csr_matrix((np.ones(len(rows)), (rows, flat.item)), shape=(n_rows, summary.n_items))
        x.data[:] = 1.0  # binary
        co = (x.T @ x).tocsr()
        norms = np.sqrt(co.diagonal())
        co.setdiag(0.0)
        co.eliminate_zeros()
        inv = sp.diags(1.0 / np.maximum(norms, 1.0))
        out.append((inv @ co @ inv).tocsr())
    return out[0], out[1]


def last_basket_features(
    summary: HistorySummary, similarities: tuple[sp.csr_matrix, sp.csr_matrix], users: np.ndarray, rows: np.ndarray, items: np.ndarray
) -> dict[str, np.ndarray]:
    """Mean similarity of the candidate to the items of the user's last basket (in-basket and
    in-history co-occurrence): what goes with, or replaces, what was just bought."""
    users = np.asarray(users, np.int64)
    flat = summary.flat
    in_last = flat.pos == summary.n_baskets[flat.user] - 1
    batch_row = np.full(len(summary.n_baskets), -1)
    batch_row[users] = np.arange(len(users))
    take = in_last & (batch_row[flat.user] >= 0)
    last = sp.csr_matrix((np.ones(int(take.sum())), (batch_row[flat.user[take]], flat.item[take])), shape=(len(users), summary.n_items))
    last = sp.diags(1.0 / np.maximum(np.asarray(last.sum(axis=1)).ravel(), 1.0)) @ last
    basket_sim, user_sim = similarities
    return {
        "last_basket_complement": np.asarray((last @ basket_sim)[rows, items]).ravel(),
        "last_basket_cohistory": np.asarray((last @ user_sim)[rows, items]).ravel(),
    }
