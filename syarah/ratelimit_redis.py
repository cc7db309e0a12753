"""Per-user limits that hold across the nodes of a deployment.

A user whose sockets are all on one node is limited by that node's own buckets
(syarah.ratelimit), at no extra cost: no other node sees that user's events. Only a
user the node knows to be *spread* (sockets on another live node as well) pays one
Redis round trip per limited event: a Lua script spends a token of the user's shared
bucket and, in the same call, counts the user's sockets on the other live nodes, so
the node learns when the user is back on this node alone.

The counts of sockets per node are those presence keeps ({prefix}:node:{id}:sockets,
live nodes in {prefix}:nodes): a node killed without a word stops counting once its
heartbeat is older than presence_ttl, as it stops counting for presence.

The cap on sockets without a token per address counts them the same way, under keys
this module keeps beside presence's: {prefix}:node:{id}:addresses (address -> that
node's tokenless sockets from it), expiring unless the node renews them, and
rewritten whole when Redis comes back.

The socket cap per user is checked and counted in one step: the connect's script
adds the socket to this node's count as it counts the other nodes' (or refuses it),
so connects of one user on two nodes at the same moment cannot both pass it; the
count is presence's from there (RedisPresence.claimed).

How a node learns that a user spread: the connect that finds the user's sockets on
another node marks the user here and tells every node on the presence bus (after this
node's count is in Redis, so the others' next check sees it).

While Redis is unreachable each node applies its own buckets and caps again, says so
once in its log, and asks Redis nothing until the link is back.
"""

from __future__ import annotations

import asyncio
import logging
import time

from syarah.redis_link import REDIS_TROUBLE, RedisLink, text

log = logging.getLogger("syarah.limits")

# KEYS[1] the user's shared bucket (ignored when ARGV[1] is 0), KEYS[2] the live nodes,
# KEYS[3] this node's per-node hash, KEYS[4...] those of the other nodes this node
# knows to be live, whose ids are ARGV[9...]. ARGV: capacity, refill per second, this
# node, oldest live heartbeat, the field (user or address), the socket cap (0: no
# claim), the user's sockets this node holds, seconds the node's hash lives.
# Returns {1 taken / 0 empty / 2 over the cap, seconds to wait (text), the field's
# count on the other live nodes}. With a cap, a taken answer has counted the new
# socket in this node's hash in the same step, so two nodes' connects of one user
# cannot both see the other's count without their own. When a live node is missing
# from KEYS: {-1, '0', 0, the live nodes...}, nothing spent or counted, to be asked
# again with them. Every key the script reads is in KEYS, as a Redis Cluster
# requires (they share the deployment's hash tag there). The bucket runs on Redis's
# clock, so the nodes' clocks need not agree.
TAKE = """
local live = redis.call('ZRANGEBYSCORE', KEYS[2], ARGV[4], '+inf')
local known = {}
for i = 9, #ARGV do known[ARGV[i]] = KEYS[i - 5] end
for _, node in ipairs(live) do
  if node ~= ARGV[3] and not known[node] then
    return {-1, '0', 0, unpack(live)}
  end
end
local ok, wait = 1, '0'
local capacity, refill = tonumber(ARGV[1]), tonumber(ARGV[2])
if capacity > 0 then
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local held = redis.call('HMGET', KEYS[1], 'tokens', 'at')
  local tokens = capacity
  if held[1] then
    tokens = math.min(capacity, tonumber(held[1]) + (now - tonumber(held[2])) * refill)
  end
  if tokens >= 1 then
    tokens = tokens - 1
  else
    ok, wait = 0, tostring((1 - tokens) / refill)
  end
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
  -- A bucket that would be full again carries nothing: it goes when it would be.
  redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / refill * 1000) + 1000)
end
local elsewhere = 0
for _, node in ipairs(live) do
  if node ~= ARGV[3] then
    local n = redis.call('HGET', known[node], ARGV[5])
    if n then elsewhere = elsewhere + tonumber(n) end
  end
end
local cap = tonumber(ARGV[6])
if ok == 1 and cap > 0 then
  local here = math.max(tonumber(ARGV[7]), tonumber(redis.call('HGET', KEYS[3], ARGV[5]) or 0))
  if here + elsewhere >= cap then
    return {2, '0', elsewhere}
  end
  redis.call('HINCRBY', KEYS[3], ARGV[5], 1)
  redis.call('EXPIRE', KEYS[3], ARGV[8])
end
return {ok, wait, elsewhere}
"""



class SharedLimits:
    """What Limits asks of Redis, and which users this node knows to be spread."""

    def __init__(self, redis, prefix: str, node_id: str, ttl: float,
                 link: RedisLink, holds=lambda user_id: False, addresses=None,
                 clock=time.time, presence=None):
        self.redis = redis
        self.prefix = prefix
        self.node_id = node_id
        self.ttl = ttl
        self.link = link
        # Whether this node holds a socket of the user (the registry's count), and
        # this node's tokenless sockets per address (the registry's own dict).
        self.holds = holds
        self.addresses = {} if addresses is None else addresses
        # Redis holds this node's address counts as they are (else: rewrite them).
        self._synced = False
        self._dirty = False
        self._task = None
        self.clock = clock
        # The RedisPresence whose per-node socket counts the connect's claim adds to.
        self.presence = presence
        self.spread: set[str] = set()
        # Set by the server: async (user id) telling the other nodes a user spread.
        self.announce = None
        self._script = redis.register_script(TAKE)
        # The other nodes live at the last call (the script says when it changed).
        self._nodes: list[str] = []
        self._local_only = False
        # Round trips made, for the measurements and the tests.
        self.calls = 0

    def _bucket(self, action: str, user_id: str) -> str:
        return f"{self.prefix}:rate:{action}:{user_id}"

    def _addresses_key(self) -> str:
        return f"{self.prefix}:node:{self.node_id}:addresses"

    def _lost(self, exc) -> None:
        self._synced = False
        self.link.lost(exc)
        if not self._local_only:
            self._local_only = True
            log.warning("Redis is unreachable (%s): per-user rate limits and socket "
                        "caps are this node's own until it is back", exc)

    async def _run(self, field: str, bucket_key: str, capacity: float, refill: float,
                   kind: str = ":sockets", cap: int = 0, here: int = 0):
        """The script's answer, or None when Redis cannot be asked (local limits)."""
        if not self.link.up:
            return None
        try:
            # Asked again at most once per node that appeared since the last call.
            for _ in range(3):
                self.calls += 1
                nodes = self._nodes
                answer = await self._script(
                    keys=[bucket_key or f"{self.prefix}:rate:none", f"{self.prefix}:nodes",
                          f"{self.prefix}:node:{self.node_id}{kind}",
                          *(f"{self.prefix}:node:{n}{kind}" for n in nodes)],
                    args=[capacity, refill, self.node_id, self.clock() - self.ttl, field,
                          cap, here, int(self.ttl * 2), *nodes])
                if int(answer[0]) >= 0:
                    break
                self._nodes = [n for n in map(text, answer[3:]) if n != self.node_id]
            else:
                return None     # nodes coming and going faster than asked: local only
            ok, wait, elsewhere = answer[:3]
        except REDIS_TROUBLE as exc:
            self._lost(exc)
            return None
        if self._local_only:
            self._local_only = False
            log.warning("Redis answers again: per-user rate limits and socket caps hold "
                        "across nodes again")
        elsewhere = int(elsewhere)
        if kind == ":sockets":
            if elsewhere > 0:
                self.spread.add(field)
            else:
                self.spread.discard(field)
        return int(ok), float(wait), elsewhere

    async def take(self, action: str, user_id: str, capacity: float,
                   refill: float) -> tuple[float | None, int]:
        """Spend a token of the user's shared bucket (none with capacity 0). Returns
        None when taken (or Redis away), else the seconds until one is back; and the
        user's sockets on the other live nodes (0 while Redis is away)."""
        answer = await self._run(user_id, self._bucket(action, user_id), capacity, refill)
        if answer is None:
            return None, 0
        ok, wait, elsewhere = answer
        return (None if ok else wait), elsewhere

    async def connect(self, user_id: str, sid: str, capacity: float, refill: float,
                      cap: int, here: int) -> tuple[float | None, int, bool]:
        """At a token-proven connect: spend a token of the user's shared connect
        bucket (none with capacity 0) and, under a socket cap, count the socket in
        this node's hash in the same step unless the user's sockets on every node
        (``here`` on this one) are at the cap already. Returns the seconds until a
        token is back (None: taken, or Redis away), the user's sockets on the other
        live nodes, and whether the cap refused it. A counted socket is presence's to
        keep or take back (RedisPresence.claimed, release)."""
        presence = self.presence
        generation = presence.generation if presence is not None else 0
        answer = await self._run(user_id, self._bucket("connect", user_id), capacity,
                                 refill, cap=cap if presence is not None else 0, here=here)
        if answer is None:
            return None, 0, False
        ok, wait, elsewhere = answer
        if ok == 2:
            return None, elsewhere, True
        if ok == 1 and cap > 0 and presence is not None:
            presence.claimed(user_id, sid, generation)
        return (None if ok else wait), elsewhere, False

    async def release(self, user_id: str, sid: str) -> None:
        """The connect counted by ``connect`` was refused after all, or closed."""
        if self.presence is not None:
            await self.presence.release(user_id, sid)

    async def sockets_elsewhere(self, user_id: str) -> int:
        """The user's sockets on the other live nodes (0 while Redis is away)."""
        return (await self.take("", user_id, 0, 0))[1]

    async def address_elsewhere(self, address: str) -> int:
        """Sockets without a token from ``address`` on the other live nodes."""
        answer = await self._run(address, "", 0, 0, kind=":addresses")
        return 0 if answer is None else answer[2]

    async def address_changed(self, address: str) -> None:
        """This node's tokenless sockets from ``address`` went up or down by one."""
        if not self._synced or not self.link.up:
            # The next beat rewrites them all (again, if one is under way).
            self._synced, self._dirty = False, True
            return
        count = self.addresses.get(address, 0)
        try:
            async with self.redis.pipeline(transaction=False) as p:
                if count:
                    p.hset(self._addresses_key(), address, count)
                    p.expire(self._addresses_key(), int(self.ttl * 2))
                else:
                    p.hdel(self._addresses_key(), address)
                await p.execute()
        except REDIS_TROUBLE as exc:
            self._lost(exc)

    # The address counts' keep-alive: renewed three times per ttl, rewritten after an
    # outage (or at start).

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat())

    async def _beat(self):
        while True:
            try:
                if self.link.up:
                    await self._write_addresses()
                else:
                    self._synced = False
            except REDIS_TROUBLE as exc:
                self._lost(exc)
            except Exception:
                log.exception("address counts not written to Redis")
            await asyncio.sleep(self.ttl / 3 if self._synced else 1.0)

    async def _write_addresses(self):
        key, expire = self._addresses_key(), int(self.ttl * 2)
        if self._synced:
            if await self.redis.expire(key, expire) or not self.addresses:
                return
            # Redis lost them (it restarted empty): written again below.
        self._dirty = False
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(key)
            counts = dict(self.addresses)
            if counts:
                p.hset(key, mapping=counts)
                p.expire(key, expire)
            await p.execute()
        # A change while that was on its way: once more, a second later.
        self._synced = not self._dirty

    async def stop(self):
        if self._task is not None:
            self._task.cancel()
        try:
            await self.redis.delete(self._addresses_key())
        except REDIS_TROUBLE as exc:
            log.warning("address counts of node %s not cleared: %s", self.node_id, exc)

    async def spreading(self, user_id: str) -> None:
        """A connect found the user on another node too: mark and tell the others."""
        self.spread.add(user_id)
        if self.announce is not None and self.link.up:
            try:
                await self.announce(user_id)
            except REDIS_TROUBLE as exc:
                self.link.lost(exc)

    def heard_spread(self, user_id: str) -> None:
        # Another node holds the user now; it matters here only if this one does too.
        if self.holds(user_id):
            self.spread.add(user_id)
