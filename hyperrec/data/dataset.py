"""A loaded dataset: contract events plus the catalog they refer to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Dataset:
    name: str
    events: pd.DataFrame  # columns: hyperrec.data.events.EVENT_COLUMNS
    catalog: pd.DataFrame  # columns: hyperrec.data.catalog.CATALOG_COLUMNS

    def fingerprint(self) -> str:
        """A short content hash of events and catalog, recorded next to every result."""
        digest = hashlib.sha256()
        for frame in (self.events, self.catalog):
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()[:16]
