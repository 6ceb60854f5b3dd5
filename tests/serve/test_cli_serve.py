"""`hyperrec serve` refuses bad settings and missing models before anything starts."""

from hyperrec.cli import main


def test_unknown_setting_names_the_key_and_the_file(tmp_path, capsys):
    config = tmp_path / "serve.yaml"
    config.write_text("ranking:\n  max_batch: 8\n")
    assert main(["serve", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert str(config) in err and "unknown key 'ranking.max_batch'" in err


def test_wrong_type_on_the_command_line_is_named(tmp_path, capsys):
    assert main(["serve", "--registry", str(tmp_path), "budgets.ranking_ms=fast"]) == 2
    assert "budgets.ranking_ms" in capsys.readouterr().err


def test_an_empty_registry_says_how_to_fill_it(tmp_path, capsys):
    assert main(["serve", "--registry", str(tmp_path / "empty")]) == 2
    assert "hyperrec export RUN" in capsys.readouterr().err


def test_more_ingress_replicas_need_redis(tmp_path, capsys):
    assert main(["serve", "--registry", str(tmp_path), "ingress_replicas=2"]) == 2
    assert "store.kind: redis" in capsys.readouterr().err


def test_model_must_be_a_training_run(tmp_path, capsys):
    assert main(["serve", "--registry", str(tmp_path), "--model", str(tmp_path / "not-a-run")]) == 2
    assert "not a training run" in capsys.readouterr().err
