"""The model registry on disk: exported versions, what they are, and which one serves.

    <root>/v0001/manifest.json   what the version is: source run, config, data fingerprint,
                                 offline metrics, ONNX parity, files
    <root>/v0001/...             encoder.onnx, ranker.onnx, item_vectors.npy, items.parquet, triton/
    <root>/CURRENT               the version `hyperrec serve` loads
    <root>/LAST_GOOD             the previous CURRENT: what serving keeps loaded as its fallback

Export writes a version into a staging folder and renames it into place, so a reader never sees
half a version. Promotion moves CURRENT only when the new version beats it on the gate metric.
Serving reads this module and hyperrec.bundle only; it never imports hyperrec.train or hyperrec.export.
What a version folder holds is hyperrec/bundle/manifest.py's business.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from hyperrec.bundle.manifest import MANIFEST, BundleError, Manifest, read_manifest, write_manifest
from hyperrec.bundle.store import Bundle, load

_VERSION = re.compile(r"^v(\d{4,})$")


class RegistryError(BundleError):
    """A registry or version that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str


class Registry:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            (p.name for p in self.root.iterdir() if _VERSION.match(p.name) and (p / MANIFEST).is_file()), key=lambda v: int(v[1:])
        )

    def path(self, version: str) -> Path:
        path = self.root / version
        if not (path / MANIFEST).is_file():
            raise RegistryError(f"{self.root}: no version '{version}' (have: {', '.join(self.versions()) or 'none'})")
        return path

    def manifest(self, version: str) -> Manifest:
        return read_manifest(self.path(version))

    def bundle(self, version: str) -> Bundle:
        return load(self.path(version))

    def _pointer(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text().strip() if path.is_file() else None

    def _set_pointer(self, name: str, version: str) -> None:
        tmp = self.root / f".{name}.tmp"
        tmp.write_text(version + "\n")
        os.replace(tmp, self.root / name)

    def current(self) -> str | None:
        return self._pointer("CURRENT")

    def last_good(self) -> str | None:
        return self._pointer("LAST_GOOD")

    def resolve(self, spec: str | None = None) -> str:
        """A version name from 'current' (default), 'last-good', 'latest' or 'vNNNN'."""
        spec = spec or "current"
        version = {"current": self.current, "last-good": self.last_good, "latest": lambda: (self.versions() or [None])[-1]}.get(
            spec, lambda: spec
        )()
        if version is None:
            raise RegistryError(f"{self.root}: no '{spec}' version yet; export one with `hyperrec export RUN --registry {self.root}`")
        self.path(version)
        return version

    def stage(self) -> tuple[str, Path]:
        """A fresh version name and an empty staging folder to write it in; `commit` publishes it."""
        self.root.mkdir(parents=True, exist_ok=True)
        taken = [int(v[1:]) for v in self.versions()]
        version = f"v{(max(taken) + 1 if taken else 1):04d}"
        staging = self.root / f".staging-{version}-{os.getpid()}-{time.time_ns()}"
        staging.mkdir()
        return version, staging

    def commit(self, version: str, staging: Path, manifest: Manifest) -> Path:
        """Write the manifest into `staging` and publish it as `version` in one rename."""
        write_manifest(staging, manifest.model_copy(update={"version": version, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        target = self.root / version
        os.rename(staging, target)
        return target

    def promote(self, version: str, metric: str, min_delta: float = 0.0, force: bool = False) -> Promotion:
        """Make `version` CURRENT if it beats CURRENT on `metric` by at least `min_delta` (or `force`)."""
        new = self.manifest(version)
        if not new.parity_passed and not force:
            return Promotion(False, "ONNX parity check failed")
        current = self.current()
        if current is not None and current != version and not force:
            old_value = self.manifest(current).metrics.get(metric)
            new_value = new.metrics.get(metric)
            if new_value is None:
                return Promotion(False, f"{version} has no '{metric}' to compare")
            if old_value is not None and new_value < old_value + min_delta:
                return Promotion(False, f"{metric} {new_value:.4f} does not beat {current}'s {old_value:.4f} by {min_delta}")
        if current is not None and current != version:
            self._set_pointer("LAST_GOOD", current)
        self._set_pointer("CURRENT", version)
        if self.last_good() is None:
            self._set_pointer("LAST_GOOD", version)
        return Promotion(True, "first version" if current is None else f"replaces {current}")
