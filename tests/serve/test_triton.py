"""A real Triton server (the one bundled in nvidia-pytriton, run as a sidecar in .venv-triton) on a
repository written by triton_repo.py: answers match ONNX Runtime in process, and nothing is left running."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hyperrec.bundle.onnx_models import OnnxEncoder, OnnxScorer
from hyperrec.bundle.retrieval import context_arrays
from hyperrec.bundle.triton_client import TritonEncoder, TritonModel, TritonScorer
from hyperrec.export.modules import exportable
from hyperrec.export.onnx import export_onnx
from hyperrec.export.triton_repo import write_model_repository
from hyperrec.models.ranker import Ranker, RankerConfig
from hyperrec.models.sasrec import SASRec, SASRecConfig
from hyperrec.serve.triton_process import TritonSidecar

MAX_LEN, N_ITEMS, N_FEATURES = 8, 50, 17


class ContextEncoder(nn.Module):
    """The two-tower encoder's input contract: items [B, L] plus batch-only device, hour, weekday [B]."""

    def __init__(self, dim: int = 8):
        super().__init__()
        self.items = nn.Embedding(N_ITEMS + 1, dim, padding_idx=0)
        self.device, self.hour, self.weekday = nn.Embedding(4, dim), nn.Embedding(24, dim), nn.Embedding(7, dim)

    def forward(self, items, device, hour, weekday):
        return self.items(items).mean(1) + self.device(device) + self.hour(hour) + self.weekday(weekday)


def running() -> dict[int, int]:
    """pid -> parent pid of every process now running (zombies count as gone)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, parent = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z":
            parents[int(stat.parent.name)] = int(parent)
    return parents


def process_tree(root: int) -> set[int]:
    """`root` and all its running descendants."""
    parents = running()
    tree = {root}
    while children := {pid for pid, parent in parents.items() if parent in tree} - tree:
        tree |= children
    return tree


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    plan = exportable("sasrec", SASRec(SASRecConfig(dim=16, n_heads=2, n_layers=1, max_len=MAX_LEN), N_ITEMS).eval())
    export_onnx(plan.encoder, plan.example, folder / "encoder.onnx", "user_vector", plan.dynamic)
    ranker = Ranker(N_FEATURES, RankerConfig(epochs=1, hidden=[8]))
    ranker.set_standardization(np.random.default_rng(0).normal(size=(200, N_FEATURES)).astype(np.float32))
    export_onnx(ranker.eval(), {"features": torch.randn(4, N_FEATURES)}, folder / "ranker.onnx", "scores", {"features": {0: "batch"}})
    example = {
        "items": torch.randint(0, N_ITEMS + 1, (2, MAX_LEN)),
        **{k: torch.zeros(2, dtype=torch.long) for k in ("device", "hour", "weekday")},
    }
    dynamic = {"items": {0: "batch", 1: "length"}, **{k: {0: "batch"} for k in ("device", "hour", "weekday")}}
    export_onnx(ContextEncoder().eval(), example, folder / "context_encoder.onnx", "user_vector", dynamic)
    return {name: folder / f"{name}.onnx" for name in ("encoder", "ranker", "context_encoder")}


def test_missing_sidecar_venv_says_how_to_make_it(tmp_path):
    (tmp_path / "repo" / "ranker").mkdir(parents=True)
    (tmp_path / "repo" / "ranker" / "config.pbtxt").write_text("")
    with pytest.raises(FileNotFoundError, match="make triton-setup"):
        TritonSidecar(tmp_path / "repo", venv=tmp_path / "no-venv").start()


def test_round_trip_matches_onnx_runtime_and_stops_cleanly(tmp_path, exported):
    # max_batch_size 64: a 150-candidate ranking request is sent in parts
    root = write_model_repository(tmp_path / "repo", exported, max_batch_size=64, preferred_batch_sizes=(8, 32))
    rng = np.random.default_rng(0)
    with TritonSidecar(root) as sidecar:
        tree, scratch = process_tree(sidecar.process.pid), sidecar.scratch
        assert len(tree) >= 3  # the sidecar, tritonserver, one backend stub per model
        encoder, local_encoder = TritonEncoder(sidecar.url, max_len=MAX_LEN), OnnxEncoder(exported["encoder"], MAX_LEN)
        context_encoder, local_context = (
            TritonEncoder(sidecar.url, "context_encoder", max_len=MAX_LEN),
            OnnxEncoder(exported["context_encoder"], MAX_LEN),
        )
        scorer, local_scorer = TritonScorer(sidecar.url), OnnxScorer(exported["ranker"])
        for size in (1, 3, 32, 100):
            sequences = rng.integers(0, N_ITEMS + 1, (size, MAX_LEN))
            context = context_arrays([{"device": "ios"}] * size, rng.integers(1.6e9, 1.8e9, size))
            np.testing.assert_allclose(encoder(sequences, context), local_encoder(sequences, context), atol=1e-5)
            np.testing.assert_allclose(context_encoder(sequences, context), local_context(sequences, context), atol=1e-5)
        for size in (0, 1, 7, 150):
            features = rng.normal(size=(size, N_FEATURES))
            got = scorer(features)
            assert got.shape == (size,) and got.dtype == np.float32
            np.testing.assert_allclose(got, local_scorer(features), atol=1e-5)
        assert encoder(np.zeros((0, MAX_LEN), np.int64), {}).shape == (0, 16)
        batches = [rng.normal(size=(20, N_FEATURES)) for _ in range(8)]
        with ThreadPoolExecutor(4) as pool:  # one scorer, several threads (as a serving replica calls it)
            for features, got in zip(batches, pool.map(scorer, batches)):
                np.testing.assert_allclose(got, local_scorer(features), atol=1e-5)
        raw = TritonModel(sidecar.url, "ranker")
        assert raw.run({"features": np.ones((2, N_FEATURES), np.float32)}).shape == (2, 1)  # the wire shape of a batch-only output
        for client in (encoder.model, context_encoder.model, scorer.model, raw):
            client.close()  # open connections hold a stopping server for up to its exit timeout
    assert sidecar.process is None
    assert not tree & running().keys()
    assert not scratch.exists() and not [c for c in Path("/tmp").glob("folder*/config.pbtxt") if str(scratch) in c.read_text()]


def test_a_model_that_cannot_load_fails_the_start_with_the_servers_log(tmp_path, exported):
    root = write_model_repository(tmp_path / "repo", {"ranker": exported["ranker"]})
    (root / "ranker" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    sidecar = TritonSidecar(root)
    with pytest.raises(RuntimeError, match="(?s)exited with code 1.*model.onnx"):
        sidecar.start()
    assert sidecar.process is None and sidecar.scratch is None
