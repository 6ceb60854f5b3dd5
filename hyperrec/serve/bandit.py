"""The exploration slot as a contextual bandit: which new-to-the-shopper item takes the slot.

Each answer with an exploration slot offers the bandit a pool: the best `pool` candidates by the
policy's adjusted score that are new to the shopper and not already in the list. Every pool item is
described by SLOT_FEATURES (the candidate's ranker score and popularity, its margin and price, and
how it relates to the shopper: similarity to their recent items, their share of its category).

- `bandit`: LinUCB (Li et al. 2010) over those features, mixed with epsilon-greedy so that every pool
  item has a real, logged probability: (1 - epsilon) on the arg-max of the upper confidence bound,
  epsilon spread evenly. It learns online from the rewards that arrive through /events.
- `random`: every pool item equally likely (the logging policy off-policy estimates like best).

A decision's reward is what the shopper then did with the slot's item, weighted by `ExploreConfig.reward`
(click, add to cart, purchase value), until the shopper's next answer on the same page or `window_s`,
whichever comes first; then the model learns from it. The state lives in the serving process: with
several ingress replicas each learns from the rewards it receives for its own decisions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hyperrec.serve.config import ExploreConfig

SLOT_FEATURES = ("bias", "score_z", "pool_rank", "popularity", "margin", "log_price", "recent_similarity", "category_share")


@dataclass(frozen=True)
class SlotChoice:
    """The bandit's draw: the chosen pool position and every pool item's probability."""

    index: int
    probabilities: np.ndarray


class LinUCB:
    """Ridge regression of the reward on the features, with the inverse Gram matrix kept by Sherman-Morrison updates."""

    def __init__(self, dims: int, l2: float, alpha: float):
        self.alpha = alpha
        self.inverse = np.eye(dims) / l2
        self.moment = np.zeros(dims)
        self.updates = 0

    @property
    def theta(self) -> np.ndarray:
        return self.inverse @ self.moment

    def upper_bounds(self, features: np.ndarray) -> np.ndarray:
        width = np.sqrt(np.maximum(np.einsum("nd,de,ne->n", features, self.inverse, features), 0.0))
        return features @ self.theta + self.alpha * width

    def update(self, x: np.ndarray, reward: float) -> None:
        ax = self.inverse @ x
        self.inverse -= np.outer(ax, ax) / (1.0 + x @ ax)
        self.moment += reward * x
        self.updates += 1


@dataclass
class _Pending:
    trace_id: str
    item: int
    features: np.ndarray
    reward: float = 0.0


@dataclass
class Explorer:
    """One serving process's exploration slot: draws, pending decisions and their rewards, the model."""

    config: ExploreConfig
    model: LinUCB = field(init=False)
    rng: np.random.Generator = field(init=False)
    _pending: dict[str, dict[str, _Pending]] = field(default_factory=dict)  # shopper -> page -> the open decision
    _opened: deque[tuple[float, str, str, str]] = field(default_factory=deque)  # (at, shopper, page, trace) in time order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.model = LinUCB(len(SLOT_FEATURES), self.config.l2, self.config.alpha)
        self.rng = np.random.default_rng(self.config.seed)

    def choose(self, features: np.ndarray) -> SlotChoice:
        n = len(features)
        if self.config.kind == "random":
            probabilities = np.full(n, 1.0 / n)
        else:
            with self._lock:
                best = int(np.argmax(self.model.upper_bounds(features)))
            probabilities = np.full(n, self.config.epsilon / n)
            probabilities[best] += 1.0 - self.config.epsilon
        return SlotChoice(int(self.rng.choice(n, p=probabilities)), probabilities)

    def opened(self, shopper: str, page: str, trace_id: str, item: int, features: np.ndarray, now: float | None = None) -> None:
        """A slot was shown: the shopper's previous decision on this page closes, this one waits for its reward."""
        now = time.time() if now is None else now
        with self._lock:
            self._close_expired(now)
            pages = self._pending.setdefault(shopper, {})
            if page in pages:
                self._learn(pages.pop(page))
            pages[page] = _Pending(trace_id, item, features)
            self._opened.append((now, shopper, page, trace_id))

    def rewarded(self, shoppers: list[str], kind: str, item: int, value: float) -> None:
        """An event of `shoppers` on `item`: a reward for their open decision that showed it (none: nothing to do)."""
        weight = self.config.reward.of(kind, value)
        if weight == 0.0 or not self._pending:
            return
        with self._lock:
            for shopper in shoppers:
                for pending in self._pending.get(shopper, {}).values():
                    if pending.item == item:
                        pending.reward += weight

    def _close_expired(self, now: float) -> None:
        while self._opened and self._opened[0][0] < now - self.config.window_s:
            _, shopper, page, trace_id = self._opened.popleft()
            pages = self._pending.get(shopper, {})
            if page in pages and pages[page].trace_id == trace_id:
                self._learn(pages.pop(page))
                if not pages:
                    del self._pending[shopper]

    def _learn(self, pending: _Pending) -> None:
        if self.config.kind == "bandit":
            self.model.update(pending.features, pending.reward)


def slot_features(
    scores: np.ndarray,
    pool: np.ndarray,
    popularity: np.ndarray,
    margin: np.ndarray,
    price: np.ndarray,
    recent_similarity: np.ndarray,
    category_share: np.ndarray,
) -> np.ndarray:
    """SLOT_FEATURES of the pool (candidate positions, best first) given every candidate's adjusted score
    and the pool items' facts (popularity as log1p over the catalogue's largest, margin as a rate, price in
    currency): a (len(pool), len(SLOT_FEATURES)) matrix, each column on a unit-ish scale."""
    spread = scores.std() if len(scores) > 1 else 0.0
    score_z = (scores[pool] - scores.mean()) / spread if spread > 0 else np.zeros(len(pool))
    return np.column_stack(
        [
            np.ones(len(pool)),
            score_z,
            np.arange(len(pool)) / max(len(pool) - 1, 1),
            popularity,
            margin,
            np.log(np.clip(price, 0.01, None)) / 5.0,
            recent_similarity,
            category_share,
        ]
    )
