"""`OnlineStore` in Redis: shared by every serving replica and surviving their restarts.

Keys (every one prefixed with the store's namespace; the kind comes before the user id, so no
user id, whatever it contains, can make one user's key equal another's):

    {ns}:user:{user}     hash  `seen` (every user the store knows, impressions alone included),
                               `order` (the last order id; only users with a basket history),
                               `shown:{item}` -> times the item was shown since the last reset
    {ns}:baskets:{user}  list  baskets oldest first, each its items as packed little-endian int64
    {ns}:out_of_stock    set   items whose last stock was <= 0
    {ns}:prices          hash  item -> price

Writes that read before they write (a purchase appending to the latest basket, seeding only
new users) are Lua scripts, so two replicas writing the same user cannot lose an update.
Every call is one round trip: `users()` reads a whole batch in one MULTI/EXEC pipeline.
Timeouts and pool size come with the URL, e.g. `redis://host:6379/0?socket_timeout=0.05`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import redis

from hyperrec.bundle.user_state import MAX_BASKETS, UserState
from hyperrec.serve.online_store import OnlineStore, unique_in_order

ITEM = np.dtype("<i8")  # how an item is stored inside a basket

# KEYS: user hash, baskets list. ARGV: order id, the new items (packed, unique), MAX_BASKETS.
# Appending merges 8-byte item strings, so items stay unique and in first-seen order.
ADD_PURCHASE = """
if redis.call('HGET', KEYS[1], 'order') == ARGV[1] and redis.call('EXISTS', KEYS[2]) == 1 then
  local basket, seen = {}, {}
  for _, packed in ipairs({redis.call('LINDEX', KEYS[2], -1), ARGV[2]}) do
    for i = 1, #packed, 8 do
      local item = string.sub(packed, i, i + 7)
      if not seen[item] then
        seen[item] = true
        basket[#basket + 1] = item
      end
    end
  end
  redis.call('LSET', KEYS[2], -1, table.concat(basket))
else
  redis.call('RPUSH', KEYS[2], ARGV[2])
  redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
end
redis.call('HSET', KEYS[1], 'seen', 1, 'order', ARGV[1])
"""

# KEYS: user hash, baskets list. ARGV: seed order id, then the baskets (packed). Returns 1 if seeded.
SEED_USER = """
if redis.call('HEXISTS', KEYS[1], 'order') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'seen', 1, 'order', ARGV[1])
if #ARGV > 1 then
  redis.call('RPUSH', KEYS[2], unpack(ARGV, 2))
end
return 1
"""

SEED_BATCH = 500  # users per pipeline: bounds the client's buffered commands and replies


class RedisStore(OnlineStore):
    def __init__(self, url: str = "redis://127.0.0.1:6379/0", namespace: str = "hyperrec") -> None:
        self._redis = redis.Redis.from_url(url)
        self._ns = namespace
        self._add_purchase = self._redis.register_script(ADD_PURCHASE)
        self._seed_user = self._redis.register_script(SEED_USER)

    def _user(self, user_id: str) -> str:
        return f"{self._ns}:user:{user_id}"

    def _baskets(self, user_id: str) -> str:
        return f"{self._ns}:baskets:{user_id}"

    def users(self, user_ids: list[str]) -> list[UserState | None]:
        pipe = self._redis.pipeline(transaction=True)  # one snapshot of the batch, one round trip
        for user in user_ids:
            pipe.hgetall(self._user(user))
            pipe.lrange(self._baskets(user), 0, -1)
        replies = pipe.execute()
        return [_user_state(fields, baskets) for fields, baskets in zip(replies[::2], replies[1::2])]

    def add_purchase(self, user_id: str, order_id: str, items: list[int]) -> None:
        self._add_purchase(
            keys=[self._user(user_id), self._baskets(user_id)],
            args=[order_id, _pack(unique_in_order(items)), MAX_BASKETS],
        )

    def add_shown(self, user_id: str, items: list[int]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.hset(self._user(user_id), "seen", 1)
        for item, times in Counter(int(i) for i in items).items():
            pipe.hincrby(self._user(user_id), f"shown:{item}", times)
        pipe.execute()

    def reset_shown(self, user_id: str, items: list[int]) -> None:
        if items:
            self._redis.hdel(self._user(user_id), *(f"shown:{int(item)}" for item in items))

    def set_stock(self, item: int, stock: int) -> None:
        key = f"{self._ns}:out_of_stock"
        if stock <= 0:
            self._redis.sadd(key, int(item))
        else:
            self._redis.srem(key, int(item))

    def set_price(self, item: int, price: float) -> None:
        self._redis.hset(f"{self._ns}:prices", int(item), float(price))  # floats go as repr(): exact

    def out_of_stock(self) -> set[int]:
        return {int(item) for item in self._redis.smembers(f"{self._ns}:out_of_stock")}

    def prices(self) -> dict[int, float]:
        return {int(item): float(price) for item, price in self._redis.hgetall(f"{self._ns}:prices").items()}

    def seed(self, baskets: dict[str, list[np.ndarray]]) -> int:
        users = list(baskets.items())
        added = 0
        for start in range(0, len(users), SEED_BATCH):
            pipe = self._redis.pipeline(transaction=False)
            for user, user_baskets in users[start : start + SEED_BATCH]:
                self._seed_user(
                    keys=[self._user(user), self._baskets(user)],
                    args=[f"seed:{len(user_baskets)}", *(_pack(b) for b in user_baskets[-MAX_BASKETS:])],
                    client=pipe,
                )
            added += sum(pipe.execute())
        return added

    def close(self) -> None:
        self._redis.close()


def _pack(items: list[int] | np.ndarray) -> bytes:
    return np.asarray(items, np.int64).astype(ITEM, copy=False).tobytes()


def _user_state(fields: dict[bytes, bytes], baskets: list[bytes]) -> UserState | None:
    if not fields:
        return None
    shown = {int(k[len(b"shown:") :]): int(v) for k, v in fields.items() if k.startswith(b"shown:")}
    return UserState(_unpack(baskets), shown)


def _unpack(baskets: list[bytes]) -> list[np.ndarray]:
    """Slices of one int64 copy of all the baskets: 2x faster than one array per basket."""
    flat = np.frombuffer(b"".join(baskets), ITEM).astype(np.int64)
    out, start = [], 0
    for packed in baskets:
        out.append(flat[start : start + len(packed) // ITEM.itemsize])
        start += len(packed) // ITEM.itemsize
    return out
