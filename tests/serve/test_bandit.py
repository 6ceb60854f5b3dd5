"""The exploration slot as a contextual bandit: its logged probabilities are the ones it draws with, it learns a
linear reward from what arrives, and in the flow its decision is in the answer and rewarded by the shopper's events."""

import numpy as np
import pytest
from pydantic import ValidationError

from hyperrec.serve.bandit import SLOT_FEATURES, Explorer
from hyperrec.serve.config import ExploreConfig, PolicyConfig
from tests.serve.test_flow import NOW, ask, known_user, make_flow

D = len(SLOT_FEATURES)


def pools(rng: np.random.Generator, n: int, m: int) -> np.ndarray:
    x = rng.normal(size=(n, m, D))
    x[..., 0] = 1.0  # the bias feature
    return x


def test_the_logged_probabilities_are_the_draws_frequencies():
    explorer = Explorer(ExploreConfig(kind="bandit", epsilon=0.3, seed=1))
    x = pools(np.random.default_rng(0), 1, 6)[0]
    draws = [explorer.choose(x) for _ in range(6000)]
    p = draws[0].probabilities
    assert p.sum() == pytest.approx(1.0) and p.min() == pytest.approx(0.3 / 6) and p.max() == pytest.approx(0.7 + 0.05)
    counts = np.bincount([d.index for d in draws], minlength=6)
    se = np.sqrt(6000 * p * (1 - p))
    assert np.all(np.abs(counts - 6000 * p) < 4 * se), (counts, 6000 * p)
    uniform = Explorer(ExploreConfig(kind="random")).choose(x).probabilities
    assert np.allclose(uniform, 1 / 6)


def test_the_bandit_learns_a_linear_reward_and_beats_a_random_slot():
    rng = np.random.default_rng(3)
    truth = np.array([0.15, 0.1, 0.0, -0.08, 0.0, 0.0, 0.06, 0.0])
    explorer = Explorer(ExploreConfig(kind="bandit", epsilon=0.05, alpha=0.05, window_s=0.5, seed=2))
    x = pools(rng, 3000, 10)
    chance = np.clip(x @ truth, 0.0, 1.0)
    earned = []
    for t in range(len(x)):
        choice = explorer.choose(x[t])
        explorer.opened("shopper", "home", f"t{t}", t, x[t, choice.index], now=float(t))  # t - 1 closes: over its window
        if rng.random() < chance[t, choice.index]:
            explorer.rewarded(["shopper"], "click", t, 0.0)
        earned.append(chance[t, choice.index])
    late = np.mean(earned[-1000:])
    assert explorer.model.updates == len(x) - 1
    assert late > chance[-1000:].mean() + 0.5 * (chance[-1000:].max(1).mean() - chance[-1000:].mean()), late
    assert np.corrcoef(explorer.model.theta[1:], truth[1:])[0, 1] > 0.9


def test_rewards_count_only_for_the_slots_item_and_its_shopper_until_the_next_answer_on_the_page():
    explorer = Explorer(ExploreConfig(kind="bandit", reward={"click": 1.0, "purchase": 0.1}))
    x = np.ones(D)
    explorer.opened("u1", "home", "a", 7, x, now=0.0)
    explorer.rewarded(["u2"], "click", 7, 0.0)  # another shopper
    explorer.rewarded(["u1"], "click", 8, 0.0)  # another item
    explorer.rewarded(["u1"], "view", 7, 0.0)  # not rewarded
    explorer.rewarded(["u1"], "click", 7, 0.0)
    explorer.rewarded(["u1"], "purchase", 7, 20.0)
    explorer.opened("u1", "product", "b", 9, x, now=1.0)  # another page: "a" stays open
    assert explorer.model.updates == 0
    explorer.opened("u1", "home", "c", 9, x, now=2.0)
    assert explorer.model.updates == 1 and explorer.model.moment == pytest.approx(3.0 * x)  # 1 click + 0.1 x 20


def test_one_bandit_slot_only():
    with pytest.raises(ValidationError, match="explore_slots to 1"):
        PolicyConfig(explore_slots=2, explore={"kind": "bandit"})
    with pytest.raises(ValidationError, match="explore_slots to 1"):
        PolicyConfig(explore={"kind": "random"})


def test_the_flow_answers_with_the_slots_draw_and_learns_from_the_click(exported, tmp_path):
    flow = make_flow(exported, tmp_path, policy={"explore_slots": 1, "explore": {"kind": "bandit", "pool": 5, "window_s": 3600}})
    user = known_user(flow)
    answer = ask(flow, user, k=8)
    slot = answer.exploration
    assert slot is not None and slot.kind == "bandit" and slot.position == 7 and answer.items[7].item_id == slot.item_id
    assert len(slot.pool) == 5 and slot.feature_names == list(SLOT_FEATURES)
    assert sum(c.probability for c in slot.pool) == pytest.approx(1.0)
    assert slot.propensity == next(c.probability for c in slot.pool if c.item_id == slot.item_id)
    shown = {i.item_id for i in answer.items[:7]}
    assert not shown & {c.item_id for c in slot.pool}  # the pool is what the list does not hold yet
    bought = {flow.items[flow.current].table.item_ids[i] for b in flow.store.users([user])[0].baskets for i in b}
    assert not bought & {c.item_id for c in slot.pool}  # new to the shopper
    click = {"event_type": "click", "user_id": user, "session_id": "s1", "item_id": slot.item_id, "timestamp": NOW}
    assert flow.ingest([click]).accepted == 1
    ask(flow, user, k=8)  # the next home answer closes the first decision: one update, rewarded
    model = flow.explorer.model
    assert model.updates == 1 and model.moment == pytest.approx(
        np.array([c.features for c in slot.pool if c.item_id == slot.item_id][0]), abs=1e-5
    )
    plain = make_flow(exported, tmp_path / "plain")
    assert ask(plain, user, k=8).exploration is None
