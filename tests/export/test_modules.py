"""Export plans: each exported ONNX module matches the torch model it stands for, at any batch size
and history length, and the item vectors are the model's own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hyperrec.bundle.onnx_models import OnnxEncoder
from hyperrec.bundle.user_state import Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS, N_GAP_IDS, N_KIND_IDS
from hyperrec.export.modules import ExportPlan, exportable
from hyperrec.export.onnx import check_parity, export_onnx
from hyperrec.models.sasrec import SASRec
from hyperrec.models.two_tower import ItemFeatures, TwoTower
from tests.models.test_sasrec import make_model as make_sasrec
from tests.models.test_two_tower import N_ITEMS as TWO_TOWER_ITEMS
from tests.models.test_two_tower import shop_catalog, small_config

TOLERANCE = 1e-4
# (batch, length): length 1, shorter than, equal to and (two-tower only) longer than max_len (8).
SHAPES = [(1, 1), (3, 4), (5, 8), (2, 3)]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: a second OpenMP thread only spins."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def histories(n_items: int, shapes: list[tuple[int, int]], seed: int = 0) -> list[np.ndarray]:
    """Left-padded [B, L] item ids, 1..L real items per row; with B > 1 the last row is all padding."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch, length in shapes:
        items = rng.integers(1, n_items + 1, (batch, length))
        for row, n_pad in enumerate(rng.integers(0, length, batch)):
            items[row, :n_pad] = 0
        if batch > 1:
            items[-1] = 0
        batches.append(items)
    return batches


def export_and_open(module: torch.nn.Module, example: dict, dynamic: dict, path: Path, output: str) -> ort.InferenceSession:
    export_onnx(module, example, path, output, dynamic)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_sasrec_encoder_matches_the_last_hidden_state_and_vectors_are_the_tied_embeddings(tmp_path):
    model: SASRec = make_sasrec(use_category=True, seed=1).eval()
    plan = exportable("sasrec", model)
    session = export_and_open(plan.encoder, plan.example, plan.dynamic, tmp_path / "encoder.onnx", "user_vector")

    cases = [{"items": items} for items in histories(model.n_items, SHAPES)]
    parity = check_parity(lambda items: model(items)[:, -1], session, cases, TOLERANCE)
    assert parity.passed, parity
    with torch.no_grad():
        np.testing.assert_array_equal(plan.item_vectors, model.item_embeddings()[1:].numpy())


def two_tower(with_text: bool) -> TwoTower:
    """A tiny two-tower whose ID rows are random (they start at zero, which would hide a wrong ID
    lookup) and whose padding rows are non-zero (which would expose a missing padding mask)."""
    torch.manual_seed(0)
    config = small_config(dim=16)
    text = np.random.default_rng(0).normal(size=(TWO_TOWER_ITEMS, 5)) if with_text else None
    model = TwoTower(config, TWO_TOWER_ITEMS, ItemFeatures.from_catalog(shop_catalog(), config.n_price_buckets, text))
    with torch.no_grad():
        for bag in model.item_tower.sparse.embedding_bags.values():
            torch.nn.init.normal_(bag.weight)
    return model.eval()


def context(batch: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"device": rng.integers(0, 4, batch), "hour": rng.integers(0, 24, batch), "weekday": rng.integers(0, 7, batch)}


@pytest.mark.parametrize("with_text", [False, True])
def test_two_tower_encoder_and_item_tower_match_the_model(tmp_path, with_text):
    model = two_tower(with_text)
    plan: ExportPlan = exportable("two_tower", model)
    # The export twins read the model's own parameters (and buffers): nothing was copied.
    model_tensors = {t.data_ptr() for t in [*model.parameters(), *model.buffers()]}
    assert {t.data_ptr() for t in [*plan.encoder.parameters(), *plan.encoder.buffers()]} <= model_tensors

    encoder = export_and_open(plan.encoder, plan.example, plan.dynamic, tmp_path / "encoder.onnx", "user_vector")
    shapes = [*SHAPES, (3, 11)]  # longer than max_len: only the last max_len items are read
    cases = [{"items": items, **context(len(items), seed)} for seed, items in enumerate(histories(model.n_items, shapes))]
    parity = check_parity(model.user_vectors, encoder, cases, TOLERANCE)
    assert parity.passed, parity

    item_tower = export_and_open(
        plan.extra["item_tower"],
        plan.extra_examples["item_tower"],
        plan.extra_dynamic["item_tower"],
        tmp_path / "item_tower.onnx",
        "item_vector",
    )
    rows = [np.arange(model.n_items + 1), np.array([7]), np.array([0, 3, 0])]
    parity = check_parity(model.item_tower, item_tower, [{"item_rows": r} for r in rows], TOLERANCE)
    assert parity.passed, parity

    np.testing.assert_array_equal(plan.item_vectors, model.item_vectors().numpy())
    assert plan.item_vectors.shape == (model.n_items, model.config.dim)


def test_unknown_kind_is_an_error():
    with pytest.raises(ValueError, match="not supported"):
        exportable("bert4rec", torch.nn.Linear(1, 1))


def test_behaviour_sasrec_encoder_reads_kinds_and_gaps_and_serving_feeds_them(tmp_path):
    model: SASRec = make_sasrec(seed=4, behaviour=True, purchase_weight=1.0, served_head="next_purchase").eval()
    plan = exportable("sasrec", model)
    assert list(plan.example) == ["items", "kinds", "gaps"]
    path = tmp_path / "encoder.onnx"
    session = export_and_open(plan.encoder, plan.example, plan.dynamic, path, "user_vector")
    rng = np.random.default_rng(5)
    cases = []
    for items in histories(model.n_items, SHAPES[:3]):
        real = items > 0
        kinds, gaps = rng.integers(1, N_KIND_IDS, items.shape) * real, rng.integers(1, N_GAP_IDS, items.shape) * real
        cases.append({"items": items, "kinds": kinds, "gaps": gaps})
    parity = check_parity(lambda items, kinds, gaps: model.query(items, kinds, gaps), session, cases, TOLERANCE)
    assert parity.passed, parity

    encoder = OnnxEncoder(path, model.config.max_len)
    assert encoder.behaviour
    bought = [np.array([1, 2])]
    viewed = Recent(np.array([5]), np.array([BEHAVIOURS.index("view")]), np.array([10**15]))
    sequences = np.stack([UserState(bought).behaviour_sequence(8), UserState(bought, events=viewed).behaviour_sequence(8)])
    vectors = encoder(sequences, {})
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)  # a view changes what the encoder says
    with torch.no_grad():
        expected = model.query(*torch.from_numpy(sequences).unbind(1)).numpy()
    np.testing.assert_allclose(vectors, expected, atol=TOLERANCE)
