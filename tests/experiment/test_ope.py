"""Off-policy estimators on a small simulated contextual bandit whose true policy values are known:
over repeated logs each estimator is unbiased within 3 standard errors of its mean, and doubly robust
(with a misspecified linear reward model: the true reward is logistic) is not worse than IPS in RMSE."""

import numpy as np

from hyperrec.experiment import ope

N_ACTIONS, N_FEATURES, LOGS, LOG_SIZE = 5, 4, 300, 2000
RNG = np.random.default_rng(7)
W_REWARD = RNG.normal(size=(N_FEATURES, N_ACTIONS))
W_LOGGING = RNG.normal(size=(N_FEATURES, N_ACTIONS))
W_TARGET = W_REWARD + 0.5 * RNG.normal(size=(N_FEATURES, N_ACTIONS))  # a decent policy, not the best


def true_reward(x):
    return 1 / (1 + np.exp(-(x @ W_REWARD - 1.0)))


def logging_policy(x):
    scores = 0.5 * x @ W_LOGGING  # a soft logging policy: every action keeps some probability
    p = np.exp(scores - scores.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def target_policy(x, epsilon=0.1):
    greedy = np.eye(N_ACTIONS)[np.argmax(x @ W_TARGET, 1)]
    return (1 - epsilon) * greedy + epsilon / N_ACTIONS


def simulate_log(rng):
    x = rng.normal(size=(LOG_SIZE, N_FEATURES))
    probs = logging_policy(x)
    actions = (probs.cumsum(1) > rng.random((LOG_SIZE, 1))).argmax(1)
    reward = (rng.random(LOG_SIZE) < true_reward(x)[np.arange(LOG_SIZE), actions]).astype(float)
    return x, actions, probs[np.arange(LOG_SIZE), actions], reward


def test_ips_snips_dr_recover_the_true_value():
    rng = np.random.default_rng(8)
    fresh = rng.normal(size=(400_000, N_FEATURES))
    truth = float((target_policy(fresh) * true_reward(fresh)).sum(1).mean())  # exact in expectation over contexts
    estimates = {"ips": [], "snips": [], "dr": []}
    for _ in range(LOGS):
        x, actions, propensity, reward = simulate_log(rng)
        target = target_policy(x)
        predicted = ope.RidgeRewardModel.fit(x, actions, reward, N_ACTIONS).predict(x)
        estimates["ips"].append(ope.ips(target, actions, propensity, reward))
        estimates["snips"].append(ope.snips(target, actions, propensity, reward))
        estimates["dr"].append(ope.doubly_robust(target, actions, propensity, reward, predicted))
    errors = {name: np.array(values) - truth for name, values in estimates.items()}
    logging_value = float((logging_policy(fresh) * true_reward(fresh)).sum(1).mean())
    print(f"OPE over {LOGS} logs of {LOG_SIZE}: true value {truth:.4f} (logging policy {logging_value:.4f})")
    for name, error in errors.items():
        print(f"  {name}: bias {error.mean():+.4f} (se {error.std(ddof=1) / np.sqrt(LOGS):.4f}), RMSE {np.sqrt((error**2).mean()):.4f}")
        assert abs(error.mean()) <= 3 * error.std(ddof=1) / np.sqrt(LOGS) + 1e-3  # 1e-3: the truth's own Monte Carlo error
    rmse = {name: np.sqrt((error**2).mean()) for name, error in errors.items()}
    assert rmse["dr"] <= rmse["ips"]
    assert abs(truth - logging_value) > 3 * rmse["ips"]  # the target differs from the logging policy: the test can tell


def test_estimators_are_exact_on_policy():
    """When the target is the logging policy, IPS weights are one: IPS and SNIPS are the mean reward."""
    x, actions, propensity, reward = simulate_log(np.random.default_rng(9))
    target = logging_policy(x)
    assert ope.ips(target, actions, propensity, reward) == np.mean(reward)
    assert ope.snips(target, actions, propensity, reward) == np.mean(reward)
    perfect = true_reward(x)
    dr = ope.doubly_robust(target, actions, propensity, reward, perfect)
    assert abs(dr - np.mean((target * perfect).sum(1))) < 3 * np.std(reward - perfect[np.arange(len(x)), actions]) / np.sqrt(len(x))
