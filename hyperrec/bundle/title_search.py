"""The search placement's lexical index: BM25 over the catalogue's titles (the bm25s library).

Built when a version is loaded (about a second for 50,000 titles). A query is tokenized by the index's
own tokenizer (lower case, English stop words); words no title has are left out, so a query of only
such words matches nothing.
"""

from __future__ import annotations

import logging

import bm25s
import numpy as np
from bm25s.tokenization import Tokenizer

# bm25s sets its logger to DEBUG at import: every index build would print a line through the server's log handlers
logging.getLogger("bm25s").setLevel(logging.WARNING)


class TitleSearch:
    def __init__(self, titles: np.ndarray):
        self.n_titled = int(sum(bool(t) for t in titles))
        self.tokenizer = Tokenizer(stopwords="en")
        self.index = bm25s.BM25()
        if self.n_titled:
            self.index.index(self.tokenizer.tokenize([str(t) for t in titles], return_as="tuple", show_progress=False), show_progress=False)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best `k` items whose title matches `query` (item indices, best first) and their BM25 scores."""
        tokens = next(self.tokenizer.streaming_tokenize([query], update_vocab="never", allow_empty=False)) if self.n_titled else []
        if not tokens:
            return np.empty(0, np.int64), np.empty(0)
        scores = np.asarray(self.index.get_scores(tokens), np.float64)
        matched = np.flatnonzero(scores > 0)
        best = matched[np.lexsort((matched, -scores[matched]))][:k]
        return best.astype(np.int64), scores[best]
