"""Session kNN baselines: S-KNN and V-SKNN (Ludewig & Jannach, "Evaluation of session-based
recommendation algorithms", UMUAI 2018, where they were hard to beat), on basket data.

On this data a *session* is a basket (one order; one event on the `last_item` split; with `by_session`,
the events of a visit, merged at 30 minutes of inactivity: `Interactions.sessions`). A user's
*current session* is their latest `current_baskets` basket(s); the *past sessions* are all other
baskets of the training data, the user's own earlier ones included.

- `SessionKNN` (S-KNN): of the past sessions that share an item with the current one, take the
  `sample_size` (M) most recent, keep the `k` most similar by cosine over item sets, and score
  an item by the summed similarity of the neighbours that hold it.
- `VSKNN` (V-SKNN): the same neighbourhood over a weighted current session: the item at position
  p of the L it spans weighs p / L (the latest 1, earlier ones linearly less; session-rec's
  default "div" weighting), similarity is the weighted overlap over the current session's
  distinct items, and an item's summed score is multiplied by 1 + λ·idf.

"Most recent" is by basket time. The Instacart sample has no calendar dates, so each user's
clock starts at a common epoch there and recent means late in a user's own history.
A user without baskets has no current session and gets all-zero scores (`recommend` then
orders by popularity, as for every method).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from hyperrec.data.sequences import Interactions
from hyperrec.models.base import Params, Recommender


class SessionKNNParams(Params):
    by_session: bool = Field(
        False, description="on event data: compare sessions (events merged at 30 min of inactivity), not single events"
    )
    k: int = Field(100, ge=1, description="neighbour sessions whose items are scored")
    sample_size: int = Field(
        1000, ge=1, description="M: the most recent past sessions sharing an item with the current one that are compared"
    )
    current_baskets: int = Field(1, ge=1, description="the user's latest baskets that together make the current session")


class SessionKNN(Recommender):
    """S-KNN: cosine over item sets; an item's score is the sum of its neighbour sessions' similarities."""

    Params = SessionKNNParams
    params: SessionKNNParams

    def _fit(self, data: Interactions, counts: sp.csr_matrix) -> None:
        data = data.sessions() if self.params.by_session else data
        self.sessions = data.basket_matrix()
        self.sessions_t = self.sessions.T.tocsr()
        n_baskets = np.array([len(user) for user in data.baskets], dtype=np.int64)
        ends = np.cumsum(n_baskets)
        # User u's current session is rows current_start[u] .. ends[u]-1 of `sessions`.
        self.current_start = np.maximum(ends - self.params.current_baskets, ends - n_baskets)
        self.session_user = np.repeat(np.arange(data.n_users), n_baskets)
        self.session_time = np.concatenate([np.asarray(t, dtype=np.float64) for t in data.times])
        self.session_size = np.diff(self.sessions.indptr)
        self.current = self._current_sessions(data)
        self.current_size = np.diff(self.current.indptr)
        self.item_weight = self._item_weights()

    def _current_sessions(self, data: Interactions) -> sp.csr_matrix:
        """users x items: the weight of each item of the user's current session."""
        rows, items, weights = [], [], []
        for user, baskets in enumerate(data.baskets):
            sequence = np.concatenate(baskets[-self.params.current_baskets :]) if baskets else np.empty(0, np.int64)
            unique, first_from_end = np.unique(sequence[::-1], return_index=True)
            position = len(sequence) - first_from_end  # 1-based; an item seen twice keeps its latest place
            rows.append(np.full(len(unique), user))
            items.append(unique)
            weights.append(self._position_weights(position, len(sequence)))
        return sp.csr_matrix((np.concatenate(weights), (np.concatenate(rows), np.concatenate(items))), shape=(data.n_users, data.n_items))

    def _position_weights(self, position: np.ndarray, length: int) -> np.ndarray:
        return np.ones(len(position))

    def _similarity(self, overlap: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        """Per stored entry (user row, session): the similarity; `overlap` is current @ sessions.T."""
        rows = _entry_rows(overlap)
        return overlap.data / np.sqrt(self.current_size[users[rows]] * self.session_size[overlap.indices])

    def _item_weights(self) -> np.ndarray:
        return np.ones(self.sessions.shape[1])

    def score(self, users: np.ndarray) -> np.ndarray:
        overlap = (self.current[users] @ self.sessions_t).tocsr()  # users x sessions: > 0 where they share an item
        rows, sessions = _entry_rows(overlap), overlap.indices
        own = (self.session_user[sessions] == users[rows]) & (sessions >= self.current_start[users[rows]])
        overlap.data[own] = 0  # the current session is not its own neighbour
        overlap.eliminate_zeros()
        sample = _top_per_row(overlap, self.session_time[overlap.indices], self.params.sample_size)
        sample.data = self._similarity(sample, users)
        neighbours = _top_per_row(sample, sample.data, self.params.k)
        return (neighbours @ self.sessions).toarray() * self.item_weight


class VSKNNParams(SessionKNNParams):
    idf_weight: float = Field(1.0, ge=0, description="λ: an item's score is multiplied by 1 + λ·idf (0: plain sums)")


class VSKNN(SessionKNN):
    """V-SKNN: position-weighted current session (linear decay), IDF-weighted item scores."""

    Params = VSKNNParams
    params: VSKNNParams

    def _position_weights(self, position: np.ndarray, length: int) -> np.ndarray:
        return position / length

    def _similarity(self, overlap: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
        return overlap.data / self.current_size[users[_entry_rows(overlap)]]

    def _item_weights(self) -> np.ndarray:
        sessions_with_item = np.diff(self.sessions_t.indptr)
        idf = np.log(self.sessions.shape[0] / np.maximum(sessions_with_item, 1))
        return 1 + self.params.idf_weight * idf


def _entry_rows(matrix: sp.csr_matrix) -> np.ndarray:
    """The row of each stored entry of a CSR matrix."""
    return np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))


def _top_per_row(matrix: sp.csr_matrix, key: np.ndarray, n: int) -> sp.csr_matrix:
    """Keep the n entries of each row with the largest `key` (one per stored entry); ties go to the
    higher column, i.e. the later session."""
    rows = _entry_rows(matrix)
    order = np.lexsort((-matrix.indices, -key, rows))
    rank = np.arange(len(order)) - matrix.indptr[rows[order]]
    keep = order[rank < n]
    return sp.csr_matrix((matrix.data[keep], (rows[keep], matrix.indices[keep])), shape=matrix.shape)
