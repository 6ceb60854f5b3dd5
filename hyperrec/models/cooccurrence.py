"""Last-basket co-occurrence: the items bought in the same basket as the items of the user's last one.

"Customers who bought this also bought" (the association rules of size two in Ludewig & Jannach's
session-based evaluations), with a basket as the session: c_ij counts the training baskets that
hold both i and j, and an item j scores the sum of c_ij over the items i of the user's last basket.
On event data every event is its own basket, so nothing co-occurs; `by_session` merges the events
of a visit into one basket (`Interactions.sessions`): session co-occurrence with the current session.
An item does not co-occur with itself, so an item of the last basket scores only through the
other items bought with it; a user without baskets gets all-zero scores (popularity order).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from hyperrec.data.sequences import Interactions
from hyperrec.models.base import Params, Recommender

Normalize = Literal["none", "conditional", "cosine"]


class CooccurrenceParams(Params):
    by_session: bool = Field(
        False, description="on event data: compare sessions (events merged at 30 min of inactivity), not single events"
    )
    normalize: Normalize = Field(
        "none",
        description="none: counts c_ij; conditional: c_ij / n_i, the share of baskets holding i that also hold j; "
        "cosine: c_ij / sqrt(n_i n_j); n_i = baskets holding i",
    )


class LastBasketCooccurrence(Recommender):
    Params = CooccurrenceParams
    params: CooccurrenceParams

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        data = data.sessions() if self.params.by_session else data
        baskets = data.basket_matrix()
        self.cooccurrence = cooccurrence_matrix(baskets, self.params.normalize)
        n_baskets = np.array([len(user) for user in data.baskets])
        users = np.flatnonzero(n_baskets)
        pick_last = sp.csr_matrix(
            (np.ones(len(users), np.float32), (users, np.cumsum(n_baskets)[users] - 1)), shape=(data.n_users, baskets.shape[0])
        )
        self.last_basket = (pick_last @ baskets).tocsr()

    def score(self, users: np.ndarray) -> np.ndarray:
        return (self.last_basket[users] @ self.cooccurrence).toarray()


def cooccurrence_matrix(baskets: sp.csr_matrix, normalize: Normalize) -> sp.csr_matrix:
    """items x items: c_ij (i != j) over `baskets` (baskets x items, 1 = holds), normalized as `CooccurrenceParams` says."""
    together = (baskets.T @ baskets).tocsr()
    n = together.diagonal()
    together = (together - sp.diags(n)).tocsr()
    together.eliminate_zeros()
    scale = 1 / np.sqrt(np.maximum(n, 1))  # an item in no basket has no entries to scale
    if normalize == "conditional":
        together = sp.diags(scale**2) @ together
    elif normalize == "cosine":
        together = sp.diags(scale) @ together @ sp.diags(scale)
    return together.tocsr()
