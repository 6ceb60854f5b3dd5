import torch

from hyperrec.train.runs import resolve_run
from hyperrec.train.tracking import MODEL_FILE


def make_runs(root, *names: str, finished: bool = True) -> None:
    for name in names:
        (root / name).mkdir()
        if finished:
            torch.save({}, root / name / MODEL_FILE)


def test_a_config_name_resolves_to_its_latest_finished_run(tmp_path):
    make_runs(tmp_path, "sasrec-20261127-090000", "sasrec-20261127-100000", "sasrec-2-20261127-110000", "sasrec+lr=0.1-20261127-120000")
    make_runs(tmp_path, "sasrec-20261127-130000", finished=False)  # still training: no model file yet
    assert resolve_run(tmp_path / "sasrec") == tmp_path / "sasrec-20261127-100000"
    assert resolve_run(tmp_path / "sasrec-20261127-090000") == tmp_path / "sasrec-20261127-090000"
    assert resolve_run(tmp_path / "sasrec-2") == tmp_path / "sasrec-2-20261127-110000"
    assert resolve_run(tmp_path / "two_tower") is None
