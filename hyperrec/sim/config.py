"""`hyperrec simulate` settings: the shop, the simulated days, how shoppers look at a slate, and the arms.

The shop's timeline is the generator's (`shop.days` days): the first `history_days` are the history
the served model is trained on (`hyperrec simulate CONFIG --write-history DIR`), then `pre_days` of
organic shopping before the experiment (CUPED's pre-period; the serving side ingests it), then
`days` of the experiment, where every session also gets a slate from its arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from hyperrec.config import NameRule, StrictModel, SyntheticConfig, load_config, set_dotted
from hyperrec.experiment.assignment import SequentialConfig


class ExaminationConfig(StrictModel):
    """The chance that a shopper looks at rank r (1 = top) of a slate, independently of the other ranks.
    log2: 1 / log2(r + 1) (the DCG discount); geometric: decay^(r - 1)."""

    kind: Literal["log2", "geometric"] = "log2"
    decay: float = Field(0.8, gt=0, le=1, description="geometric only: examination of rank r + 1 over rank r")


class SimArm(StrictModel):
    """One arm: a registry version served by an in-process flow (or the endpoint at `url`), and what
    the shop does with its answer before the shopper sees it."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    share: float = Field(gt=0, le=1)
    registry: Path = Path("experiments/registry-sim")
    version: str = "current"
    serve: dict[str, Any] = Field({}, description="dotted serve settings of this arm's flow, e.g. {policy.diversity: 0.5}")
    popularity: bool = Field(False, description="serve the flow's popularity answer only (retrieval switched off by fault injection)")
    display: Literal["served", "shuffled", "reversed"] = Field(
        "served", description="shuffled / reversed: the slate in a random / the reverse order (position-bias check, a known worse arm)"
    )
    url: str | None = Field(None, description="mode http: this arm's endpoint, e.g. http://127.0.0.1:8000")


class SimConfig(StrictModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="the experiment's name (its log folder)")
    seed: int = 0
    shop: SyntheticConfig
    history_days: int = Field(ge=1, description="days of history before the pre-period (the training data)")
    pre_days: int = Field(14, ge=1, description="organic days before the experiment: CUPED's covariate (analyze --pre-days)")
    days: int = Field(ge=1, description="days of the experiment")
    sessions_per_day: int | None = Field(None, ge=1, description="at most this many of the generator's sessions a day (a seeded sample)")
    k: int = Field(10, ge=1, le=100, description="slate length")
    placements: list[Literal["home", "product", "cart"]] = Field(
        ["home"],
        min_length=1,
        description="where shoppers ask for slates: home at each session's start, product at their first organic view "
        "(that item's page), cart right after their first organic add to cart",
    )
    examination: ExaminationConfig = ExaminationConfig()
    attention: float = Field(
        100.0, gt=0, description="an examined item is clicked with P_CLICK * m / (1 + m), m = attention x its share of the demand"
    )
    mode: Literal["in_process", "http"] = "in_process"
    paired: bool = Field(
        False,
        description="every arm also ingests every shopper's events and answers each of their visits unseen; the "
        "simulator scores every arm's slate for the same shopper and moment with its truth (the `paired` table)",
    )
    arms: list[SimArm] = Field(min_length=2)
    salt: str | None = Field(None, description="assignment salt (default: the name)")
    sequential: SequentialConfig = SequentialConfig()
    logs: Path = Path("experiments/logs")
    results: Path = Field(Path("experiments/results/sim"), description="the run's tables go to results/NAME/")

    @model_validator(mode="after")
    def _consistent(self) -> SimConfig:
        total = self.history_days + self.pre_days + self.days
        if self.shop.days != total:
            raise ValueError(f"shop.days ({self.shop.days}) must equal history_days + pre_days + days ({total})")
        names = [arm.name for arm in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arms: names must be unique, got {names}")
        if abs(sum(arm.share for arm in self.arms) - 1) > 1e-9:
            raise ValueError(f"arms.*.share must sum to 1, got {' + '.join(f'{a.name} {a.share:g}' for a in self.arms)}")
        if self.paired:
            learning = [arm.name for arm in self.arms if _explore_kind(arm) == "bandit"]
            if learning:
                raise ValueError(f"paired: arm(s) {learning} run a bandit slot, which would learn from rewards of items it never showed")
        if self.mode == "http":
            missing = [arm.name for arm in self.arms if arm.url is None]
            if missing:
                raise ValueError(f"mode http: arm(s) {missing} need a url")
            unsupported = [arm.name for arm in self.arms if arm.popularity or arm.serve]
            if unsupported:
                raise ValueError(f"mode http: arm(s) {unsupported} set popularity or serve (in-process only): configure their endpoints")
        return self

    @property
    def start_day(self) -> int:
        """The experiment's first day (the pre-period ends here)."""
        return self.history_days + self.pre_days


def _explore_kind(arm: SimArm) -> str | None:
    """The arm's `policy.explore.kind` as its dotted serve settings set it (None: the serve default, no bandit)."""
    raw: dict[str, Any] = {}
    for key, value in arm.serve.items():
        set_dotted(raw, key.split("."), value)
    return raw.get("policy", {}).get("explore", {}).get("kind")


# An experiment's name is its log folder's name and its default assignment salt: no `=`, which would read as a
# partition key in the folder's path (`sim_taste_shop` + [seed=1] -> `sim_taste_shop.seed-1`).
EXPERIMENT_NAMES = NameRule(separator=".", unsafe=r"[^A-Za-z0-9_.-]", replacement="-", max_length=64)


def load_sim_config(path: Path, overrides: list[str] | None = None) -> SimConfig:
    """The YAML file, then dotted overrides (`seed=1`): an overridden config gets a name of its own (unless `name` is
    overridden too), so its assignment salt (unless set), logs and results are its own, not the committed run's."""
    return load_config(path, overrides, schema=SimConfig, name_rule=EXPERIMENT_NAMES)
