"""Online quality from delayed labels: per served version, the share of its answers that shoppers clicked or bought from.

An exposure is one answer (a slate) a version served to a shopper. A label is a later event of the same
shopper (user or session) about one of the slate's items: a click or an add-to-cart is a click-through, a
purchase a conversion. It marks the newest of the shopper's exposures that showed the item, if that exposure
is at most `attribution_s` old when the event arrives (arrival time: the server's own clock, as for the
exposure). Per version the newest `window` exposures are kept; CTR and conversion are taken over those at
least `mature_s` old (labels are delayed: a version just swapped in would otherwise look worse than one
whose labels have all come in), so they follow the version's recent answers. The monitors compare them:
a version against the last-good one, a canary against the current one.

Thread-safe: answers are recorded on the event loop, labels from the /events worker threads.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from dataclasses import dataclass

from pydantic import Field

from hyperrec.config import StrictModel

CLICK_THROUGH = ("click", "add_to_cart")
CONVERSION = ("purchase",)


class QualityConfig(StrictModel):
    attribution_s: float = Field(1800.0, gt=0, description="a label counts for an exposure at most this old when it arrives")
    mature_s: float = Field(60.0, ge=0, description="exposures younger than this are not counted yet (their labels may still come)")
    window: int = Field(2_000, ge=10, description="newest exposures per version over which CTR and conversion are taken")
    per_shopper: int = Field(10, ge=1, description="newest exposures kept per shopper for attribution")
    shoppers: int = Field(100_000, ge=1, description="shoppers whose recent exposures are kept (the least recent are forgotten)")


@dataclass(eq=False)
class Exposure:
    version: str
    items: frozenset[int]
    at: float  # Unix time of the answer
    clicked: bool = False
    converted: bool = False


@dataclass(frozen=True)
class VersionQuality:
    version: str
    exposures: int
    clicked: int
    converted: int

    @property
    def ctr(self) -> float:
        return self.clicked / self.exposures if self.exposures else 0.0

    @property
    def conversion(self) -> float:
        return self.converted / self.exposures if self.exposures else 0.0


class OnlineQuality:
    def __init__(self, config: QualityConfig):
        self.config = config
        self._shoppers: OrderedDict[str, deque[Exposure]] = OrderedDict()
        self._windows: dict[str, deque[Exposure]] = {}
        self._lock = threading.Lock()

    def expose(self, shoppers: list[str], version: str, items: list[int], at: float) -> None:
        """One answer of `version` to the shopper known by `shoppers` (their user and session keys)."""
        exposure = Exposure(version, frozenset(items), at)
        with self._lock:
            self._windows.setdefault(version, deque(maxlen=self.config.window)).append(exposure)
            for shopper in shoppers:
                recent = self._shoppers.pop(shopper, None) or deque(maxlen=self.config.per_shopper)
                recent.append(exposure)
                self._shoppers[shopper] = recent  # the most recently seen last
            while len(self._shoppers) > self.config.shoppers:
                self._shoppers.popitem(last=False)

    def label(self, shoppers: list[str], kind: str, item: int, at: float) -> str | None:
        """An event of the shopper about `item` arrived at `at`: mark the newest exposure that showed it. Returns the
        version credited, if any."""
        if kind not in CLICK_THROUGH and kind not in CONVERSION:
            return None
        with self._lock:
            window = self.config.attribution_s
            shown = [e for s in shoppers for e in self._shoppers.get(s, ()) if item in e.items and 0 <= at - e.at <= window]
            if not shown:
                return None
            newest = max(shown, key=lambda e: e.at)
            if kind in CLICK_THROUGH:
                newest.clicked = True
            else:
                newest.converted = True
            return newest.version

    def of(self, version: str, now: float) -> VersionQuality:
        """The version's CTR and conversion over its window's exposures that are old enough at `now`."""
        with self._lock:
            window = [e for e in self._windows.get(version, ()) if now - e.at >= self.config.mature_s]
        return VersionQuality(version, len(window), sum(e.clicked for e in window), sum(e.converted for e in window))

    def forget(self, version: str) -> None:
        """A version served again later starts afresh (its shoppers' exposures age out by themselves)."""
        with self._lock:
            self._windows.pop(version, None)
