"""The learned ranker: shapes, the DCN-v2 cross layer, learning a rule, standardisation, ONNX export."""

import numpy as np
import pytest
import torch

from hyperrec.models.ranker import CrossLayer, Ranker, RankerConfig, listwise_softmax_loss

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "config",
    [
        RankerConfig(arch="mlp", hidden=[8, 4]),
        RankerConfig(arch="dcn", structure="parallel", hidden=[8], n_cross_layers=2),
        RankerConfig(arch="dcn", structure="stacked", hidden=[8], n_cross_layers=3),
        RankerConfig(arch="dcn", hidden=[], n_cross_layers=1),
    ],
)
def test_forward_gives_one_score_per_row(config):
    ranker = Ranker(5, config).eval()
    assert ranker(torch.randn(7, 5)).shape == (7,)
    assert ranker(torch.randn(1, 5)).shape == (1,)
    assert ranker.predict(np.random.default_rng(0).normal(size=(3, 5))).shape == (3,)


def test_cross_layer_matches_a_hand_computation():
    layer = CrossLayer(2)
    with torch.no_grad():
        layer.linear.weight.copy_(torch.tensor([[1.0, 2.0], [0.0, -1.0]]))
        layer.linear.bias.copy_(torch.tensor([0.5, 1.0]))
    x0 = torch.tensor([[2.0, 3.0]])
    x = torch.tensor([[1.0, -1.0]])
    # W x + b = [1 - 2 + 0.5, 0 + 1 + 1] = [-0.5, 2]; x0 * that + x = [-1 + 1, 6 - 1]
    assert layer(x0, x).tolist() == [[0.0, 5.0]]


def test_listwise_loss_is_the_softmax_cross_entropy_of_the_positives():
    scores = torch.tensor([1.0, 2.0, 0.0, 3.0, 1.0])
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    segment = torch.tensor([0, 0, 0, 1, 1])
    loss = listwise_softmax_loss(scores, labels, torch.ones(5), segment, 2)
    lse0, lse1 = torch.logsumexp(scores[:3], 0), torch.logsumexp(scores[3:], 0)
    expected = (((lse0 - 1.0) + (lse0 - 2.0)) / 2 + (lse1 - 1.0)) / 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def rule_data(n_lists=150, per_list=20, seed=0):
    """Label = feature0 > feature1; feature 2 is noise on a different scale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_lists * per_list, 3)) * np.array([1.0, 1.0, 50.0]) + np.array([0.0, 0.0, 10.0])
    y = (x[:, 0] > x[:, 1]).astype(np.float32)
    return x.astype(np.float32), y, np.repeat(np.arange(n_lists), per_list)


@pytest.mark.parametrize("loss", ["bce", "softmax"])
def test_ranker_learns_a_simple_rule(loss):
    x, y, groups = rule_data()
    config = RankerConfig(arch="dcn", hidden=[16], n_cross_layers=1, loss=loss, epochs=15, lr=0.01, batch_size=16, dropout=0.0)
    ranker = Ranker(3, config).fit(x, y, groups)
    x_test, y_test, groups_test = rule_data(seed=1)
    scores = ranker.predict(x_test)
    if loss == "bce":
        assert ((scores > 0) == (y_test > 0)).mean() > 0.95
    # within each list, positives rank above negatives (pairwise accuracy)
    correct = total = 0
    for g in np.unique(groups_test):
        s, t = scores[groups_test == g], y_test[groups_test == g]
        pairs = s[t > 0][:, None] > s[t == 0][None, :]
        correct, total = correct + pairs.sum(), total + pairs.size
    assert correct / total > 0.95


def test_standardisation_stats_are_stored_buffers():
    x, y, groups = rule_data(n_lists=10)
    ranker = Ranker(3, RankerConfig(epochs=1, hidden=[4])).fit(x, y, groups)
    np.testing.assert_allclose(ranker.mean.numpy(), x.mean(axis=0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ranker.std.numpy(), x.std(axis=0), rtol=1e-4)
    state = ranker.state_dict()
    assert "mean" in state and "std" in state
    clone = Ranker(3, RankerConfig(epochs=1, hidden=[4]))
    clone.load_state_dict(state)
    np.testing.assert_allclose(clone.predict(x), ranker.predict(x), rtol=1e-6)
    constant = Ranker(2, RankerConfig()).eval()
    constant.set_standardization(np.ones((5, 2)))
    assert constant.std.tolist() == [1.0, 1.0]  # a constant feature is not divided by zero


def test_quantile_inputs_follow_the_training_distribution():
    x = np.random.default_rng(0).exponential(size=(1000, 2)).astype(np.float32)
    x[:, 1] = (x[:, 1] > 1).astype(np.float32)  # a binary feature: knots coincide
    ranker = Ranker(2, RankerConfig(quantile_knots=20))
    ranker.set_standardization(x)
    knots = np.quantile(x.astype(np.float64), np.linspace(0, 1, 21), axis=0)
    np.testing.assert_allclose(ranker.knots.numpy(), knots, rtol=1e-5)
    q = ranker.quantiles(torch.as_tensor(x)).numpy()
    np.testing.assert_allclose(q[:, 0], np.interp(x[:, 0], knots[:, 0], np.linspace(0, 1, 21)), atol=1e-4)
    # binary: 0 for zeros; for ones, the share of segments that start below 1 (a step)
    np.testing.assert_allclose(q[x[:, 1] == 0, 1], 0.0)
    np.testing.assert_allclose(q[x[:, 1] == 1, 1], (knots[:-1, 1] < 1).mean(), atol=1e-6)
    assert Ranker(2, RankerConfig(quantile_knots=0))(torch.as_tensor(x)).shape == (1000,)


def test_fit_is_deterministic_with_a_seed():
    x, y, groups = rule_data(n_lists=20)
    config = RankerConfig(epochs=2, hidden=[8], seed=3)
    a = Ranker(3, config).fit(x, y, groups).predict(x)
    b = Ranker(3, config).fit(x, y, groups).predict(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("arch", ["dcn", "mlp"])
def test_onnx_export_with_a_dynamic_batch_matches_onnxruntime(tmp_path, arch):
    ort = pytest.importorskip("onnxruntime")
    x, y, groups = rule_data(n_lists=10)
    ranker = Ranker(3, RankerConfig(arch=arch, epochs=1, hidden=[8, 4], n_cross_layers=2)).fit(x, y, groups).eval()
    path = tmp_path / "ranker.onnx"
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    torch.onnx.export(
        ranker,
        (torch.as_tensor(x[:5]),),
        str(path),
        dynamo=True,
        input_names=["features"],
        output_names=["scores"],
        dynamic_shapes=({0: batch},),
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for n in (1, 7, 64):
        feats = x[:n]
        onnx_scores = session.run(None, {"features": feats})[0]
        np.testing.assert_allclose(onnx_scores, ranker.predict(feats), atol=1e-4)


def test_a_ranker_reads_only_its_columns_and_exports_them_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    x, y, groups = rule_data(n_lists=30)
    wide = np.column_stack([x[:, :1], np.random.default_rng(1).normal(size=len(x)), x[:, 1:]]).astype(np.float32)  # column 1 unread
    config = RankerConfig(epochs=3, hidden=[8], seed=2)
    reading = Ranker(4, config, reads=[0, 2, 3]).fit(wide, y, groups)
    narrow = Ranker(3, config).fit(x, y, groups)
    np.testing.assert_allclose(reading.predict(wide), narrow.predict(x), rtol=1e-5, atol=1e-6)  # the same network, the same training
    moved = wide.copy()
    moved[:, 1] *= 100.0
    np.testing.assert_array_equal(reading.predict(moved), reading.predict(wide))
    moved[:, 0] += 1.0
    assert not np.allclose(reading.predict(moved), reading.predict(wide))
    path = tmp_path / "ranker.onnx"
    batch = torch.export.Dim("batch", min=1, max=1_000_000)
    torch.onnx.export(
        reading.eval(), (torch.as_tensor(wide[:5]),), str(path), dynamo=True, input_names=["features"], dynamic_shapes=({0: batch},)
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"features": wide[:64]})[0], reading.predict(wide[:64]), atol=1e-4)


@pytest.mark.parametrize("reads", [[], [0, 4], [-1]])
def test_a_ranker_rejects_columns_it_does_not_have(reads):
    with pytest.raises(ValueError, match="reads"):
        Ranker(4, RankerConfig(), reads=reads)
