"""Canary releases: a new version answers a share of the shoppers, beside the current one, until the monitors decide.

The shoppers a canary takes are drawn by a hash of the canary's version and the shopper (the user, else the
session): sticky for the canary's life, and another canary draws other shoppers. The monitors judge the
canary on the same bounds as any served version (drift, degraded share), its CTR against the current
version's over the same period; a broken bound ends it (every shopper back on the current version), and
`min_exposures` of its answers with no bound broken promote it (it becomes the current version, the old
one the last-good). With `promote: false` it only reports; an admin swaps.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field

from hyperrec.config import StrictModel


class CanaryConfig(StrictModel):
    share: float = Field(0.1, gt=0, lt=1, description="share of the shoppers a canary answers, unless the admin call says")
    min_exposures: int = Field(
        2_000, ge=1, description="the canary is promoted after this many of its answers (old enough to count) with no bound broken"
    )
    promote: bool = Field(True, description="promote a canary that passed by itself; false: it keeps its share until an admin acts")


@dataclass(frozen=True)
class Canary:
    version: str
    share: float
    started: float = field(default_factory=time.time)

    def takes(self, shopper: str) -> bool:
        digest = hashlib.blake2b(f"{self.version}:{shopper}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self.share * 2**64

    def describe(self) -> str:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started))
        return f"{self.version} answers {self.share:.0%} of the shoppers since {since}"


@dataclass(frozen=True)
class CanaryOutcome:
    version: str
    outcome: Literal["promoted", "rolled back"]
    reasons: list[str]
    at: float = field(default_factory=time.time)

    def describe(self) -> str:
        return f"canary {self.version} {self.outcome}: {'; '.join(self.reasons)}"
