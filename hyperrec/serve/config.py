"""`hyperrec serve` settings: typed, validated, loadable from YAML (configs/serve/*.yaml)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from hyperrec.bundle.retrieval import RetrievalConfig
from hyperrec.bundle.store import ModelRuntime
from hyperrec.config import StrictModel, apply_overrides, read_yaml, validate
from hyperrec.serve.canary import CanaryConfig
from hyperrec.serve.monitors import MonitorConfig
from hyperrec.serve.privacy import PrivacyConfig


class RankingConfig(ModelRuntime):
    """Where the models run (ModelRuntime) and how the ranking deployment batches."""

    max_batch_size: int = Field(32, ge=1, description="@serve.batch: ranking calls scored together")
    batch_wait_ms: float = Field(2.0, ge=0, description="@serve.batch: how long a batch waits to fill")


class RewardConfig(StrictModel):
    """What a shopper's action on the exploration slot's item is worth to the bandit."""

    click: float = Field(1.0, ge=0)
    add_to_cart: float = Field(0.0, ge=0)
    purchase: float = Field(0.0, ge=0, description="per unit of purchase value (price x quantity)")

    def of(self, kind: str, value: float) -> float:
        if kind == "click":
            return self.click
        if kind == "add_to_cart":
            return self.add_to_cart
        return self.purchase * value if kind == "purchase" else 0.0


class ExploreConfig(StrictModel):
    """How the exploration slot (`explore_slots`) is filled (hyperrec/serve/bandit.py)."""

    kind: Literal["best", "bandit", "random"] = Field(
        "best",
        description="best: the best-scored candidates new to the shopper (no propensities); bandit: LinUCB with epsilon-greedy "
        "propensities, learning from /events; random: uniform over the pool",
    )
    pool: int = Field(20, ge=2, le=200, description="bandit / random: the slot chooses among this many best candidates new to the shopper")
    position: int | None = Field(None, ge=0, description="bandit / random: the slot's place in the list (0 = top); null = the last place")
    epsilon: float = Field(0.1, gt=0, le=1, description="bandit: the share of draws spread evenly (each propensity >= epsilon / pool)")
    alpha: float = Field(0.1, ge=0, description="bandit: LinUCB's confidence width, in reward units")
    l2: float = Field(1.0, gt=0, description="bandit: ridge penalty of the reward model")
    window_s: float = Field(1800.0, gt=0, description="a decision's reward counts until the shopper's next answer on the page or this long")
    reward: RewardConfig = RewardConfig()
    seed: int = Field(0, description="the draws' random seed")


class PolicyConfig(StrictModel):
    margin_weight: float = Field(0.0, ge=0, description="added to the ranker score per unit of item margin")
    diversity: float = Field(0.2, ge=0, le=1, description="MMR trade-off: 0 = pure relevance, 1 = pure novelty")
    diversity_by: Literal["category", "embedding"] = "embedding"
    max_per_category: int | None = Field(None, ge=1, description="at most this many items of one category in a list")
    frequency_cap: int | None = Field(5, ge=1, description="an item shown this many times without a click is held back")
    explore_slots: int = Field(0, ge=0, description="places in each list kept for candidates new to the user (exploration; see explore)")
    explore: ExploreConfig = ExploreConfig()
    placement_weight: float = Field(
        0.5,
        ge=0,
        description="added to the ranker score per unit of the placement's own affinity (0..1: bought with the product page's "
        "item or the cart's, the title's match with the search); 0 = the ranker's order alone. 0.5: the best of 0-4 on "
        "Instacart's validation baskets (benchmarks/cart_completion.py)",
    )

    similar_quantile: float = Field(
        0.99,
        gt=0,
        lt=1,
        description="a new item's reason is 'similar to X' (X: the shopper's recent item closest to it) only when its cosine "
        "with X is above this quantile of random item pairs' (the embedding says so); otherwise 'popular right now' (the "
        "shop's most popular brought it) or 'picked for you' (the encoder's choice from the whole history)",
    )

    @model_validator(mode="after")
    def _one_bandit_slot(self) -> PolicyConfig:
        if self.explore.kind != "best" and self.explore_slots != 1:
            raise ValueError(f"explore.kind {self.explore.kind} fills one slot: set explore_slots to 1 (got {self.explore_slots})")
        return self


class BudgetConfig(StrictModel):
    """Milliseconds each stage may take before the answer degrades (last-good model, then popularity)."""

    retrieval_ms: float = Field(100.0, gt=0)
    ranking_ms: float = Field(100.0, gt=0)


class StoreConfig(StrictModel):
    kind: Literal["memory", "redis"] = "memory"
    redis_url: str = "redis://127.0.0.1:6379/0"
    namespace: str = "hyperrec"
    seed_users: bool = Field(True, description="load the bundle's user histories into the store at start")
    replay_event_log: bool = Field(
        True,
        description="memory store: at start, apply the event log (every event acknowledged before a restart or a crash) "
        "on top of the seed; a Redis store keeps its own state",
    )
    restart_check_s: float | None = Field(
        10.0,
        gt=0,
        description="every this many seconds an answer checks (in a thread) that the store still holds the start-up state; a "
        "Redis found empty (restarted without persistence) is seeded again and the event log replayed into it. null = never",
    )


class AdminConfig(StrictModel):
    """Bearer tokens, read from the environment when the server starts (never from a file in the repository).

    `/admin/*` needs `Authorization: Bearer <admin token>`: missing 401, wrong 403, and with no admin token
    set the admin calls are off (404). Stock and price updates (`stock_change` / `price_change` through
    `/events`) come from the shop's systems: they need the catalog token or the admin token (missing 401,
    wrong 403, neither set 403); other events need none.
    """

    token_env: str = Field(
        "HYPERREC_ADMIN_TOKEN", min_length=1, description="environment variable with the admin token; unset or empty = /admin/* off (404)"
    )
    catalog_token_env: str = Field(
        "HYPERREC_CATALOG_TOKEN",
        min_length=1,
        description="environment variable with a token for stock_change / price_change events only (the admin token works too); "
        "with neither set these events are refused (403)",
    )
    min_token_length: int = Field(16, ge=1, description="a shorter token is refused at start (make one with `openssl rand -hex 32`)")


class AuditConfig(StrictModel):
    """The audit log of decisions (hyperrec/serve/audit.py): one record per /recommend answer, written off the request path."""

    enabled: bool = True
    path: Path | None = Field(None, description="folder of the log; null = `audit` beside the event log (data/store/audit)")
    queue_size: int = Field(10_000, ge=1, description="records waiting to be written; beyond it they are dropped and counted")
    rotate_mb: float = Field(64.0, gt=0, description="a file this large is closed and a new one begun (also at each UTC day)")
    flush_ms: float = Field(
        50.0,
        ge=0,
        description="a batch waits this long after its first record for more before it is written and fsynced (0: at once); "
        "under load, one wake-up and one fsync per interval instead of one per answer",
    )


class ServeConfig(StrictModel):
    registry: Path = Path("experiments/registry")
    version: str = Field("current", description="registry version to serve: current, last-good, latest or vNNNN")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=63535, description="direct ingress also uses port + 1000 (gRPC) and port + 2000 (Serve's own HTTP)")
    event_log: Path | None = Field(
        Path("data/store/served"), description="offline store that accepted /events are appended to; null = none"
    )
    max_k: int = Field(100, ge=1)
    max_events: int = Field(1000, ge=1, description="largest /events batch; bigger ones get 413")
    candidate_cache: int = Field(10_000, ge=0, description="users whose candidates are cached; 0 = no cache")
    retrieval: RetrievalConfig = RetrievalConfig()
    ranking: RankingConfig = RankingConfig()
    policy: PolicyConfig = PolicyConfig()
    experiment: Path | None = Field(
        None,
        description="an experiment YAML (arms with a model_version and/or policy.* overrides, shares, holdout; "
        "hyperrec/experiment/assignment.py): every answer goes to the shopper's sticky arm (hyperrec/serve/experiments.py)",
    )
    budgets: BudgetConfig = BudgetConfig()
    store: StoreConfig = StoreConfig()
    ingress: Literal["direct", "proxy"] = Field(
        "direct",
        description="direct: the ingress replica listens on `port` itself (Ray Serve direct ingress); proxy: Serve's HTTP proxy in front",
    )
    ingress_drain_s: float = Field(
        1.0, ge=0, description="direct ingress: how long a stopping replica keeps answering (raise it behind a load balancer)"
    )
    user_code_thread: bool = Field(
        False,
        description="run the app's handlers on an event loop of their own thread (Ray Serve's default) instead of on the "
        "replica's loop that also parses HTTP; false saves two thread handoffs per request (see ray_env)",
    )
    topology: Literal["single", "deployments"] = Field(
        "single",
        description="single: retrieval and ranking run inside the ingress replica (the fastest on a few cores); "
        "deployments: each is a deployment of its own, ranking batched across requests with @serve.batch (scale-out, GPU rankers)",
    )
    ingress_replicas: int = Field(
        1,
        ge=1,
        description=(
            "more than 1 needs store.kind: redis; with direct ingress each listens on its own port (port, port + "
            "1, ...) behind your load balancer, and /admin/model swaps only the replica it reaches"
        ),
    )
    ranking_replicas: int = Field(1, ge=1)
    retrieval_replicas: int = Field(1, ge=1)
    cpus_per_replica: float = Field(0.1, ge=0, description="Ray CPU reservation per replica (small: they share a laptop)")
    admin: AdminConfig = AdminConfig()
    privacy: PrivacyConfig = PrivacyConfig()
    monitors: MonitorConfig = MonitorConfig()
    canary: CanaryConfig = CanaryConfig()
    audit: AuditConfig = AuditConfig()
    fault_injection: bool = Field(False, description="enable /admin/faults (make a stage fail or stall: for tests and drills); off = 404")

    def audit_folder(self) -> Path:
        """audit.path, else `audit` beside the event log (a test's or benchmark's own event log keeps its audit log with it)."""
        if self.audit.path is not None:
            return self.audit.path
        return (self.event_log.parent if self.event_log is not None else Path("data/store")) / "audit"

    @model_validator(mode="after")
    def _replicas_need_a_shared_store(self) -> ServeConfig:
        if self.ingress_replicas > 1 and self.store.kind != "redis":
            raise ValueError("ingress_replicas > 1 needs store.kind: redis (a memory store is per replica)")
        return self


def load_serve_config(path: Path | None = None, overrides: list[str] | None = None) -> ServeConfig:
    """Defaults, then the YAML file (if any), then dotted overrides (`ranking.max_batch_size=64`)."""
    raw = apply_overrides(read_yaml(path) if path is not None else {}, overrides or [])
    return validate(raw, path or "<serve defaults>", ServeConfig)
