"""Training for real: Ray Train with 2 CPU workers (DDP), checkpoints, resume, wandb offline, Ray Tune."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from hyperrec.cli import main
from hyperrec.config import ConfigError, ExperimentConfig, SweepConfig, load_config
from hyperrec.data.sequences import make_split
from hyperrec.data.sources import load_dataset
from hyperrec.eval.compare import compare_runs
from hyperrec.train.launcher import latest_checkpoint
from hyperrec.train.loop import load_checkpoint, train_loop, validation_task
from hyperrec.train.model_factory import build_model, model_config
from hyperrec.train.sweep import run_sweep
from tests.conftest import tiny_training_config


class DiskReporter:
    """Runs the loop in this process: checkpoints are copied to numbered folders."""

    rank, world_size = 0, 1

    def __init__(self, root: Path, restore: Path | None = None):
        self.root, self.restore, self.reports = root, restore, []

    def report(self, metrics, checkpoint_dir):
        import shutil

        target = self.root / f"checkpoint_{len(self.reports)}"
        shutil.copytree(checkpoint_dir, target)
        self.reports.append((metrics, target))

    def restored_checkpoint(self):
        return self.restore


def test_two_worker_ray_train_run_writes_a_complete_run(trained_run):
    run_dir, record = trained_run
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert record["samples_per_s"] > 0
    stages = record["stages"]  # rank 0's clock, in the order the run went through them
    assert list(stages) == ["load_data", "sequences", "examples", "build_model", "epochs", "test_eval"]
    assert all(s["seconds"] >= 0 and s["peak_rss_mib"] > 0 for s in stages.values())
    assert stages["load_data"]["events"] > 0 and stages["sequences"]["users"] > 0 and stages["examples"]["examples"] > 0
    assert all(e["train_seconds"] > 0 and e["valid_seconds"] > 0 and e["peak_rss_mib"] > 0 for e in record["epochs"])
    # the files hold what the record says: test metrics per user (their mean is the record's), the
    # results table, one epochs.csv row per epoch, the learning curve, the weights over the catalogue
    config = ExperimentConfig.model_validate(record["config"])
    dataset = load_dataset(config.data)
    per_user = pd.read_csv(run_dir / "test_per_user.csv.gz")
    assert per_user["user"].tolist() == make_split(dataset, config.data).test.users.tolist()
    assert record["test"]["recall@10"] == pytest.approx(per_user["recall@10"].mean())
    results = pd.read_csv(run_dir / "test_results.csv", index_col="run")
    assert results.loc[record["run"], "recall@10"] == pytest.approx(record["test"]["recall@10"])
    assert record["run"] in (run_dir / "test_results.md").read_text()
    epochs = pd.read_csv(run_dir / "epochs.csv")
    assert epochs["epoch"].tolist() == [1, 2]
    assert epochs["train_loss"].tolist() == pytest.approx([e["train_loss"] for e in record["epochs"]])
    assert (run_dir / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    weights = torch.load(run_dir / "model.pt", weights_only=False)
    assert weights["kind"] == "sasrec" and weights["item_ids"] == dataset.catalog["item_id"].tolist()
    assert latest_checkpoint(run_dir).joinpath("state.pt").is_file()
    assert list((run_dir / "wandb").glob("offline-run-*")), "wandb offline run directory"
    assert record["config"]["train"]["num_workers"] == 2


def test_recommend_loads_the_trained_run(trained_run, tmp_path):
    run_dir, _ = trained_run
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--model", str(run_dir), "--users", "all", "--k", "5", "--out", str(out)]) == 0
    recs = pd.read_parquet(out)
    assert len(recs) == recs["user_id"].nunique() * 5 and recs["item_id"].str.startswith("i").all()


def test_eval_and_compare_put_the_run_next_to_baselines(trained_run, tmp_path, capsys):
    run_dir, record = trained_run
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                **{k: record["config"][k] for k in ("data", "seed")},
                "name": "with_run",
                "eval": {
                    "ks": [10],
                    "list_length": 20,
                    "reference": "freq",
                    "out_dir": str(tmp_path / "results"),
                    "bootstrap_samples": 200,
                },
                "methods": {
                    "freq": {"kind": "top_frequency"},
                    "sasrec": {"kind": "run", "path": str(run_dir)},
                    "latest": {"kind": "run", "path": str(run_dir.parent / record["config"]["name"])},
                    "pipe": {
                        "kind": "pipeline",
                        "retrievers": {"sasrec": {"kind": "run", "path": str(run_dir)}},
                        "params": {"retriever_top_n": 20, "popular_top_n": 10, "label_baskets": 2, "ranker": {"epochs": 2}},
                    },
                },
            }
        )
    )
    assert main(["eval", str(config)]) == 0
    table = pd.read_csv(tmp_path / "results" / "with_run" / "results.csv", index_col="method")
    assert 0 < table.loc["pipe", "recall@10"] <= 1  # a trained run as the pipeline's retriever
    assert table.loc["sasrec", "recall@10"] == pytest.approx(record["test"]["recall@10"])
    assert table.loc["sasrec", "new_item_recall@10"] == pytest.approx(record["test"]["new_item_recall@10"])
    assert table.loc["latest", "recall@10"] == table.loc["sasrec", "recall@10"]  # the config name resolves to its latest run
    bad = tmp_path / "bad.yaml"
    broken = yaml.safe_load(config.read_text())
    broken["methods"]["pipe"]["retrievers"]["sasrec"]["path"] = str(tmp_path / "nowhere")
    bad.write_text(yaml.safe_dump(broken))
    assert main(["eval", str(bad)]) == 2
    assert "methods.pipe.retrievers.sasrec.path" in capsys.readouterr().err
    compared = compare_runs([run_dir, run_dir], tmp_path / "cmp")
    assert len(compared) == 1 and next((tmp_path / "cmp").glob("compare-*/learning_curves.png"))


def test_resume_from_a_checkpoint_takes_the_same_next_step(tmp_path):
    raw = tiny_training_config(tmp_path)
    straight = DiskReporter(tmp_path / "a")
    train_loop(raw, straight, tmp_path / "run_a")
    first = DiskReporter(tmp_path / "b")
    train_loop({**raw, "train": {**raw["train"], "epochs": 1}}, first, tmp_path / "run_b")
    resumed = DiskReporter(tmp_path / "c", restore=first.reports[0][1])
    train_loop(raw, resumed, tmp_path / "run_c")
    assert len(resumed.reports) == 1  # only the second epoch was trained
    assert resumed.reports[0][0]["train_loss"] == pytest.approx(straight.reports[1][0]["train_loss"], rel=1e-6)
    config = ExperimentConfig.model_validate(raw)
    from hyperrec.data.sources import load_dataset

    catalog = load_dataset(config.data).catalog
    a, c = build_model(config, catalog), build_model(config, catalog)
    load_checkpoint(straight.reports[1][1], a, None)
    load_checkpoint(resumed.reports[0][1], c, None)
    for (name, pa), pc in zip(a.state_dict().items(), c.state_dict().values()):
        assert np.allclose(pa.numpy(), pc.numpy(), atol=1e-6), name


def test_two_trial_sweep_writes_table_and_plots(ray_cluster, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_training_config(tmp_path)))
    sweep_file = tmp_path / "sweep.yaml"
    space = {"model.params.dim": {"grid": [8, 16]}, "train.lr": {"loguniform": [0.0001, 0.01]}}
    sweep_file.write_text(
        yaml.safe_dump(
            {
                "name": "tiny_sweep",
                "base": str(base),
                "space": space,
                "num_samples": 1,
                "scheduler": {"kind": "asha", "grace_period": 2},
                "trial_resources": {"CPU": 1},
            }
        )
    )
    table = run_sweep(load_config(sweep_file, schema=SweepConfig), sweep_file)
    assert sorted(table["model.params.dim"]) == [8, 16]
    again = run_sweep(load_config(sweep_file, schema=SweepConfig), sweep_file)  # the search is seeded: the same trials
    assert sorted(again["train.lr"]) == sorted(table["train.lr"])
    # ASHA stops every trial at its last epoch's report (max_t = epochs); the record is written before it
    assert (table["status"] == "finished").all() and table["test/recall@10"].between(0, 1).all()
    sweep_dir = next((tmp_path / "runs").glob("tiny_sweep-*"))
    for name in ("sweep_results.csv", "sweep_results.md", "metric_vs_params.png", "learning_curves.png"):
        assert (sweep_dir / name).is_file(), name


def test_bad_model_params_fail_before_ray_starts(tmp_path):
    config = ExperimentConfig.model_validate(
        {**tiny_training_config(tmp_path), "model": {"kind": "sasrec", "params": {"dim": 10, "n_heads": 3}}}
    )
    with pytest.raises(ConfigError, match="divisible"):
        model_config(config, "train.yaml")


def test_two_tower_trains_through_the_same_loop_and_retrieves_with_faiss(tmp_path):
    raw = tiny_training_config(tmp_path)
    raw["model"] = {"kind": "two_tower", "params": {"dim": 16, "max_len": 16, "n_sampled_negatives": 32}}
    raw["train"] = {**raw["train"], "batch_size": 128, "lr": 0.003}
    reporter = DiskReporter(tmp_path / "ckpt")
    state = train_loop(raw, reporter, tmp_path / "run")
    assert state.epoch == 2 and reporter.reports[-1][0]["train_loss"] < reporter.reports[0][0]["train_loss"]
    config = ExperimentConfig.model_validate(raw)
    from hyperrec.data.sequences import make_split
    from hyperrec.data.sources import load_dataset
    from hyperrec.train.runs import load_run

    dataset = load_dataset(config.data)
    split = make_split(dataset, config.data)
    recommender = load_run(tmp_path / "run", dataset.catalog).fit(split.test.history)
    users = split.test.users[:20]
    via_faiss, faiss_scores = recommender.recommend(users, 10)
    dense = recommender.score(users)
    # The exact inner-product index returns the dense top-10 scores (items may differ only on ties).
    assert np.allclose(faiss_scores, -np.sort(-dense, axis=1)[:, :10], atol=1e-5)
    assert np.allclose(np.take_along_axis(dense, via_faiss, axis=1), faiss_scores, atol=1e-5)
    popularity_recall = make_baseline_recall(split, "popularity")
    assert state.best_metric > 0.5 * popularity_recall

    # export: the user tower (with its context inputs) and the item tower to ONNX, both in the Triton repository
    from hyperrec.export.run import ExportConfig, export_run

    exported = export_run(
        tmp_path / "run", ExportConfig(registry=tmp_path / "registry", cutoffs=1, ranker={"epochs": 1, "hidden": [8]}), log=lambda *_: None
    )
    assert exported.manifest.encoder_inputs == ["items", "device", "hour", "weekday"]
    assert set(exported.manifest.parity) == {"encoder", "item_tower", "ranker"} and exported.manifest.parity_passed
    assert (exported.path / "triton" / "item_tower" / "config.pbtxt").is_file()
    # the same model ranks the same, except that serving never proposes items out of stock
    assert abs(exported.manifest.retrieval_only_metrics["recall@10"] - exported.manifest.run_test_metrics["recall@10"]) < 0.05


def make_baseline_recall(split, kind):
    from hyperrec.eval.evaluate import evaluate_model
    from hyperrec.models.baselines import make_baseline

    model = make_baseline(kind).fit(split.valid.history)
    return evaluate_model(model, split.valid, [10], 20).summary["recall@10"]


def test_the_validation_sample_is_seeded_fixed_and_a_subset(tmp_path):
    config = ExperimentConfig.model_validate(tiny_training_config(tmp_path, valid_users=50))
    split = make_split(load_dataset(config.data), config.data)
    sample = validation_task(split, config)
    assert len(sample.users) == 50 and set(sample.users) <= set(split.valid.users)
    assert np.array_equal(sample.users, validation_task(split, config).users)  # every epoch validates the same users
    targets = dict(zip(split.valid.users.tolist(), split.valid.targets, strict=True))
    assert all(np.array_equal(t, targets[u]) for u, t in zip(sample.users.tolist(), sample.targets, strict=True))
    assert validation_task(split, config.model_copy(update={"train": config.train.model_copy(update={"valid_users": None})})) is split.valid
