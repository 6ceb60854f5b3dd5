"""Typed, validated configs: YAML files under configs/, dotted command-line overrides.

Every section is a pydantic model that forbids unknown keys, so a typo or a wrong type fails
with a `ConfigError` that names the key, the value and the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# The model kinds, named once: every table that implements them (models.baselines.BASELINES,
# train.model_factory.TASKS, export.modules.PLANS) is keyed by these and checked against them.
BaselineKind = Literal["popularity", "top_frequency", "item_knn", "tifu_knn", "sknn", "vsknn", "cooccurrence"]
ModelKind = Literal["sasrec", "two_tower"]

T = TypeVar("T", bound=BaseModel)
R = TypeVar("R")


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key and the value."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SyntheticConfig(StrictModel):
    """A seeded simulated shop (see hyperrec/data/synthetic.py)."""

    n_users: int = Field(2_000, ge=1)
    n_items: int = Field(1_000, ge=10)
    n_categories: int = Field(20, ge=1)
    sessions_per_user: float = Field(8.0, gt=0)
    taste_dim: int = Field(16, ge=2)
    taste_drift: float = Field(0.05, ge=0)
    repeat_prob: float = Field(0.35, ge=0, le=1)
    price_sensitivity: float = Field(1.0, ge=0)
    item_appeal: float = Field(1.0, ge=0, description="scale of the per-item appeal b_i (sd 1.2 x this); 0 = taste and price only")
    days: int = Field(90, ge=1)
    chunk_users: int = Field(5_000, ge=1)
    seed: int = 0


class DataConfig(StrictModel):
    source: Literal["instacart", "synthetic", "file", "store"] = "instacart"
    path: Path | None = None
    catalog_path: Path | None = None
    skip_invalid: bool = False
    event_types: list[str] = ["purchase"]
    split: Literal["last_basket", "last_item", "time", "last_session"] = "last_basket"
    time_split_quantiles: tuple[float, float] = (0.8, 0.9)
    session_target: Literal["click", "purchase"] = Field(
        "purchase", description="last_session: rank the next clicked item, or the session's purchases (data/session_split.py)"
    )
    anonymous_test: bool = Field(False, description="last_session: the test shoppers' events before their session are hidden")
    min_history: int = Field(1, ge=1)
    max_users: int | None = Field(None, ge=1)
    synthetic: SyntheticConfig = SyntheticConfig()

    @model_validator(mode="after")
    def _file_needs_path(self) -> DataConfig:
        if self.source in ("file", "store") and self.path is None:
            raise ValueError(f"data.source={self.source} needs data.path (a CSV/Parquet file of events, or an offline store directory)")
        if self.split == "last_session" and not {"view", self.session_target} <= set(self.event_types):
            raise ValueError(
                f"split last_session with session_target {self.session_target} needs event_types with view and {self.session_target}"
            )
        lo, hi = self.time_split_quantiles
        if not 0 < lo < hi < 1:
            raise ValueError("time_split_quantiles must satisfy 0 < validation < test < 1")
        return self


class MethodConfig(StrictModel):
    """One recommender to evaluate: `kind` picks the class, `params` its settings, `grid` the
    values tried on the validation split (the best by `eval.tune_metric` is used on test).
    Kind `run` evaluates a trained model from its run directory; kind `pipeline` chains
    candidate generation (`retrievers`: baselines or trained runs, repeat items, popularity) and a learned ranker (`params`:
    hyperrec.models.pipeline.PipelineConfig)."""

    kind: BaselineKind | Literal["run", "pipeline"]
    params: dict[str, Any] = {}
    grid: dict[str, list[float | int | bool | str]] = {}
    path: Path | None = Field(
        None, description="kind 'run': a training run directory, or experiments/runs/<config name> for that config's latest run"
    )
    head: Literal["next_item", "next_purchase"] | None = Field(
        None, description="kind 'run', a multi-behaviour SASRec: the head that scores (default: the run's served_head)"
    )
    retrievers: dict[str, MethodConfig] = Field(
        {}, description="kind 'pipeline': the candidate sources (baselines with fixed params, or trained runs)"
    )

    @model_validator(mode="after")
    def _kind_specific_keys(self) -> MethodConfig:
        if (self.kind == "run") != (self.path is not None):
            raise ValueError("a method of kind 'run' needs `path` (a run directory); other kinds take none")
        if self.kind == "run" and (self.params or self.grid):
            raise ValueError("a trained run has no params or grid to tune")
        if self.kind != "run" and self.head is not None:
            raise ValueError("`head` picks a trained run's head: only a method of kind 'run' takes it")
        if self.kind != "pipeline" and self.retrievers:
            raise ValueError("only a method of kind 'pipeline' takes `retrievers`")
        if self.kind == "pipeline" and self.grid:
            raise ValueError("a pipeline is tuned in its own config (params), not by grid")
        for name, retriever in self.retrievers.items():
            if retriever.kind == "pipeline" or retriever.grid:
                raise ValueError(f"retriever '{name}': retrievers are baselines with fixed params or trained runs (no grid, no pipelines)")
        return self


class EvalConfig(StrictModel):
    ks: list[int] = [10, 20]
    list_length: int = Field(100, ge=1)
    tune_metric: str | None = Field(None, description="default: recall at the first k")
    reference: str | None = None
    bootstrap_samples: int = Field(1_000, ge=100)
    out_dir: Path = Path("experiments/results")

    @model_validator(mode="after")
    def _ks_fit_list(self) -> EvalConfig:
        if any(k < 1 or k > self.list_length for k in self.ks):
            raise ValueError(f"every k must be in 1..list_length ({self.list_length}); got {self.ks}")
        if self.tune_metric is None:
            self.tune_metric = f"recall@{self.ks[0]}"
        return self


class ModelSection(StrictModel):
    """Which model to train; `params` are checked against that model's own config class."""

    kind: ModelKind = "sasrec"
    params: dict[str, Any] = {}


class TrainConfig(StrictModel):
    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1, description="sequences per step on each worker")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    patience: int = Field(3, ge=1, description="epochs without a better validation metric before stopping")
    monitor: str = "recall@10"
    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP across them)")
    sharded_embeddings: bool = Field(
        False,
        description="two_tower: TorchRec shards its ID and category tables across the workers, updated only where a step"
        " touched them (fused row-wise Adagrad at `lr`); the rest stays DDP",
    )
    use_gpu: bool = False
    resources_per_worker: dict[str, float] = {"CPU": 1}
    bf16: bool = Field(False, description="bf16 autocast (GPU)")
    max_steps_per_epoch: int | None = Field(None, ge=1)
    valid_users: int | None = Field(
        None,
        ge=1,
        description="validate each epoch (early stopping, the learning curve) on a seeded sample of this many users; "
        "None = all. Full ranking costs users x items: at 10M events and 100k items, all users take minutes an epoch. "
        "The test evaluation always ranks for every user.",
    )
    progress: bool = True


class TrackingConfig(StrictModel):
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    project: str = "hyperrec"
    runs_dir: Path = Path("experiments/runs")


class ExperimentConfig(StrictModel):
    name: str
    seed: int = 0
    data: DataConfig = DataConfig()
    eval: EvalConfig = EvalConfig()
    methods: dict[str, MethodConfig] = {}
    model: ModelSection = ModelSection()
    train: TrainConfig = TrainConfig()
    tracking: TrackingConfig = TrackingConfig()

    @model_validator(mode="after")
    def _reference_is_a_method(self) -> ExperimentConfig:
        if self.eval.reference is not None and self.eval.reference not in self.methods:
            raise ValueError(f"eval.reference '{self.eval.reference}' is not one of methods {sorted(self.methods)}")
        return self


def parse_override(text: str) -> tuple[list[str], Any]:
    """`model.dim=128` -> (["model", "dim"], 128); the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override '{text}' is not of the form dotted.key=value")
    return key.split("."), yaml.safe_load(raw) if raw else ""


def set_dotted(raw: dict[str, Any], path: list[str], value: Any) -> None:
    """raw[path[0]][path[1]]... = value, creating sections on the way."""
    node = raw
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"'{'.'.join(path)}': '{part}' is a value, not a section")
        node = child
    node[path[-1]] = value


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        path, value = parse_override(text)
        set_dotted(raw, path, value)
    return raw


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return raw


def validate(raw: dict[str, Any], path: Path | str, schema: type[T]) -> T:
    return check_section(path, "", lambda: schema.model_validate(raw))


def check_section(path: Path | str, prefix: str, check: Callable[[], R]) -> R:
    """Run a validation nested in a config (a model's or a method's own params): its errors
    become a ConfigError naming the file and each key as `prefix.key`."""
    try:
        return check()
    except ValidationError as exc:
        problems = "\n  ".join(_describe(e, prefix) for e in exc.errors())
        raise ConfigError(f"{path}: invalid config:\n  {problems}") from None


def _describe(error: dict[str, Any], prefix: str = "") -> str:
    key = ".".join(part for part in [prefix, *map(str, error["loc"])] if part) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}' (value {error['input']!r})"
    return f"key '{key}': value {error.get('input')!r}: {error['msg']}"


@dataclass(frozen=True)
class NameRule:
    """How overrides go into a config's name (`overridden_name`)."""

    separator: str = "+"  # between the name and each override
    unsafe: str = r"[^A-Za-z0-9_.=,+-]"  # characters replaced by `replacement` (file-system safe)
    replacement: str = "_"
    max_length: int | None = None  # a name that would be longer ends in a hash of the overrides instead


RUN_NAMES = NameRule()


def load_config(
    path: str | Path,
    overrides: list[str] | None = None,
    schema: type[T] = ExperimentConfig,  # type: ignore[assignment]
    name_rule: NameRule = RUN_NAMES,
) -> T:
    """Read a YAML config, apply dotted overrides, validate against `schema`.

    Overrides also go into the config's `name` (unless `name` itself is overridden, `name_rule` says how), so that
    results and runs of a changed config never overwrite those of the file as committed.
    """
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides or [])
    if overrides and isinstance(raw.get("name"), str) and not any(o.startswith("name=") for o in overrides):
        raw["name"] = overridden_name(raw["name"], overrides, name_rule)
    return validate(raw, path, schema)


def overridden_name(name: str, overrides: list[str], rule: NameRule = RUN_NAMES) -> str:
    """`instacart_baselines` + [data.split=time] -> `instacart_baselines+data.split=time`."""
    suffix = re.sub(rule.unsafe, rule.replacement, rule.separator.join(overrides))
    too_long = rule.max_length is not None and len(name) + len(rule.separator) + len(suffix) > rule.max_length
    if len(suffix) > 80 or too_long:
        suffix = hashlib.sha1(suffix.encode()).hexdigest()[:12]
    if rule.max_length is not None:
        name = name[: rule.max_length - len(rule.separator) - len(suffix)]
    return f"{name}{rule.separator}{suffix}"


class SearchDimension(StrictModel):
    """One swept key: exactly one of choice / uniform / loguniform / grid."""

    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SearchDimension:
        given = [name for name in ("choice", "uniform", "loguniform", "grid") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of choice, uniform, loguniform, grid (got {given or 'none'})")
        bounds = self.uniform or self.loguniform
        if bounds is not None and not bounds[0] < bounds[1]:
            raise ValueError(f"bounds must be [low, high] with low < high, got {list(bounds)}")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError("loguniform bounds must be positive")
        return self


class SchedulerConfig(StrictModel):
    kind: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(1, ge=1, description="epochs every trial gets before ASHA may stop it")
    reduction_factor: float = Field(2.0, gt=1)


class SweepConfig(StrictModel):
    """A Ray Tune search over any keys of a training config."""

    name: str
    base: Path = Field(description="the training config the sweep starts from")
    overrides: list[str] = Field([], description="dotted overrides applied to the base before the search")
    space: dict[str, SearchDimension]
    num_samples: int = Field(4, ge=1, description="samples of the space (each grid point gets this many)")
    metric: str = "valid/recall@10"
    scheduler: SchedulerConfig = SchedulerConfig()
    trial_resources: dict[str, float] = {"CPU": 1}
    max_concurrent: int = Field(2, ge=1)
    seed: int = 0
