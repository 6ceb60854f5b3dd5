import json

import numpy as np
import pandas as pd
import pytest

from hyperrec.cli import main
from hyperrec.config import DataConfig
from hyperrec.data.sequences import make_split
from hyperrec.eval.evaluate import evaluate_lists, evaluate_model, metric_names, seen_items
from hyperrec.models.baselines import make_baseline


@pytest.fixture()
def shop_files(tmp_path, tiny):
    events = tmp_path / "events.csv"
    tiny.events.to_csv(events, index=False)
    config = tmp_path / "exp.yaml"
    config.write_text(
        f"""
name: tiny_shop
data: {{source: file, path: {events}}}
eval: {{ks: [1, 3], list_length: 5, reference: freq, bootstrap_samples: 200, out_dir: {tmp_path / "results"}}}
methods:
  pop: {{kind: popularity}}
  freq: {{kind: top_frequency}}
  tifu: {{kind: tifu_knn, params: {{neighbors: 1}}, grid: {{alpha: [0.5, 1.0]}}}}
"""
    )
    return config


def test_eval_command_writes_table_csv_markdown_plot_and_record(shop_files, tmp_path, capsys):
    assert main(["eval", str(shop_files)]) == 0
    out = tmp_path / "results" / "tiny_shop"
    table = pd.read_csv(out / "results.csv", index_col="method")
    assert list(table.index) == ["pop", "freq", "tifu"]
    assert {"recall@1", "ndcg@3", "mrr@5", "explore_recall@1", "coverage@1"} <= set(table.columns)
    assert table.loc["freq", "Δrecall@1 vs freq [95% CI]"] == "—"
    assert (out / "results.md").read_text().startswith("| method | recall@1 |")
    assert (out / "results.png").read_bytes()[:4] == b"\x89PNG"
    record = json.loads((out / "run.json").read_text())
    assert record["methods"]["tifu"]["params"]["alpha"] in (0.5, 1.0) and record["test_users"] == 2
    assert len(pd.read_csv(out / "per_user.csv.gz")) == 3 * 2
    printed = capsys.readouterr().out
    assert "recall@1" in printed and "paired comparison to freq" in printed


def test_recommend_writes_ranked_lists_and_uses_tuned_params(shop_files, tmp_path, capsys):
    assert main(["eval", str(shop_files)]) == 0
    out = tmp_path / "recs.parquet"
    assert main(["recommend", "--config", str(shop_files), "--model", "tifu", "--users", "all", "--k", "4", "--out", str(out)]) == 0
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert len(recs) == 3 * 4 and recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3, 4]).all()
    assert "tuned by hyperrec eval" in capsys.readouterr().out
    csv = tmp_path / "recs.csv"
    assert (
        main(["recommend", "--config", str(shop_files), "--model", "top_frequency", "--users", "u1,u2", "--k", "2", "--out", str(csv)]) == 0
    )
    assert pd.read_csv(csv)["item_id"].tolist()[:2] == ["a", "b"]


def test_recommend_errors_are_clear(shop_files, tmp_path, capsys):
    out = str(tmp_path / "r.parquet")
    assert main(["recommend", "--config", str(shop_files), "--model", "nope", "--out", out]) == 2
    assert "--model 'nope'" in capsys.readouterr().err
    assert main(["recommend", "--config", str(shop_files), "--model", "pop", "--users", "u1,ghost", "--out", out]) == 2
    assert "ghost" in capsys.readouterr().err
    assert main(["recommend", "--config", str(shop_files), "--model", "pop", "--out", str(tmp_path / "r.txt")]) == 2
    assert ".parquet or .csv" in capsys.readouterr().err


def test_cli_config_errors_exit_2_with_the_file_and_key(shop_files, capsys):
    assert main(["eval", str(shop_files), "eval.ks=[1, x]"]) == 2
    err = capsys.readouterr().err
    assert str(shop_files) in err and "eval.ks.1" in err and "'x'" in err


def test_summary_names_match_metric_names(tiny):
    split = make_split(tiny, DataConfig())
    recs, _ = make_baseline("popularity").fit(split.test.history).recommend(split.test.users, 5)
    assert sorted(evaluate_lists(recs, split.test, [1, 3]).summary) == sorted(metric_names([1, 3], 5))


def test_new_item_lists_rank_without_the_users_items_and_score_the_new_targets(tiny):
    split = make_split(tiny, DataConfig())
    model = make_baseline("popularity").fit(split.test.history)
    evaluation = evaluate_model(model, split.test, [1, 3], 5, new_item_lists=True)
    seen = seen_items(split.test)
    recs, _ = model.recommend(split.test.users, 3, exclude=seen)
    for row, (targets, bought) in enumerate(zip(split.test.targets, seen)):
        assert not set(recs[row]) & set(bought)
        new = set(targets) - set(bought)
        expected = len(new & set(recs[row, :3])) / len(new) if new else np.nan
        np.testing.assert_equal(evaluation.per_user["new_item_recall@3"].iloc[row], expected)
    assert "new_item_recall@1" not in evaluate_model(model, split.test, [1], 5).summary


def test_a_pipeline_is_evaluated_and_scored_like_any_method(tmp_path, capsys):
    config = tmp_path / "pipe.yaml"
    config.write_text(
        f"""
name: synthetic_pipe
data: {{source: synthetic, synthetic: {{n_users: 200, n_items: 150, n_categories: 5, sessions_per_user: 10}}}}
eval: {{ks: [10], list_length: 20, reference: freq, bootstrap_samples: 200, out_dir: {tmp_path / "results"}}}
methods:
  freq: {{kind: top_frequency}}
  pipe:
    kind: pipeline
    retrievers: {{iknn: {{kind: item_knn, params: {{neighbors: 50}}}}}}
    params: {{retriever_top_n: 20, popular_top_n: 10, label_baskets: 3, ranker: {{epochs: 2}}}}
"""
    )
    assert main(["eval", str(config)]) == 0
    table = pd.read_csv(tmp_path / "results" / "synthetic_pipe" / "results.csv", index_col="method")
    assert 0 < table.loc["pipe", "recall@10"] <= 1
    out = tmp_path / "recs.csv"
    assert main(["recommend", "--config", str(config), "--model", "pipe", "--k", "5", "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) % 5 == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(config.read_text().replace("epochs: 2", "epoch: 2"))
    assert main(["eval", str(broken)]) == 2
    assert "methods.pipe.params.ranker.epoch" in capsys.readouterr().err


def test_synthetic_evaluation_reports_recall_against_the_true_preferences(tmp_path):
    config = tmp_path / "syn.yaml"
    config.write_text(
        f"""
name: syn
data: {{source: synthetic, synthetic: {{n_users: 300, n_items: 200, n_categories: 5, sessions_per_user: 10}}}}
eval: {{ks: [10], list_length: 20, bootstrap_samples: 200, out_dir: {tmp_path / "results"}}}
methods:
  pop: {{kind: popularity}}
  freq: {{kind: top_frequency}}
"""
    )
    assert main(["eval", str(config)]) == 0
    table = pd.read_csv(tmp_path / "results" / "syn" / "results.csv", index_col="method")
    assert table["truth_recall@10"].between(0, 1).all()
    # True preference includes each item's appeal, so even popularity agrees with it far above chance (10 of 200 items).
    assert table["truth_recall@10"].min() > 2 * 10 / 200
