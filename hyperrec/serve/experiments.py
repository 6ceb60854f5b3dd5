"""An A/B experiment the endpoint runs (`experiment: configs/experiment/NAME.yaml` in the serve config).

Every answer goes to the shopper's arm: the sticky salted hash of the user, or of the session for an
anonymous shopper (hyperrec/experiment/assignment.py). An arm serves its `model_version` (default: the
endpoint's current version) with the endpoint's policy settings changed by its `overrides`, which must
be `policy.*` settings (margin weight, diversity, exploration, ...): what else differs between arms
(stages, stores, budgets) would need an endpoint of its own. The holdout share gets the default answer
and is logged as `holdout`. Each arm's exploration slot learns on its own. The answer and the audit
record say the experiment and the arm; `hyperrec experiment collect` turns the audit and event logs
into the exposures and outcomes `hyperrec experiment analyze` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hyperrec.bundle.features import ItemTable
from hyperrec.config import ConfigError, set_dotted, validate
from hyperrec.experiment.assignment import ExperimentSpec, assign, load_spec, unit_key
from hyperrec.serve.bandit import Explorer
from hyperrec.serve.config import PolicyConfig
from hyperrec.serve.policy import Policy

POLICY_PREFIX = "policy."


@dataclass(frozen=True)
class ServedArm:
    name: str
    model_version: str | None  # the registry's spec (v0003, current, last-good); None = the endpoint's current version
    policy: PolicyConfig
    explorer: Explorer


class ServedExperiment:
    def __init__(self, spec: ExperimentSpec, base: PolicyConfig, where: Path | str):
        self.spec = spec
        self.arms: dict[str, ServedArm] = {}
        for i, arm in enumerate(spec.arms):
            raw: dict[str, Any] = base.model_dump()
            for key, value in arm.overrides.items():
                if not key.startswith(POLICY_PREFIX):
                    raise ConfigError(
                        f"{where}: arms.{i}.overrides: '{key}' is not a policy setting; one endpoint's arms differ only in "
                        f"policy.* settings and model_version (run another endpoint for anything else)"
                    )
                set_dotted(raw, key.removeprefix(POLICY_PREFIX).split("."), value)
            policy = validate(raw, f"{where}: arms.{i}.overrides", PolicyConfig)
            self.arms[arm.name] = ServedArm(arm.name, arm.model_version, policy, Explorer(policy.explore))
        self._policies: dict[tuple[str, str], Policy] = {}

    @classmethod
    def load(cls, path: Path, base: PolicyConfig) -> ServedExperiment:
        return cls(load_spec(path), base, path)

    def arm_of(self, user_id: str | None, session_id: str | None) -> str:
        """The shopper's arm or HOLDOUT (an answer with neither id cannot be asked for: the request schema needs one)."""
        return assign(self.spec, unit_key(user_id, session_id))

    def versions(self) -> set[str]:
        return {arm.model_version for arm in self.arms.values() if arm.model_version is not None}

    def forget(self, version: str) -> None:
        """Drop the arms' policies over a version the endpoint no longer serves."""
        self._policies = {key: policy for key, policy in self._policies.items() if key[1] != version}

    def policy(self, arm: str, version: str, table: ItemTable, item_vectors: np.ndarray) -> Policy | None:
        """The arm's policy over `version`'s items (made once per arm and version); None for the holdout."""
        served = self.arms.get(arm)
        if served is None:
            return None
        key = (arm, version)
        if key not in self._policies:
            self._policies[key] = Policy(served.policy, table, item_vectors, served.explorer)
        return self._policies[key]
