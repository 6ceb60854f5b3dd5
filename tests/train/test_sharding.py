"""TorchRec sharding for real: 2 Ray Train CPU workers (gloo) shard the two-tower's tables by the
planner's plan, a step changes only the rows it looked up, and the run exports and recommends."""

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hyperrec.cli import main
from hyperrec.config import ExperimentConfig
from hyperrec.models.two_tower import TwoTowerConfig
from hyperrec.train.launcher import latest_checkpoint, run_training
from hyperrec.train.loop import CHECKPOINT_FILE, TrainingObjective, unwrap
from hyperrec.train.model_factory import TASKS
from hyperrec.train.runs import load_model
from tests.conftest import tiny_training_config

N_ITEMS, ID_TABLE = 100, "item_tower.sparse.embedding_bags.item_id.weight"


def two_steps_on_a_sharded_two_tower(_: dict) -> None:
    """Ray Train worker: shard a tiny two-tower, take a step on items 1..50, then one on items
    51..100, and report (rank 0) the plan and which ID rows the second step changed."""
    import ray.train
    import torch.distributed as dist

    from hyperrec.train.sharding import full_state, is_fused, shard

    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(0)
    catalog = pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "category": [f"c{i % 5}" for i in range(N_ITEMS)]})
    params = TwoTowerConfig(dim=8, max_len=4, n_heads=2, n_sampled_negatives=0, id_dropout=0.0)
    objective = shard(TrainingObjective(TASKS["two_tower"].build(params, catalog), "two_tower"), 0.1, torch.device("cpu"))
    model = unwrap(objective)
    dense = torch.optim.AdamW([p for p in model.parameters() if not is_fused(p)], lr=0.01)
    log_q = torch.full((N_ITEMS + 1,), -np.log(N_ITEMS))
    rng = np.random.default_rng(rank)
    zeros = torch.zeros(4, dtype=torch.long)

    def step(low: int, high: int) -> torch.Tensor:
        """One step on items low..high-1 (a different draw on each rank); returns every rank's rows."""
        batch = {"items": torch.from_numpy(rng.integers(low, high, (4, 4))), "positives": torch.from_numpy(rng.integers(low, high, 4))}
        loss = objective({**batch, "device": zeros, "hour": zeros, "weekday": zeros}, log_q)
        dense.zero_grad(set_to_none=True)
        loss.backward()
        dense.step()
        rows = torch.cat([batch["items"].ravel(), batch["positives"]])
        everyone = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
        dist.all_gather(everyone, rows)
        return torch.cat(everyone).unique()

    first = step(1, 51)
    before = {k: v.clone() for k, v in full_state(model.state_dict(), torch.device("cpu")).items()}
    second = step(51, N_ITEMS + 1)
    after = full_state(model.state_dict(), torch.device("cpu"))
    changed = (before[ID_TABLE] != after[ID_TABLE]).any(dim=1).nonzero().ravel()
    result = {
        "module": type(model.item_tower.sparse).__name__,
        "plan": {
            table: {"sharding_type": option.sharding_type, "ranks": option.ranks}
            for table, option in objective.plan.plan["model.item_tower.sparse"].items()
        },
        "first": first.tolist(),
        "second": second.tolist(),
        "changed": changed.tolist(),
        "dense_changed": any(not torch.equal(before[k], after[k]) for k in before if k.startswith("user_tower.")),
    }
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "result.json").write_text(json.dumps(result))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(tmp) if rank == 0 else None)


def test_the_planner_shards_the_tables_and_a_step_updates_only_the_rows_it_touched(ray_cluster, tmp_path):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    trainer = TorchTrainer(
        two_steps_on_a_sharded_two_tower,
        scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
        run_config=RunConfig(storage_path=str(tmp_path), name="steps"),
    )
    with trainer.fit().checkpoint.as_directory() as directory:
        result = json.loads(Path(directory, "result.json").read_text())
    assert result["module"] == "ShardedEmbeddingBagCollection"
    plan = result["plan"]
    assert set(plan) == {"item_id", "category"}
    assert all(option["sharding_type"] in ("table_wise", "row_wise") for option in plan.values()), plan
    assert sorted({rank for option in plan.values() for rank in option["ranks"]}) == [0, 1], plan  # both ranks hold tables
    changed, second, first_only = set(result["changed"]), set(result["second"]), set(result["first"]) - set(result["second"])
    assert changed and changed <= second  # no momentum carries the first step's rows along (dense Adam would)
    assert first_only and not changed & first_only
    assert result["dense_changed"]  # the dense part trains too (DDP)


def test_a_sharded_two_worker_run_saves_full_weights_that_export_and_recommend(ray_cluster, tmp_path):
    raw = tiny_training_config(tmp_path, num_workers=2, sharded_embeddings=True, batch_size=128, lr=0.003)
    raw["name"] = "tiny_sharded_two_tower"
    raw["model"] = {"kind": "two_tower", "params": {"dim": 16, "max_len": 16, "n_sampled_negatives": 32}}
    config = ExperimentConfig.model_validate(raw)
    record = run_training(config)
    run_dir = Path(config.tracking.runs_dir).resolve() / record["run"]
    assert [e["epoch"] for e in record["epochs"]] == [1, 2] and 0 < record["test"]["recall@10"] <= 1

    from hyperrec.data.sources import load_dataset

    catalog = load_dataset(config.data).catalog
    model, _ = load_model(run_dir, catalog)  # model.pt: plain tensors of the full tables
    weights = model.state_dict()
    assert weights[ID_TABLE].shape == (len(catalog) + 1, 16) and weights[ID_TABLE].abs().sum() > 0
    saved = torch.load(latest_checkpoint(run_dir) / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
    assert saved["model"][ID_TABLE].shape == weights[ID_TABLE].shape
    (momentum,) = saved["embedding_optimizer"]["state"]["model." + ID_TABLE].values()
    assert momentum.shape == (len(catalog) + 1,) and momentum.sum() > 0  # row-wise Adagrad: one accumulator per row

    from hyperrec.export.run import ExportConfig, export_run

    export = ExportConfig(registry=tmp_path / "registry", cutoffs=1, ranker={"epochs": 1, "hidden": [8]})
    exported = export_run(run_dir, export, log=lambda *_: None)
    assert {"encoder", "item_tower"} <= set(exported.manifest.parity) and exported.manifest.parity_passed
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--model", str(run_dir), "--users", "all", "--k", "5", "--out", str(out)]) == 0
    recs = pd.read_parquet(out)
    assert len(recs) == recs["user_id"].nunique() * 5 and recs["item_id"].str.startswith("i").all()
