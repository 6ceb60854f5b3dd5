"""The bench's verdicts, degraded share and per-stage summary, and the shape of the synthetic shoppers' histories."""

import asyncio

import numpy as np

from hyperrec.bench.bundles import HistoryProfile, encoder_config, shopper_histories
from hyperrec.bench.loadgen import Reply, open_loop, reply_of, serial, verdict
from hyperrec.config import SyntheticConfig
from hyperrec.data.synthetic import SyntheticShop


def test_a_step_with_degraded_answers_fails_whatever_its_percentiles():
    assert verdict("http", 200, 0, 0.0, 3.0, 20.0) == "pass"
    assert verdict("http", 200, 0, 0.002, 3.0, 20.0) == "FAIL: 0.2% degraded"
    assert verdict("http", 200, 0, 0.001, 3.0, 20.0) == "pass"  # at most 0.1%
    assert verdict("http", 200, 2, 0.0, 3.0, 30.0) == "FAIL: 2 errors, p99 > 25 ms"
    assert verdict("http", 400, 0, 0.0, 3.0, 40.0) == "pass"
    assert verdict("in-process", 100, 0, 0.0, 3.0, 400.0) == "-"  # no latency target at this rate
    assert verdict("in-process serial miss", 0, 0, 0.0, 3.5, 9.0) == "FAIL: p50 > 3 ms"
    assert verdict("in-process serial hit", 0, 0, 0.0, 0.8, 9.0) == "pass"


def test_only_known_shoppers_off_the_ranker_count_as_degraded():
    assert not reply_of({"user_id": "u1"}, "ranker", [], {}).degraded
    assert reply_of({"user_id": "u1"}, "popularity", [], {}).degraded
    assert reply_of({"user_id": "u1"}, "last_good", ["ranking v2: over its 100 ms budget"], {}).degraded
    assert not reply_of({"user_id": "new-7"}, "popularity", [], {}).degraded  # unknown shoppers get popular items by design


def test_steps_count_degraded_answers_and_summarize_the_server_timers():
    async def send(i: int) -> Reply:
        return Reply(i % 4 == 0, {"encoder": float(i), "policy": 1.0})

    step = asyncio.run(open_loop(send, rate=400, seconds=0.1, target="in-process"))
    assert step.sent == 40 and step.errors == 0 and step.degraded_pct == 25.0
    assert step.verdict == "FAIL: 25.0% degraded"
    assert step.stages["encoder"] == (np.percentile(np.arange(40.0), 50), np.percentile(np.arange(40.0), 99))
    assert step.stage_row()["policy"] == "1.00 / 1.00"
    one_at_a_time = asyncio.run(serial(send, 8, "in-process serial hit"))
    assert one_at_a_time.sent == 8 and one_at_a_time.rate == 0 and one_at_a_time.degraded_pct == 25.0


def test_synthetic_shoppers_follow_the_profile_and_the_encoder_the_committed_config():
    shop = SyntheticShop(SyntheticConfig(n_items=500, n_users=10, seed=0))
    profile = HistoryProfile(orders_per_user=30, items_per_order=10)
    history = shopper_histories(shop, 400, profile, np.random.default_rng(0))
    orders = [len(b) for b in history.baskets]
    sizes = [len(basket) for baskets in history.baskets for basket in baskets]
    assert history.n_users == 400 and 27 < np.mean(orders) < 33 and min(orders) >= 2
    assert 8 < np.mean(sizes) < 10.5  # ~10 drawn, a repeat drawn twice in one order is kept once
    assert all(len(np.unique(basket)) == len(basket) for baskets in history.baskets for basket in baskets)
    assert all(np.all(np.diff(t) > 0) for t in history.times)
    assert encoder_config().max_len == 200  # configs/train/sasrec_repeat_instacart.yaml
