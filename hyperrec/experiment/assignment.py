"""Experiments' arms and the sticky assignment of a unit to an arm, as pure code the serving side calls.

A unit is a user, or the session for an anonymous shopper. Its arm is a salted hash of its key: the
same unit always gets the same arm of one experiment (sticky, no state to store), and experiments
with different salts split the same units independently of each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from hyperrec.config import StrictModel, load_config

HOLDOUT = "holdout"  # the group a holdout share of units falls in: served the default, in no arm
SHARE_TOLERANCE = 1e-9


class Arm(StrictModel):
    """One arm: what it serves (a registry version and/or policy settings) and its traffic share."""

    name: str = Field(min_length=1, max_length=64)
    model_version: str | None = None  # e.g. v0003, current, last-good
    overrides: dict[str, Any] = {}  # dotted serve settings, e.g. {"policy.margin_weight": 0.2}
    share: float = Field(gt=0, le=1)


class SequentialConfig(StrictModel):
    """The pre-registered stop rule. With `max_units` (the planned units over all arms) the confidence
    sequence spends alpha on that horizon (stats.horizon_sequence, any look times); without it, the
    normal mixture covers an open-ended experiment (stats.confidence_sequence) with mixing sd `tau`
    given as a share of the metric's standard deviation (a standardised effect size)."""

    alpha: float = Field(0.05, gt=0, lt=1)
    max_units: int | None = Field(None, ge=2)
    tau: float = Field(0.05, gt=0)


class ExperimentSpec(StrictModel):
    """An experiment: the arms (the first is control unless `control` names another) and a holdout share.
    Shares of the arms and the holdout sum to one."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    salt: str = Field(min_length=1)
    arms: list[Arm] = Field(min_length=2)
    holdout: float = Field(0.0, ge=0, lt=1)
    control: str | None = None
    sequential: SequentialConfig = SequentialConfig()

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentSpec:
        names = [arm.name for arm in self.arms]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ValueError(f"arms: names must be unique, {duplicated} appear more than once")
        if HOLDOUT in names:
            raise ValueError(f"arms: '{HOLDOUT}' is reserved for the holdout group; rename that arm")
        for i, arm in enumerate(self.arms):
            if arm.model_version is None and not arm.overrides:
                raise ValueError(f"arms.{i} ({arm.name}): needs a model_version or policy overrides (otherwise it serves nothing specific)")
        total = sum(arm.share for arm in self.arms) + self.holdout
        if abs(total - 1) > SHARE_TOLERANCE:
            shares = " + ".join(f"{arm.name} {arm.share:g}" for arm in self.arms)
            raise ValueError(f"arms.*.share + holdout must sum to 1, got {shares} + holdout {self.holdout:g} = {total:g}")
        if self.control is not None and self.control not in names:
            raise ValueError(f"control: '{self.control}' is not an arm (arms: {names})")
        return self

    @property
    def arm_names(self) -> list[str]:
        return [arm.name for arm in self.arms]

    @property
    def control_arm(self) -> str:
        return self.control or self.arms[0].name

    def shares(self, with_holdout: bool) -> dict[str, float]:
        """Each group's share of the units the analysis sees (renormalised over the arms without the holdout)."""
        shares = {arm.name: arm.share for arm in self.arms}
        if with_holdout and self.holdout > 0:
            return shares | {HOLDOUT: self.holdout}
        total = sum(shares.values())
        return {name: share / total for name, share in shares.items()}


def load_spec(path: Path) -> ExperimentSpec:
    """An experiment YAML (configs/experiment/..., or the copy the serving side writes next to its logs)."""
    return load_config(path, schema=ExperimentSpec)


def unit_key(user_id: str | None, session_id: str | None) -> str:
    """The unit of assignment: the user when known, else the session (an anonymous shopper)."""
    if user_id:
        return f"user:{user_id}"
    if session_id:
        return f"session:{session_id}"
    raise ValueError("a unit needs a user_id or a session_id")


def bucket(salt: str, key: str) -> float:
    """A uniform number in [0, 1) from the salted hash of a unit key."""
    digest = hashlib.sha256(f"{salt}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _boundaries(spec: ExperimentSpec) -> tuple[np.ndarray, list[str]]:
    groups = ([HOLDOUT] if spec.holdout > 0 else []) + spec.arm_names
    shares = ([spec.holdout] if spec.holdout > 0 else []) + [arm.share for arm in spec.arms]
    edges = np.cumsum(shares)
    edges[-1] = 1.0  # rounding never leaves a bucket without a group
    return edges, groups


def assign(spec: ExperimentSpec, key: str) -> str:
    """The arm (or HOLDOUT) of one unit key; the same key always gets the same answer."""
    edges, groups = _boundaries(spec)
    return groups[int(np.searchsorted(edges, bucket(spec.salt, key), side="right"))]


def assign_many(spec: ExperimentSpec, keys: Iterable[str]) -> np.ndarray:
    """`assign` for many keys at once (an array of group names)."""
    edges, groups = _boundaries(spec)
    buckets = np.fromiter((bucket(spec.salt, key) for key in keys), float)
    return np.asarray(groups, dtype=object)[np.searchsorted(edges, buckets, side="right")]
