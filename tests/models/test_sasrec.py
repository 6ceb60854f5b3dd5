"""SASRec: shapes, the attention mask, logQ correction, learning a pattern, ONNX parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from hyperrec.data.behaviours import BEHAVIOURS
from hyperrec.models.sasrec import SASRec, SASRecConfig, attention_mask, sample_negatives, sampled_softmax_logits

N_ITEMS = 30
N_CATEGORIES = 4


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add overhead, and on a busy 2-core machine OpenMP's
    spinning workers made each small matmul ~200x slower (6 ms instead of 0.03 ms)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(use_category: bool = False, loss: str = "full_softmax", seed: int = 0, **overrides) -> SASRec:
    torch.manual_seed(seed)
    params = dict(max_len=8, dim=16, n_layers=2, n_heads=2, dropout=0.1, loss=loss, n_negatives=12, use_category=use_category)
    config = SASRecConfig(**(params | overrides))
    categories = torch.arange(N_ITEMS + 1) % N_CATEGORIES if use_category else None
    return SASRec(config, N_ITEMS, categories)


def random_batch(batch: int = 3, length: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded sequences of different lengths and their next-item targets (0 = ignore)."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (batch, length + 1), generator=g)
    for row in range(batch):
        items[row, : row * 2] = 0  # row 0 full, later rows shorter
    return items[:, :-1], items[:, 1:] * (items[:, :-1] != 0)


@pytest.mark.parametrize("use_category", [False, True])
@pytest.mark.parametrize("loss", ["full_softmax", "sampled_softmax"])
def test_shapes_and_every_parameter_gets_a_gradient(use_category, loss):
    model = make_model(use_category, loss)
    items, targets = random_batch()
    assert model.forward(items).shape == (3, 8, 16)
    assert model.forward(items[:, -5:]).shape == (3, 5, 16)
    assert model.score_next(items).shape == (3, N_ITEMS)
    assert model.item_embeddings().shape == (N_ITEMS + 1, 16)
    value = model.loss(items, targets)
    assert value.shape == () and torch.isfinite(value)
    value.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    assert model.item_emb.weight.grad[0].abs().sum() == 0  # the padding row never learns


def test_category_embedding_is_part_of_the_item_embedding():
    model = make_model(use_category=True)
    table = model.item_embeddings()
    expected = model.item_emb.weight + model.category_emb.weight[torch.arange(N_ITEMS + 1) % N_CATEGORIES]
    torch.testing.assert_close(table, expected)
    assert model.category_emb.num_embeddings == N_CATEGORIES
    assert "item_categories" in model.state_dict()


def test_attention_mask_is_causal_skips_padding_and_always_allows_itself():
    mask = attention_mask(torch.tensor([[0, 0, 5, 6], [0, 0, 0, 0]]))[:, 0]
    assert mask.shape == (2, 4, 4)
    assert mask[0].tolist() == [
        [True, False, False, False],
        [False, True, False, False],
        [False, False, True, False],
        [False, False, True, True],
    ]
    assert torch.equal(mask[1], torch.eye(4, dtype=torch.bool))


def test_later_items_do_not_change_earlier_hidden_states():
    model = make_model(use_category=True).eval()
    items, _ = random_batch(batch=1)
    changed = items.clone()
    changed[0, 5:] = torch.tensor([1, 2, 3])
    with torch.no_grad():
        before, after = model(items), model(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


def test_extra_left_padding_does_not_change_the_next_item_scores():
    model = make_model().eval()
    short = torch.tensor([[4, 9, 2, 17]])
    with torch.no_grad():
        reference = model.score_next(short)
        for pad in (1, 4):
            padded = torch.cat([torch.zeros(1, pad, dtype=torch.long), short], dim=1)
            torch.testing.assert_close(model.score_next(padded), reference, rtol=0, atol=1e-5)
        empty = model(torch.zeros(2, 8, dtype=torch.long))
    assert torch.isfinite(empty).all()  # all-padding rows: no NaN


def test_embedding_scale_multiplies_the_input_item_embeddings_but_not_the_output_table():
    scaled = make_model(embedding_scale=True).eval()
    plain = make_model(embedding_scale=False).eval()
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.item_emb.weight.mul_(math.sqrt(16))
        items, _ = random_batch()
        torch.testing.assert_close(scaled(items), plain(items))
    torch.testing.assert_close(scaled.item_embeddings() * math.sqrt(16), plain.item_embeddings())


def test_sasrec_feed_forward_width_and_xavier_init():
    model = make_model(ffn_mult=1, init="xavier", dim=64)
    assert model.blocks[0].mlp.fc.weight.shape == (64, 64)
    expected = math.sqrt(2 / (N_ITEMS + 1 + 64))  # xavier-normal std of the item table
    assert model.item_emb.weight[1:].std().item() == pytest.approx(expected, rel=0.15)
    assert model.item_emb.weight[0].abs().sum() == 0
    gpt2 = make_model(dim=64)
    assert gpt2.blocks[0].mlp.fc.weight.shape == (256, 64)
    assert gpt2.item_emb.weight[1:].std().item() == pytest.approx(0.02, rel=0.15)


def test_sequences_longer_than_max_len_are_an_error():
    with pytest.raises(ValueError, match="exceeds max_len 8"):
        make_model()(torch.ones(1, 9, dtype=torch.long))


def test_logq_correction_shifts_each_logit_by_minus_log_q_and_masks_accidental_hits():
    torch.manual_seed(0)
    hidden, table = torch.randn(3, 8), torch.randn(N_ITEMS + 1, 8)
    targets = torch.tensor([5, 7, 9])
    negatives = torch.tensor([1, 7, 2, 5, 30])  # 7 and 5 are accidental hits for rows 1 and 0
    probs = torch.arange(N_ITEMS + 1, dtype=torch.float) ** 2  # skewed proposal, row 0 never drawn
    log_q = (probs / probs.sum()).log()
    flat = torch.zeros(N_ITEMS + 1)

    corrected = sampled_softmax_logits(hidden, table, targets, negatives, log_q)
    raw = sampled_softmax_logits(hidden, table, targets, negatives, flat)
    assert corrected.shape == (3, 1 + len(negatives))
    torch.testing.assert_close(raw[:, 0], (hidden * table[targets]).sum(-1))
    hits = torch.zeros(3, len(negatives), dtype=torch.bool)
    hits[0, 3] = hits[1, 1] = True
    assert torch.isneginf(corrected[:, 1:][hits]).all() and torch.isneginf(raw[:, 1:][hits]).all()
    torch.testing.assert_close(corrected[:, 0] - raw[:, 0], -log_q[targets])
    shift = (corrected[:, 1:] - raw[:, 1:])[~hits]
    torch.testing.assert_close(shift, (-log_q[negatives]).expand(3, -1)[~hits])
    assert torch.isfinite(corrected[:, 1:][~hits]).all()


def test_negatives_follow_the_proposal_and_never_include_padding():
    probs = torch.tensor([0.0, 0.7, 0.2, 0.1])
    draws = sample_negatives(probs.log(), 20_000, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert freq[0] == 0
    torch.testing.assert_close(freq, probs, atol=0.02, rtol=0)


def test_sampled_softmax_loss_uses_the_given_proposal(monkeypatch):
    model = make_model(loss="sampled_softmax").eval()
    items, targets = random_batch()
    probs = torch.arange(N_ITEMS + 1, dtype=torch.float)
    log_q = (probs / probs.sum()).log()
    seen = {}

    def spy(item_log_q, n, generator=None):
        seen["log_q"], seen["n"] = item_log_q, n
        return sample_negatives(item_log_q, n, generator)

    monkeypatch.setattr("hyperrec.models.sasrec.sample_negatives", spy)
    assert torch.isfinite(model.loss(items, targets, log_q))
    assert seen["log_q"] is log_q and seen["n"] == 12
    model.loss(items, targets)  # uniform proposal when none is given
    assert torch.isneginf(seen["log_q"][0]) and torch.allclose(seen["log_q"][1:], torch.full((N_ITEMS,), -math.log(N_ITEMS)))
    with pytest.raises(ValueError, match="item_log_q must have shape"):
        model.loss(items, targets, log_q[1:])


@pytest.mark.parametrize("loss", ["full_softmax", "sampled_softmax"])
def test_learns_a_deterministic_next_item_pattern(loss):
    """Item i is always followed by item i + 1 (wrapping round): the model must learn it."""
    g = torch.Generator().manual_seed(0)
    starts = torch.randint(0, N_ITEMS, (64, 1), generator=g)
    seqs = (starts + torch.arange(9)) % N_ITEMS + 1  # [64, 9], ids 1..N_ITEMS
    lengths = torch.randint(2, 10, (64,), generator=g)
    seqs[torch.arange(9) < 9 - lengths[:, None]] = 0  # left padding, varied lengths
    items, targets = seqs[:, :-1], seqs[:, 1:] * (seqs[:, :-1] != 0)

    model = make_model(loss=loss, seed=1, dim=32, n_negatives=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        optimizer.zero_grad()
        value = model.loss(items, targets)
        value.backward()
        optimizer.step()
        losses.append(value.item())
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:5])

    model.eval()
    with torch.no_grad():
        predicted = model.score_next(items).argmax(1) + 1  # column j is item id j + 1
    expected = items[:, -1] % N_ITEMS + 1
    assert (predicted == expected).float().mean() > 0.9


class NextItemScores(torch.nn.Module):
    def __init__(self, model: SASRec):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.model.score_next(items)


@pytest.mark.parametrize("repeat_head", [False, True])
def test_onnx_export_with_dynamic_batch_and_length_matches_torch(tmp_path, repeat_head):
    ort = pytest.importorskip("onnxruntime")
    model = make_model(use_category=True, seed=3, repeat_head=repeat_head).eval()
    wrapper = NextItemScores(model).eval()
    path = tmp_path / "sasrec.onnx"
    dynamic = {"items": {0: torch.export.Dim("batch"), 1: torch.export.Dim("length", max=model.config.max_len)}}
    torch.onnx.export(
        wrapper,
        (random_batch(3, 6)[0],),
        str(path),
        dynamo=True,
        dynamic_shapes=dynamic,
        input_names=["items"],
        output_names=["scores"],
        verbose=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, length in [(2, 4), (5, 8), (1, 1)]:
        items = random_batch(batch, length, seed=batch)[0]
        with torch.no_grad():
            expected = model.score_next(items).numpy()
        (got,) = session.run(None, {"items": items.numpy()})
        assert got.shape == (batch, N_ITEMS)
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_config_validation():
    with pytest.raises(ValidationError, match=r"dim \(10\) must be divisible by n_heads \(3\)"):
        SASRecConfig(dim=10, n_heads=3)
    with pytest.raises(ValidationError, match="extra"):
        SASRecConfig(n_layer=2)
    with pytest.raises(ValidationError):
        SASRecConfig(loss="bpr")
    with pytest.raises(ValueError, match="item_categories"):
        SASRec(SASRecConfig(use_category=True), N_ITEMS)
    with pytest.raises(ValueError, match="shape"):
        SASRec(SASRecConfig(use_category=True), N_ITEMS, torch.zeros(N_ITEMS, dtype=torch.long))


def test_repeat_head_scores_seen_items_by_count_and_decayed_recency():
    model = make_model(repeat_head=True, seed=4).eval()
    with torch.no_grad():
        model.repeat_seen.fill_(2.0)
        model.repeat_count_weight.fill_(0.3)
        model.repeat_weight.fill_(0.7)
        model.repeat_decay_logit.fill_(0.0)  # decay 0.5 per item of age
    items = torch.tensor([[0, 0, 0, 0, 5, 3, 5, 9]])
    with torch.no_grad():
        base = model.forward(items)[:, -1] @ model.item_embeddings()[1:].T
        added = (model.score_next(items) - base)[0]
    expected = torch.zeros(N_ITEMS)
    expected[5 - 1] = 2.0 + 0.3 * math.log1p(2) + 0.7 * math.log1p(0.5**3 + 0.5**1)  # item 5 at ages 3 and 1
    expected[3 - 1] = 2.0 + 0.3 * math.log1p(1) + 0.7 * math.log1p(0.5**2)
    expected[9 - 1] = 2.0 + 0.3 * math.log1p(1) + 0.7 * math.log1p(1.0)
    torch.testing.assert_close(added, expected, atol=1e-5, rtol=0)


def test_repeat_head_scalars_get_their_own_learning_rate_and_no_weight_decay():
    model = make_model(repeat_head=True, repeat_lr=0.123)
    rest, head = model.param_groups(lr=1e-3, weight_decay=0.01)
    assert {id(p) for p in head["params"]} == {
        id(model.repeat_seen),
        id(model.repeat_count_weight),
        id(model.repeat_weight),
        id(model.repeat_decay_logit),
    }
    assert (head["lr"], head["weight_decay"], rest["lr"], rest["weight_decay"]) == (0.123, 0.0, 1e-3, 0.01)
    assert len(rest["params"]) + len(head["params"]) == len(list(model.parameters()))
    assert len(make_model().param_groups(lr=1e-3, weight_decay=0.0)) == 1


def test_next_basket_loss_is_the_mean_cross_entropy_of_the_next_baskets_items():
    model = make_model(seed=5, objective="next_basket").eval()
    items = torch.tensor([[0, 0, 1, 2, 3, 4, 5, 6]])
    targets = torch.zeros(1, 8, 3, dtype=torch.long)
    targets[0, 4] = torch.tensor([7, 8, 0])  # the basket ending at position 4 is followed by {7, 8}
    targets[0, 7] = torch.tensor([2, 0, 0])
    with torch.no_grad():
        log_probs = (model.forward(items)[0] @ model.item_embeddings()[1:].T).log_softmax(-1)
        expected = -(log_probs[4, 6] + log_probs[4, 7] + log_probs[7, 1]) / 3
        torch.testing.assert_close(model.loss(items, targets), expected)


def test_repeat_head_and_next_basket_need_the_full_softmax():
    with pytest.raises(ValidationError, match="full_softmax"):
        SASRecConfig(repeat_head=True, loss="sampled_softmax")
    with pytest.raises(ValidationError, match="full_softmax"):
        SASRecConfig(objective="next_basket", loss="sampled_softmax")


def carted_item_sequences(n: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    """Views of random items, one of them put in the cart at a random place: the next purchase is that item, which only
    the event kinds tell apart."""
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (n, length), generator=g)
    kinds = torch.full((n, length), BEHAVIOURS.index("view") + 1)
    carted = torch.randint(0, length, (n,), generator=g)
    kinds[torch.arange(n), carted] = BEHAVIOURS.index("add_to_cart") + 1
    gaps = torch.full((n, length), 3)
    targets = torch.zeros_like(items)  # no next-event target: the purchase head alone learns
    purchase = torch.zeros_like(items)
    purchase[:, -1] = items[torch.arange(n), carted]
    return {"items": items, "kinds": kinds, "gaps": gaps, "targets": targets, "purchase_targets": purchase}


def test_behaviour_model_learns_from_event_kinds_what_a_plain_model_cannot_see():
    """The purchase head finds the carted item among the viewed ones; the same model with the kinds all "view" cannot."""
    train, test = carted_item_sequences(512, 6, seed=0), carted_item_sequences(256, 6, seed=1)
    model = make_model(seed=2, dim=32, dropout=0.0, behaviour=True, purchase_weight=1.0, served_head="next_purchase")
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for step in range(150):
        batch = {k: v[(step * 64) % 512 :][:64] for k, v in train.items()}
        optimizer.zero_grad()
        loss = model.behaviour_loss(batch["items"], batch["kinds"], batch["gaps"], batch["targets"], batch["purchase_targets"])
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        right = model.score_next(test["items"], test["kinds"], test["gaps"]).argmax(1) + 1 == test["purchase_targets"][:, -1]
        blind = torch.full_like(test["kinds"], BEHAVIOURS.index("view") + 1)
        blind_right = model.score_next(test["items"], blind, test["gaps"]).argmax(1) + 1 == test["purchase_targets"][:, -1]
    assert right.float().mean() > 0.8
    assert blind_right.float().mean() < 0.45  # at best a guess among the six viewed items
    with pytest.raises(ValueError, match="kinds and gaps"):
        model(test["items"])


def test_behaviour_model_heads_and_config_rules():
    model = make_model(behaviour=True, purchase_weight=0.5).eval()
    batch = carted_item_sequences(4, 5, seed=3)
    with torch.no_grad():
        engagement = model.score_next(batch["items"], batch["kinds"], batch["gaps"])
        purchase = model.score_next(batch["items"], batch["kinds"], batch["gaps"], head="next_purchase")
        assert not torch.allclose(engagement, purchase)
        hidden = model(batch["items"], batch["kinds"], batch["gaps"])[:, -1]
        torch.testing.assert_close(purchase, model.purchase_head(hidden) @ model.item_embeddings()[1:].T)
    with pytest.raises(ValidationError, match="purchase_weight needs behaviour"):
        SASRecConfig(purchase_weight=1.0)
    with pytest.raises(ValidationError, match="served_head next_purchase needs"):
        SASRecConfig(behaviour=True, served_head="next_purchase")
    with pytest.raises(ValidationError, match="full_softmax"):
        SASRecConfig(behaviour=True, loss="sampled_softmax")


def test_a_behaviour_repeat_head_weighs_earlier_events_by_kind_per_head():
    model = make_model(behaviour=True, purchase_weight=1.0, repeat_head=True).eval()
    view, cart = BEHAVIOURS.index("view") + 1, BEHAVIOURS.index("add_to_cart") + 1
    with torch.no_grad():
        model.repeat_kind_logit[1, cart] = 5.0  # the purchase head: a carted item counts ~5 views
    items, gaps = torch.tensor([[3, 4]]), torch.tensor([[1, 3]])
    age = torch.tensor([[1.0, 0.0]])
    with torch.no_grad():
        viewed = model.repeat_scores(items, age, torch.tensor([[view, view]]), "next_purchase")[0]
        carted = model.repeat_scores(items, age, torch.tensor([[cart, view]]), "next_purchase")[0]
        as_next_item = model.repeat_scores(items, age, torch.tensor([[cart, view]]), "next_item")[0]
    assert carted[2] > viewed[2] and carted[3] == viewed[3]  # item 3 (column 2) was carted
    torch.testing.assert_close(as_next_item, viewed)  # the next-item head's weights were left at 1 for every kind
    scores = model.score_next(items, torch.tensor([[cart, view]]), gaps, head="next_purchase")
    loss = model.behaviour_loss(items, torch.tensor([[cart, view]]), gaps, torch.tensor([[4, 0]]), torch.tensor([[3, 0]]))
    loss.backward()
    assert scores.shape == (1, N_ITEMS) and model.repeat_kind_logit.grad[:, cart].abs().min() > 0
