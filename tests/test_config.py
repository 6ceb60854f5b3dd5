from pathlib import Path

import pytest

from hyperrec.config import ConfigError, ExperimentConfig, SweepConfig, apply_overrides, load_config, parse_override
from hyperrec.eval.run import validate_methods
from hyperrec.sim.config import load_sim_config
from hyperrec.train.model_factory import model_config
from hyperrec.train.sweep import check_space, load_base

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


def test_every_committed_experiment_config_loads_and_validates():
    for path in sorted((REPO / "configs" / "eval").glob("*.yaml")):
        config = load_config(path)
        validate_methods(config, path, require_runs=False)  # the runs they name exist once trained
    for path in sorted([*(REPO / "configs" / "train").glob("*.yaml"), *(REPO / "configs" / "sim" / "train").glob("*.yaml")]):
        model_config(load_config(path), path)
    for path in sorted((REPO / "configs" / "sim").glob("*.yaml")):
        load_sim_config(path)  # the registries they name exist once exported
    for path in sorted((REPO / "configs" / "sweep").glob("*.yaml")):
        sweep = load_config(path, schema=SweepConfig)
        check_space(sweep, load_base(sweep, path), path)


def test_unknown_key_names_key_value_and_file(tmp_path):
    path = write(tmp_path, "name: x\ndata:\n  sourc: instacart\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and "data.sourc" in message and "'instacart'" in message


def test_wrong_type_names_key_value_and_file(tmp_path):
    path = write(tmp_path, "name: x\neval:\n  ks: [10, ten]\n")
    with pytest.raises(ConfigError, match=r"eval\.ks\.1.*'ten'") as error:
        load_config(path)
    assert str(path) in str(error.value)


def test_dotted_overrides_are_typed_as_yaml(tmp_path):
    config = load_config(write(tmp_path, "name: x\n"), ["data.split=time", "eval.ks=[5, 10]", "data.max_users=50"])
    assert config.data.split == "time" and config.eval.ks == [5, 10] and config.data.max_users == 50


def test_override_of_a_wrong_type_is_reported(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.max_users.*'many'"):
        load_config(write(tmp_path, "name: x\n"), ["data.max_users=many"])


def test_malformed_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="dotted.key=value"):
        parse_override("no_equals_sign")
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"name": "x"}, ["name.inner=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_file_source_needs_a_path(tmp_path):
    with pytest.raises(ConfigError, match="needs data.path"):
        load_config(write(tmp_path, "name: x\ndata: {source: file}\n"))


def test_method_params_are_checked_before_any_data_loads(tmp_path):
    path = write(tmp_path, "name: x\nmethods:\n  t: {kind: tifu_knn, params: {alpha: 2.0}}\n")
    with pytest.raises(ConfigError, match=r"methods\.t\.params\.alpha.*2\.0"):
        validate_methods(load_config(path), path)
    path = write(tmp_path, "name: x\nmethods:\n  k: {kind: item_knn, grid: {neighbours: [5]}}\n")
    with pytest.raises(ConfigError, match=r"methods\.k\.params\.neighbours"):
        validate_methods(load_config(path), path)
    with pytest.raises(ConfigError, match="tune_metric"):
        validate_methods(ExperimentConfig(name="x", eval={"tune_metric": "recall@7"}), path)


def test_reference_must_be_a_method(tmp_path):
    with pytest.raises(ConfigError, match="eval.reference"):
        load_config(write(tmp_path, "name: x\neval: {reference: nope}\nmethods:\n  p: {kind: popularity}\n"))


def test_overrides_go_into_the_name_so_results_never_overwrite_the_committed_config(tmp_path):
    path = write(tmp_path, "name: exp\n")
    assert load_config(path).name == "exp"
    assert load_config(path, ["data.split=time"]).name == "exp+data.split=time"
    assert load_config(path, ["data.split=time", "name=mine"]).name == "mine"
    long = load_config(path, [f"data.path=/very/long/{'x' * 100}.csv"]).name
    assert long.startswith("exp+") and len(long) == len("exp+") + 12 and "/" not in long


def test_a_head_is_for_runs_and_the_session_split_needs_its_event_kinds():
    from pydantic import ValidationError

    from hyperrec.config import DataConfig, MethodConfig

    assert MethodConfig(kind="run", path=Path("r"), head="next_purchase").head == "next_purchase"
    with pytest.raises(ValidationError, match="only a method of kind 'run' takes it"):
        MethodConfig(kind="popularity", head="next_item")
    with pytest.raises(ValidationError, match="needs event_types with view and click"):
        DataConfig(split="last_session", session_target="click", event_types=["view", "purchase"])
