"""`OnlineStore` in Redis: shared by every serving replica and surviving their restarts.

Keys, per subject (`{s}` is `user:{user id}` or `session:{session id}`; every key is prefixed with
the store's namespace and the kind comes before the id, so no id, whatever it contains, can make
one subject's key equal another's):

    {ns}:{s}            hash  `seen` (every subject the store knows, impressions alone included),
                              `shown:{item}` -> times the item was shown since the last engagement,
                              `consent:{purpose}` -> `{time}:{1 granted | 0 withdrawn}` (the latest)
    {ns}:orders:{s}     zset  basket field -> the order's time (its first line, microseconds);
                              fields `o:{order id}` (live) and `s:{position}` (seeded, at -inf)
    {ns}:lines:{s}      hash  basket field -> its items, packed little-endian int64, first-seen order
    {ns}:events:{s}     zset  (time, kind, item) packed big-endian, 17 bytes -> time: the recent
                              item events (ties ordered by kind, then item)
    {ns}:cart:{s}       hash  item -> quantity
    {ns}:queries:{s}    zset  query -> its last time
    {ns}:sessions:{s}   set   (users) the sessions events named together with the user
    {ns}:out_of_stock   set   items whose last stock was <= 0
    {ns}:prices         hash  item -> price

Every action is one Lua script (`APPLY`, `IDENTIFY`, `SEED_USER`, `SHOWN`) over all the keys it touches,
so two replicas writing the same subject cannot lose an update; a batch of actions is one
pipelined round trip, and `states()` reads a whole batch in one MULTI/EXEC pipeline. Timeouts and
pool size come with the URL, e.g. `redis://host:6379/0?socket_timeout=0.05`.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import redis

from hyperrec.bundle.user_state import ConsentRecord, Recent, UserState
from hyperrec.data.behaviours import BEHAVIOURS
from hyperrec.serve.online_store import Action, OnlineStore, StateCaps, Subject, order_field, seed_field
from hyperrec.serve.privacy import ConsentConfig

ITEM = np.dtype("<i8")  # how an item is stored inside a basket
EVENT = np.dtype([("time", ">i8"), ("kind", "u1"), ("item", ">i8")])  # an events member: byte order = time order
KEYS_PER_SUBJECT = 6  # hash, orders, lines, events, cart, queries

# Helpers shared by the scripts. ARGV[1..5] = the caps (events, cart, queries, baskets), then the personalization
# default (1 or 0) for a subject with no consent record: `consent_args` in RedisStore.
LIB = """
local cap_events, cap_cart, cap_queries, cap_baskets = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local personal_by_default = ARGV[5] == '1'
local function consent_of(hash, purpose)
  local value = redis.call('HGET', hash, 'consent:' .. purpose)
  if not value then return nil, nil end
  local time, granted = string.match(value, '^(-?%d+):([01])$')
  return tonumber(time), granted == '1'
end
local function set_consent(hash, purpose, time, granted)
  local old_time, old_granted = consent_of(hash, purpose)
  if old_time == nil or time > old_time or (time == old_time and old_granted and not granted) then
    redis.call('HSET', hash, 'consent:' .. purpose, string.format('%d:%d', time, granted and 1 or 0))
  end
end
local function personal(hash)
  local time, granted = consent_of(hash, 'personalization')
  if time == nil then return personal_by_default end
  return granted
end
local function forget_behaviour(hash, orders, lines, events, cart, queries)
  redis.call('DEL', orders, lines, events, cart, queries)
  for _, f in ipairs(redis.call('HKEYS', hash)) do
    if string.sub(f, 1, 6) == 'shown:' then redis.call('HDEL', hash, f) end
  end
end
local function trim(key, cap)
  local over = redis.call('ZCARD', key) - cap
  if over > 0 then return redis.call('ZPOPMIN', key, over) end
  return {}
end
local function add_to_basket(orders, lines, field, time, packed)
  local basket = redis.call('HGET', lines, field)
  if basket then
    local out, seen = {basket}, {}
    for i = 1, #basket, 8 do seen[string.sub(basket, i, i + 7)] = true end
    for i = 1, #packed, 8 do
      local item = string.sub(packed, i, i + 7)
      if not seen[item] then
        seen[item] = true
        out[#out + 1] = item
      end
    end
    packed = table.concat(out)
  end
  redis.call('HSET', lines, field, packed)
  redis.call('ZADD', orders, 'LT', time, field)
  local popped = trim(orders, cap_baskets)
  for i = 1, #popped, 2 do redis.call('HDEL', lines, popped[i]) end
end
local function add_to_cart(cart, item, quantity)
  if redis.call('HEXISTS', cart, item) == 1 or redis.call('HLEN', cart) < cap_cart then
    redis.call('HINCRBY', cart, item, quantity)
  end
end
"""

# KEYS: 6 per subject (user then session, or one of them). ARGV: caps and default, kind, time, item, event
# member, quantity, basket field, packed item, query, purpose, granted.
APPLY = (
    LIB
    + """
local kind, time, item, member, quantity, field, packed, query = ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13]
local purpose, granted = ARGV[14], ARGV[15] == '1'
local engagement = kind == 'click' or kind == 'add_to_cart' or kind == 'purchase'
for s = 0, #KEYS / 6 - 1 do
  local hash, orders, lines, events, cart, queries = KEYS[6*s+1], KEYS[6*s+2], KEYS[6*s+3], KEYS[6*s+4], KEYS[6*s+5], KEYS[6*s+6]
  local allowed = personal(hash)  -- without personalization, no behaviour is stored
  if kind == 'consent' then
    set_consent(hash, purpose, tonumber(time), granted)
    if not personal(hash) then forget_behaviour(hash, orders, lines, events, cart, queries) end
  elseif allowed and kind == 'search' then
    redis.call('HSET', hash, 'seen', 1)
    redis.call('ZADD', queries, 'GT', time, query)
    trim(queries, cap_queries)
  elseif allowed then
    redis.call('HSET', hash, 'seen', 1)
    redis.call('ZADD', events, time, member)
    trim(events, cap_events)
    if engagement then redis.call('HDEL', hash, 'shown:' .. item) end
    if kind == 'add_to_cart' then
      add_to_cart(cart, item, quantity)
    elseif kind == 'remove_from_cart' then
      local left = tonumber(redis.call('HGET', cart, item) or '0') - tonumber(quantity)
      if left > 0 then redis.call('HSET', cart, item, left) else redis.call('HDEL', cart, item) end
    elseif kind == 'purchase' then
      redis.call('HDEL', cart, item)
      add_to_basket(orders, lines, field, time, packed)
    end
  end
end
"""
)

# KEYS: the user's 6, then the session's 6. ARGV: caps and default. The session's consent joins the user's,
# then, if the user allows personalization, its state (a union).
IDENTIFY = (
    LIB
    + """
local hash, orders, lines, events, cart, queries = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local session_hash = redis.call('HGETALL', KEYS[7])
for i = 1, #session_hash, 2 do
  local f = session_hash[i]
  if string.sub(f, 1, 8) == 'consent:' then
    local time, granted = string.match(session_hash[i + 1], '^(-?%d+):([01])$')
    set_consent(hash, string.sub(f, 9), tonumber(time), granted == '1')
  end
end
if not personal(hash) then
  forget_behaviour(hash, orders, lines, events, cart, queries)
  return
end
redis.call('HSET', hash, 'seen', 1)
redis.call('ZUNIONSTORE', events, 2, events, KEYS[10], 'AGGREGATE', 'MIN')
trim(events, cap_events)
redis.call('ZUNIONSTORE', queries, 2, queries, KEYS[12], 'AGGREGATE', 'MAX')
trim(queries, cap_queries)
local session_cart = redis.call('HGETALL', KEYS[11])
for i = 1, #session_cart, 2 do
  local item, quantity = session_cart[i], tonumber(session_cart[i + 1])
  if redis.call('HEXISTS', cart, item) == 1 or redis.call('HLEN', cart) < cap_cart then
    redis.call('HSET', cart, item, math.max(quantity, tonumber(redis.call('HGET', cart, item) or '0')))
  end
end
for i = 1, #session_hash, 2 do
  local f = session_hash[i]
  if string.sub(f, 1, 6) == 'shown:' then
    redis.call('HSET', hash, f, math.max(tonumber(session_hash[i + 1]), tonumber(redis.call('HGET', hash, f) or '0')))
  end
end
local session_orders = redis.call('ZRANGE', KEYS[8], 0, -1, 'WITHSCORES')
for i = 1, #session_orders, 2 do
  local field = session_orders[i]
  add_to_basket(orders, lines, field, session_orders[i + 1], redis.call('HGET', KEYS[9], field))
end
"""
)

# KEYS: the user's hash, orders, lines. ARGV: caps and default, then the baskets (packed). Returns 1 if seeded.
SEED_USER = (
    LIB
    + """
if redis.call('ZCARD', KEYS[2]) > 0 or not personal(KEYS[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'seen', 1)
for i = 6, #ARGV, 2 do
  redis.call('ZADD', KEYS[2], '-inf', ARGV[i])
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
end
return 1
"""
)

# KEYS: the subject's hash. ARGV: caps and default, then item, times, item, times...
SHOWN = (
    LIB
    + """
if not personal(KEYS[1]) then return end
redis.call('HSET', KEYS[1], 'seen', 1)
for i = 6, #ARGV, 2 do redis.call('HINCRBY', KEYS[1], 'shown:' .. ARGV[i], ARGV[i + 1]) end
"""
)

SEED_BATCH = 500  # users per pipeline: bounds the client's buffered commands and replies


class RedisStore(OnlineStore):
    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "hyperrec",
        caps: StateCaps | None = None,
        consent: ConsentConfig | None = None,
    ) -> None:
        self.caps = caps or StateCaps()
        self.consent = consent or ConsentConfig()
        self._redis = redis.Redis.from_url(url)
        self._ns = namespace
        self._caps = [self.caps.events, self.caps.cart, self.caps.queries, self.caps.baskets, int(self.consent.personalization)]
        self._apply = self._redis.register_script(APPLY)
        self._identify = self._redis.register_script(IDENTIFY)
        self._seed_user = self._redis.register_script(SEED_USER)
        self._shown = self._redis.register_script(SHOWN)

    def _keys(self, subject: Subject) -> list[str]:
        s = f"{subject[0]}:{subject[1]}"
        return [f"{self._ns}:{s}", *(f"{self._ns}:{kind}:{s}" for kind in ("orders", "lines", "events", "cart", "queries"))]

    def states(self, subjects: list[Subject]) -> list[UserState | None]:
        pipe = self._redis.pipeline(transaction=True)  # one snapshot of the batch, one round trip
        for subject in subjects:
            hash_, orders, lines, events, cart, queries = self._keys(subject)
            pipe.hgetall(hash_).zrange(orders, 0, -1).hgetall(lines).zrange(events, 0, -1).hgetall(cart).zrange(queries, 0, -1)
        replies = pipe.execute()
        return [_user_state(*replies[i : i + KEYS_PER_SUBJECT]) for i in range(0, len(replies), KEYS_PER_SUBJECT)]

    def apply(self, actions: list[Action]) -> None:
        if not actions:
            return
        pipe = self._redis.pipeline(transaction=False)  # each script is atomic; the batch is one round trip
        for action in actions:
            if action.user_id and action.session_id:
                pipe.sadd(self._sessions_key(action.user_id), action.session_id)
            keys = [key for subject in action.subjects() for key in self._keys(subject)]
            if action.kind == "identify":
                self._identify(keys=keys + self._keys(("session", action.session_id)), args=self._caps, client=pipe)
                continue
            event = _event_member(action) if action.kind in BEHAVIOURS else b""
            field = order_field(action.order_id) if action.order_id is not None else ""
            args = [*self._caps, action.kind, action.time_us, action.item, event, action.quantity, field, _pack([action.item])]
            self._apply(keys=keys, args=[*args, action.query, action.purpose, int(action.granted)], client=pipe)
        pipe.execute()

    def add_shown(self, subject: Subject, items: list[int]) -> None:
        counts = [x for item, times in Counter(int(i) for i in items).items() for x in (item, times)]
        self._shown(keys=self._keys(subject)[:1], args=[*self._caps, *counts])

    def _sessions_key(self, user_id: str) -> str:
        return f"{self._ns}:sessions:user:{user_id}"

    def linked_sessions(self, user_id: str) -> set[str]:
        return {s.decode() for s in self._redis.smembers(self._sessions_key(user_id))}

    def erase(self, subjects: list[Subject]) -> int:
        pipe = self._redis.pipeline(transaction=True)
        for subject in subjects:
            pipe.exists(self._keys(subject)[0])
        for subject in subjects:
            pipe.delete(*self._keys(subject), *([self._sessions_key(subject[1])] if subject[0] == "user" else []))
        return sum(pipe.execute()[: len(subjects)])

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
                kept = user_baskets[-self.caps.baskets :]
                fields = [x for i, b in enumerate(kept) for x in (seed_field(i), _pack(b))]
                self._seed_user(keys=self._keys(("user", user))[:3], args=[*self._caps, *fields], client=pipe)
            added += sum(pipe.execute())
        return added

    def holds_start(self) -> bool:
        return bool(self._redis.exists(f"{self._ns}:started"))

    def mark_started(self) -> None:
        self._redis.set(f"{self._ns}:started", "1")

    def close(self) -> None:
        self._redis.close()


def _pack(items: list[int] | np.ndarray) -> bytes:
    return np.asarray(items, np.int64).astype(ITEM, copy=False).tobytes()


def _event_member(action: Action) -> bytes:
    return np.array([(action.time_us, BEHAVIOURS.index(action.kind), action.item)], EVENT).tobytes()


def _user_state(
    fields: dict[bytes, bytes],
    orders: list[bytes],
    lines: dict[bytes, bytes],
    events: list[bytes],
    cart: dict[bytes, bytes],
    queries: list[bytes],
) -> UserState | None:
    if not fields:
        return None
    shown = {int(k[len(b"shown:") :]): int(v) for k, v in fields.items() if k.startswith(b"shown:")}
    consent = {k[len(b"consent:") :].decode(): _consent_record(v) for k, v in fields.items() if k.startswith(b"consent:")}
    recent = np.frombuffer(b"".join(events), EVENT)
    return UserState(
        _unpack([lines[f] for f in orders]),
        shown,
        Recent(recent["item"].astype(np.int64), recent["kind"].astype(np.int64), recent["time"].astype(np.int64)),
        {int(k): int(v) for k, v in cart.items()},
        [q.decode() for q in queries],
        consent,
    )


def _consent_record(value: bytes) -> ConsentRecord:
    time, granted = value.split(b":")
    return int(time), granted == b"1"


def _unpack(baskets: list[bytes]) -> list[np.ndarray]:
    """Slices of one int64 copy of all the baskets: 2x faster than one array per basket."""
    flat = np.frombuffer(b"".join(baskets), ITEM).astype(np.int64)
    out, start = [], 0
    for packed in baskets:
        out.append(flat[start : start + len(packed) // ITEM.itemsize])
        start += len(packed) // ITEM.itemsize
    return out
