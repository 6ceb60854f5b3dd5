"""The serial steps measure what they say: every request of the miss step runs the encoder, none of the hit step's."""

from __future__ import annotations

import asyncio

from hyperrec.bench.loadgen import recommend_bodies
from hyperrec.bench.run import SERIAL_REQUESTS, serial_steps
from hyperrec.registry import Registry
from hyperrec.serve.config import ServeConfig


def test_the_hit_step_is_all_cache_hits_and_the_miss_step_all_misses(exported):
    config = ServeConfig(registry=exported.path.parent, version=exported.version, event_log=None, audit={"enabled": False})
    users = list(Registry(config.registry).bundle(exported.version).user_baskets())
    bodies = recommend_bodies(users, 2 * SERIAL_REQUESTS, seed=1)  # as `hyperrec bench` draws them: shoppers repeat
    assert len({b["user_id"] for b in bodies}) < len(bodies)
    miss, hit = asyncio.run(serial_steps(config, bodies))
    assert miss.sent == hit.sent > 0 and miss.errors == hit.errors == 0
    assert "encoder" in miss.stages and "encoder" not in hit.stages  # a stage's timer is only in answers that ran it
