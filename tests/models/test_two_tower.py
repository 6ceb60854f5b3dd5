"""The two-tower retriever: features, TorchRec tables, vectors, the corrected loss, and that it learns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torchrec.modules.embedding_modules import EmbeddingBagCollection

from hyperrec.data.catalog import normalize_catalog
from hyperrec.models.two_tower import ItemFeatures, TwoTower, TwoTowerConfig, sampled_softmax_logits


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are tiny; with two OpenMP threads on a shared 2-core machine a step can take
    30x longer than with one (threads spin waiting for each other)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# A small shop: N_CAT categories of PER_CAT items. A user's items walk through categories
# c, c+1, c+2, ...; so the last item's category determines the next item's category. Within a
# category items are drawn by Zipf popularity; the last COLD items of each category never occur.
N_CAT, PER_CAT, COLD, L = 6, 20, 2, 8
N_ITEMS = N_CAT * PER_CAT
ITEM_CATEGORY = np.repeat(np.arange(N_CAT), PER_CAT)  # of item row i + 1
COLD_ITEMS = np.array([1 + c * PER_CAT + j for c in range(N_CAT) for j in range(PER_CAT - COLD, PER_CAT)])


def shop_catalog(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    price = rng.lognormal(0, 1, N_ITEMS)
    price[rng.random(N_ITEMS) < 0.1] = np.nan
    return normalize_catalog(
        pd.DataFrame({"item_id": [f"i{i}" for i in range(N_ITEMS)], "category": [f"c{c}" for c in ITEM_CATEGORY], "price": price})
    )


def shop_users(n: int, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
    """(items [n, L] left-padded, device, hour, weekday, next item)."""
    within = 1.0 / np.arange(1, PER_CAT + 1)
    within[PER_CAT - COLD :] = 0
    within /= within.sum()
    lengths = rng.integers(1, L + 1, n)
    start = rng.integers(0, N_CAT, n)
    steps = np.arange(L + 1)
    category = (start[:, None] + steps[None, :]) % N_CAT  # [n, L + 1], column lengths[u] is the next item
    rows = 1 + category * PER_CAT + rng.choice(PER_CAT, size=category.shape, p=within)
    items = np.zeros((n, L), np.int64)
    for u, length in enumerate(lengths):
        items[u, L - length :] = rows[u, :length]
    target = rows[np.arange(n), lengths]
    context = [torch.from_numpy(rng.integers(0, k, n)) for k in (4, 24, 7)]
    return torch.from_numpy(items), *context, torch.from_numpy(target)


def small_config(**overrides) -> TwoTowerConfig:
    values = dict(
        dim=32, max_len=L, n_heads=2, n_layers=1, dropout=0.0, temperature=0.1, n_sampled_negatives=32, id_dropout=0.3, n_price_buckets=4
    )
    return TwoTowerConfig(**(values | overrides))


def small_model(**overrides) -> TwoTower:
    config = small_config(**overrides)
    return TwoTower(config, N_ITEMS, ItemFeatures.from_catalog(shop_catalog(), config.n_price_buckets))


def log_q_of(positives: torch.Tensor) -> torch.Tensor:
    counts = torch.bincount(positives, minlength=N_ITEMS + 1).double()
    return (counts / counts.sum()).log().float()


# ------------------------------------------------------------------------------------------------


def test_item_features_from_catalog():
    catalog = normalize_catalog(
        pd.DataFrame(
            {
                "item_id": list("abcdef"),
                "category": ["toys", "food", None, "food", "toys", "food"],
                "price": [1.0, 2.0, np.nan, 3.0, 4.0, 5.0],
            }
        )
    )
    text = np.arange(12, dtype=np.float32).reshape(6, 2)
    features = ItemFeatures.from_catalog(catalog, n_price_buckets=2, text=text)

    assert features.category_vocab == ("food", "toys", "unknown")
    assert features.category.tolist() == [0, 2, 1, 3, 1, 2, 1]  # row 0 = padding, then catalog order
    assert features.price_bucket.tolist() == [0, 1, 1, 0, 2, 2, 2]  # unknown price -> 0; median 3.0
    assert features.price_bucket.dtype == features.category.dtype == torch.int64
    assert features.n_items == 6 and features.n_categories == 4
    assert features.text.shape == (7, 2) and features.text[0].abs().sum() == 0 and features.text[1].tolist() == [0.0, 1.0]

    no_prices = ItemFeatures.from_catalog(catalog.assign(price=np.nan), n_price_buckets=3)
    assert no_prices.price_bucket.tolist() == [0] * 7 and no_prices.text is None
    with pytest.raises(ValueError, match="one row per catalog item"):
        ItemFeatures.from_catalog(catalog, 2, text=text[:5])


def test_id_tables_are_torchrec_and_receive_gradients():
    model = small_model()
    sparse = model.item_tower.sparse
    assert isinstance(sparse, EmbeddingBagCollection)
    assert [t.name for t in sparse.embedding_bag_configs()] == ["item_id", "category"]
    assert sparse.embedding_bags["item_id"].weight.shape == (N_ITEMS + 1, 32)
    assert sparse.embedding_bags["category"].weight.shape == (N_CAT + 1, 32)

    batch = shop_users(16, np.random.default_rng(1))
    model.train()
    torch.manual_seed(0)
    model.loss(*batch, log_q_of(torch.cat([batch[4], shop_users(500, np.random.default_rng(2))[4]]))).backward()

    id_grad = sparse.embedding_bags["item_id"].weight.grad
    category_grad = sparse.embedding_bags["category"].weight.grad
    assert id_grad is not None and category_grad is not None
    touched = torch.unique(torch.cat([batch[0].flatten(), batch[4]]))
    assert id_grad[touched[touched > 0]].abs().sum(dim=1).gt(0).any()
    assert id_grad[0].abs().sum() == 0 and category_grad[0].abs().sum() == 0  # padding is never looked up
    assert id_grad[COLD_ITEMS].abs().sum() == 0  # never drawn: log q = -inf
    assert category_grad[1:].abs().sum(dim=1).gt(0).all()


def test_vectors_have_shapes_unit_norm_and_survive_all_padding():
    model = small_model().eval()
    items, device, hour, weekday, _ = shop_users(5, np.random.default_rng(3))
    items[2] = 0  # a user with no history at all
    with torch.no_grad():
        users = model.user_vectors(items, device, hour, weekday)
        longer = model.user_vectors(torch.cat([torch.ones(5, 3, dtype=torch.long), items], dim=1), device, hour, weekday)
        all_items = model.item_vectors()
    assert users.shape == (5, 32) and all_items.shape == (N_ITEMS, 32)
    assert torch.isfinite(users).all()
    torch.testing.assert_close(users.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(all_items.norm(dim=1), torch.ones(N_ITEMS))
    torch.testing.assert_close(longer, users)  # only the last max_len items are read
    torch.testing.assert_close(model.item_vectors(torch.tensor([3, 1])), all_items[[2, 0]])

    model.train()  # and in training, through the loss, with gradients
    loss = model.loss(items, device, hour, weekday, torch.tensor([1, 2, 3, 4, 5]), log_q_of(torch.arange(1, N_ITEMS + 1)))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_id_dropout_only_when_asked():
    model = small_model(id_dropout=1.0).eval()
    rows = torch.arange(1, 11)
    with torch.no_grad():
        model.item_tower.sparse.embedding_bags["item_id"].weight.normal_()  # as if trained
        content = model.item_tower.encode_content_only(rows)
        torch.testing.assert_close(model.item_tower(rows, drop_ids=True), content)
        assert not torch.allclose(model.item_tower(rows), content)


def test_logq_correction_shifts_each_logit_by_exactly_minus_log_q():
    scores = torch.tensor([[0.5, -0.2, 0.1], [0.3, 0.9, -0.4]])
    log_q = torch.tensor([-1.0, -2.5, -0.3])
    logits = sampled_softmax_logits(scores, log_q, 0.05, candidates=torch.tensor([4, 7, 9]), positives=torch.tensor([4, 7]))
    torch.testing.assert_close(logits, scores / 0.05 - log_q)

    # Through the model: raising one item's log q by delta lowers its logit in every row by delta.
    model = small_model().eval()
    items, device, hour, weekday, _ = shop_users(4, np.random.default_rng(4))
    positives, negatives = torch.tensor([1, 21, 41, 61]), torch.tensor([2, 22, 42])
    item_log_q = log_q_of(torch.arange(1, N_ITEMS + 1))
    shifted = item_log_q.clone()
    shifted[22] += 0.7
    with torch.no_grad():
        base = model.logits(items, device, hour, weekday, positives, item_log_q, negatives)
        moved = model.logits(items, device, hour, weekday, positives, shifted, negatives)
        users = model.user_vectors(items, device, hour, weekday)
        vectors = model.item_tower(torch.cat([positives, negatives]))
    column = 4 + 1  # negatives follow the 4 positives
    torch.testing.assert_close(moved[:, column], base[:, column] - 0.7)
    torch.testing.assert_close(
        torch.cat([moved[:, :column], moved[:, column + 1 :]], 1), torch.cat([base[:, :column], base[:, column + 1 :]], 1)
    )
    log_q_candidates = item_log_q[torch.cat([positives, negatives])]
    torch.testing.assert_close(base, (users @ vectors.T) / model.config.temperature - log_q_candidates)


def test_accidental_hits_are_masked():
    positives = torch.tensor([3, 5, 3])
    negatives = torch.tensor([5, 7, 3])
    candidates = torch.cat([positives, negatives])
    logits = sampled_softmax_logits(torch.zeros(3, 6), torch.zeros(6), 0.1, candidates, positives)
    masked = torch.isinf(logits)
    assert masked.tolist() == [
        [False, False, True, False, False, True],  # row 0 (item 3): its duplicate in row 2 and sampled 3
        [False, False, False, True, False, False],  # row 1 (item 5): sampled 5
        [True, False, False, False, False, True],  # row 2 (item 3): row 0's 3 and sampled 3
    ]
    assert not masked.diagonal().any()

    model = small_model()
    items, device, hour, weekday, _ = shop_users(3, np.random.default_rng(5))
    logits = model.logits(items, device, hour, weekday, positives, log_q_of(torch.arange(1, N_ITEMS + 1)), negatives)
    assert torch.equal(torch.isinf(logits), masked)


# ------------------------------------------------------------------------------------------------
# Training on the small shop (one model, trained once for the tests below).


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = small_model()
    train = shop_users(4_000, rng)
    item_log_q = log_q_of(train[4])
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    model.train()
    for _ in range(150):
        batch = torch.randint(0, 4_000, (128,))
        loss = model.loss(*(x[batch] for x in train), item_log_q)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    return model, losses, train, shop_users(1_000, rng)


def test_loss_falls_and_retrieval_beats_popularity(trained):
    model, losses, train, test = trained
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])

    items, device, hour, weekday, target = test
    with torch.no_grad():
        scores = model.user_vectors(items, device, hour, weekday) @ model.item_vectors().T  # exact search
    top10 = scores.topk(10, dim=1).indices + 1  # column j is item row j + 1
    recall = (top10 == target[:, None]).any(dim=1).float().mean().item()
    popular = torch.bincount(train[4], minlength=N_ITEMS + 1)[1:].topk(10).indices + 1
    popularity_recall = torch.isin(target, popular).float().mean().item()
    assert recall > popularity_recall + 0.2, (recall, popularity_recall)


def test_cold_items_are_placed_by_content(trained):
    model, _, _, _ = trained
    cold = torch.from_numpy(COLD_ITEMS)
    warm = torch.from_numpy(np.setdiff1d(np.arange(1, N_ITEMS + 1), COLD_ITEMS))
    tower = model.item_tower
    with torch.no_grad():
        assert tower.sparse.embedding_bags["item_id"].weight[cold].abs().sum() == 0  # never trained
        content = tower.encode_content_only(cold)
        torch.testing.assert_close(tower(cold), content)  # an untrained ID row is the same as no ID
        warm_vectors = tower(warm)
    warm_category = torch.from_numpy(ITEM_CATEGORY)[warm - 1]
    cold_category = torch.from_numpy(ITEM_CATEGORY)[cold - 1]
    similarity = content @ warm_vectors.T
    same = warm_category[None, :] == cold_category[:, None]
    same_mean = (similarity * same).sum(1) / same.sum(1)
    other_mean = (similarity * ~same).sum(1) / (~same).sum(1)
    assert (same_mean > other_mean + 0.2).all(), (same_mean, other_mean)
    nearest = similarity.topk(5, dim=1).indices
    assert (warm_category[nearest] == cold_category[:, None]).float().mean() > 0.9


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"dimm": 32}, "Extra inputs"),
        ({"dim": 30, "n_heads": 4}, "divisible by n_heads"),
        ({"temperature": 0}, "greater than 0"),
        ({"id_dropout": 1.5}, "less than or equal to 1"),
        ({"dropout": 1.0}, "less than 1"),
        ({"n_sampled_negatives": -1}, "greater than or equal to 0"),
        ({"dim": "wide"}, "valid integer"),
    ],
)
def test_config_rejects_bad_values(bad, match):
    with pytest.raises(ValidationError, match=match):
        TwoTowerConfig(**bad)


def test_model_rejects_mismatched_features_and_log_q():
    features = ItemFeatures.from_catalog(shop_catalog(), n_price_buckets=4)
    with pytest.raises(ValueError, match="n_items is 99"):
        TwoTower(small_config(), 99, features)
    with pytest.raises(ValueError, match="n_price_buckets is 2"):
        TwoTower(small_config(n_price_buckets=2), N_ITEMS, features)
    model = TwoTower(small_config(), N_ITEMS, features)
    items, device, hour, weekday, target = shop_users(2, np.random.default_rng(6))
    with pytest.raises(ValueError, match="one entry per item row"):
        model.loss(items, device, hour, weekday, target, torch.zeros(N_ITEMS))
    never_bought = torch.zeros(N_ITEMS + 1)
    never_bought[target[0]] = float("-inf")
    with pytest.raises(ValueError, match=rf"not finite for candidate items \[{target[0]}\]"):
        model.loss(items, device, hour, weekday, target, never_bought)
