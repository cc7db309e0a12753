"""Presence shared by several nodes through Redis.

Each node keeps its own sockets in a LocalPresence (the truth for this node) and
mirrors counts to Redis under keys only it writes:

    {prefix}:nodes                    sorted set: node id -> last heartbeat (epoch s)
    {prefix}:node:{id}:sockets        hash: user id -> sockets of that user on the node
    {prefix}:node:{id}:view:{chat}    hash: user id -> sockets of that user viewing chat
    {prefix}:bus                      channel: what every node must do (group removals)

On a Redis Cluster the prefix is a hash tag (``{prefix}``, syarah.redis_link.key_base):
every key above is on one slot, so the MULTI blocks and the SCANs below stay on the
shard that owns it, and the bus is a sharded channel of that shard (a plain PUBLISH
is copied to every shard, and counts only the listeners of the shard it was sent to).

A node that stops heartbeating stops counting after ``ttl`` seconds. The first live
node whose sweep finds it takes it out of the live set (one ZREM: exactly one node
wins it), tells its users' partners that those who are online nowhere else went
offline, and deletes its keys.

While Redis is unreachable a node answers from its own sockets and writes nothing;
once Redis answers again (looked for every second) it rewrites everything it owns,
so a Redis that restarted empty knows the node's sockets and viewers again at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid

from redis.exceptions import TimeoutError as RedisTimeout

from syarah.presence import LocalPresence, Presence
from syarah.redis_link import REDIS_TROUBLE, RETRY_SECONDS, RedisLink, is_cluster, text

log = logging.getLogger(__name__)

# A removal another node has not heard yet is retried this long (Redis away, or that
# node not yet resubscribed after Redis came back).
REMOVAL_RETRY_SECONDS = 60.0
# Rounds of writing the counts that changed during a rewrite, before starting over.
REWRITE_ROUNDS = 5



class RedisPresence(Presence):
    def __init__(self, redis, prefix: str = "syarah", ttl: float = 45.0,
                 link: RedisLink | None = None):
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.link = link or RedisLink()
        self.cluster = is_cluster(redis)
        self.node_id = uuid.uuid4().hex[:12]
        self.local = LocalPresence()
        # Redis holds what this node owns. While it does not, changes are made here
        # only, and the whole state is rewritten when Redis answers; the counts that
        # change while the rewrite is on its way are noted, (chat id or None, user id).
        self._synced = False
        self._dirty: set[tuple[int | None, str]] = set()
        # Sockets the connect's cap check counted in this node's hash before they are
        # added here (syarah.ratelimit_redis): sid -> (user id, when). They count in
        # whatever this node writes, until added or released. ``generation`` goes up
        # at each rewrite: a claim sent before one began may have been wiped by it.
        self._claims: dict[str, tuple[str, float]] = {}
        self.generation = 0
        # Removals from a group not yet heard by every node: (first tried, message).
        self._removals: list[tuple[float, str]] = []
        # Set by the server: async (user ids) for a crashed node's users now offline,
        # and async (user id, chat id) to run another node's group removal here.
        self.on_gone = None
        self.on_removed = None
        # Set by the server: (user id) when another node found the user spread over
        # several nodes (the per-user limits then hold across them).
        self.on_spread = None
        self._tasks: list[asyncio.Task] = []
        self._announcing: set[asyncio.Task] = set()

    # keys

    def _nodes(self):
        return f"{self.prefix}:nodes"

    def _sockets(self, node):
        return f"{self.prefix}:node:{node}:sockets"

    def _view(self, node, chat_id):
        return f"{self.prefix}:node:{node}:view:{chat_id}"

    def _bus(self):
        return f"{self.prefix}:bus"

    def _scan(self, match: str):
        """The keys matching ``match``; on a cluster, asked of the shard that holds
        them only (a shard down elsewhere does not stop presence)."""
        if self.cluster:
            return self.redis.scan_iter(match=match, count=1000,
                                        target_nodes=self.redis.get_node_from_key(match))
        return self.redis.scan_iter(match=match, count=1000)

    async def _publish(self, message: str) -> int:
        """Listeners of the bus that heard ``message``."""
        if self.cluster:
            return await self.redis.spublish(self._bus(), message)
        return await self.redis.publish(self._bus(), message)

    # lifecycle

    async def start(self):
        await self._rewrite()
        self._tasks = [asyncio.create_task(self._watch()),
                       asyncio.create_task(self._listen())]

    async def stop(self):
        for task in [*self._tasks, *self._announcing]:
            task.cancel()
        keys = [self._sockets(self.node_id)] + [
            self._view(self.node_id, c) for c in self.local._viewers]
        try:
            async with self.redis.pipeline(transaction=False) as p:
                p.zrem(self._nodes(), self.node_id)
                p.delete(*keys)
                await p.execute()
        except Exception as exc:
            log.warning("presence of node %s not cleared: %s", self.node_id, exc)

    def _lost(self, exc):
        self._synced = False
        self.link.lost(exc)

    async def _watch(self):
        """Every second: the node's heartbeat and the sweep for crashed nodes, or while
        Redis is away, a look for it. Key expiries are renewed three times per ttl."""
        loop = asyncio.get_running_loop()
        next_beat = next_sweep = loop.time() + self.ttl / 3
        while True:
            await asyncio.sleep(RETRY_SECONDS)
            try:
                if not self._synced or not self.link.up:
                    await self._rewrite()
                    # Peers come back within a second too: none is taken for crashed
                    # because its heartbeat is as old as the outage.
                    next_sweep = loop.time() + self.ttl
                elif await self.redis.zadd(self._nodes(), {self.node_id: time.time()}):
                    # Redis had lost this node (it restarted empty between two beats).
                    self._synced = False
                    await self._rewrite()
                else:
                    if loop.time() >= next_beat:
                        next_beat = loop.time() + self.ttl / 3
                        self._drop_stale_claims()
                        await self._beat()
                    if loop.time() >= next_sweep:
                        await self._sweep()
                if self._removals:
                    await self._send_removals()
            except REDIS_TROUBLE as exc:
                self._lost(exc)
            except Exception:
                log.exception("presence heartbeat failed")

    async def _rewrite(self):
        """Replace whatever Redis holds of this node by what this node knows."""
        expire = int(self.ttl * 2)
        self._dirty.clear()
        self.generation += 1
        stale = [key async for key in self._scan(self._view(self.node_id, "*"))]
        async with self.redis.pipeline(transaction=True) as p:
            p.delete(self._sockets(self.node_id), *stale)
            counts = {u: self._count(None, u)
                      for u in {*self.local._sockets, *(u for u, _ in self._claims.values())}}
            if counts:
                p.hset(self._sockets(self.node_id), mapping=counts)
                p.expire(self._sockets(self.node_id), expire)
            for chat_id, users in self.local._viewers.items():
                if not users:
                    continue
                p.hset(self._view(self.node_id, chat_id),
                       mapping={u: len(s) for u, s in users.items()})
                p.expire(self._view(self.node_id, chat_id), expire)
            p.zadd(self._nodes(), {self.node_id: time.time()})
            await p.execute()
        # Counts that changed while that was on its way are written as they stand now,
        # one round after another (each shorter) until none is left.
        for _ in range(REWRITE_ROUNDS):
            if not self._dirty:
                break
            dirty, self._dirty = self._dirty, set()
            async with self.redis.pipeline(transaction=False) as p:
                for chat_id, user_id in dirty:
                    key = (self._sockets(self.node_id) if chat_id is None
                           else self._view(self.node_id, chat_id))
                    count = self._count(chat_id, user_id)
                    if count:
                        p.hset(key, user_id, count)
                        p.expire(key, expire)
                    else:
                        p.hdel(key, user_id)
                await p.execute()
        # Still changing: the next round is a whole rewrite again, a second later.
        self._synced = not self._dirty
        self.link.back()

    def _count(self, chat_id, user_id) -> int:
        """This node's sockets of a user, or those of them viewing a chat."""
        if chat_id is None:
            return len(self.local._sockets.get(user_id, ())) + sum(
                1 for u, _ in self._claims.values() if u == user_id)
        return len(self.local._viewers.get(chat_id, {}).get(user_id, ()))

    async def _beat(self):
        expire = int(self.ttl * 2)
        async with self.redis.pipeline(transaction=False) as p:
            p.expire(self._sockets(self.node_id), expire)
            for chat_id in list(self.local._viewers):
                p.expire(self._view(self.node_id, chat_id), expire)
            await p.execute()

    async def _sweep(self):
        """Claim the nodes whose heartbeat stopped, and announce their users gone."""
        dead = await self.redis.zrangebyscore(self._nodes(), 0, time.time() - self.ttl)
        for node in map(text, dead):
            if node == self.node_id:
                continue
            async with self.redis.pipeline(transaction=True) as p:
                p.zrem(self._nodes(), node)
                p.hgetall(self._sockets(node))
                claimed, counts = await p.execute()
            if not claimed:
                continue    # another node's sweep took it first
            users = {text(u) for u, c in counts.items() if int(c) > 0}
            views = [key async for key in self._scan(self._view(node, "*"))]
            await self.redis.delete(self._sockets(node), *views)
            gone = users - await self.online(users)
            log.warning("node %s stopped heartbeating: %d of its users went offline",
                        node, len(gone))
            if gone and self.on_gone is not None:
                # Announcing many users takes a store query each: the heartbeat must
                # not wait for it, or this node would look crashed in turn.
                task = asyncio.create_task(self.on_gone(sorted(gone)))
                self._announcing.add(task)
                task.add_done_callback(self._announced)

    def _announced(self, task):
        self._announcing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a crashed node's users were not all announced offline",
                      exc_info=task.exception())

    async def _other_nodes(self) -> list[str]:
        live = await self.redis.zrangebyscore(self._nodes(), time.time() - self.ttl, "+inf")
        return [n for n in map(text, live) if n != self.node_id]

    async def _present_elsewhere(self, key_of, user_ids) -> set[str]:
        users = list(user_ids)
        if not users or not self.link.up:
            return set()
        try:
            nodes = await self._other_nodes()
            if not nodes:
                return set()
            async with self.redis.pipeline(transaction=False) as p:
                for node in nodes:
                    p.hmget(key_of(node), users)
                results = await p.execute()
        except REDIS_TROUBLE as exc:
            # What this node knows of its own sockets is the answer until Redis is back.
            self._lost(exc)
            return set()
        found = set()
        for counts in results:
            for user, count in zip(users, counts):
                if count is not None and int(count) > 0:
                    found.add(user)
        return found

    async def _bump(self, chat_id, user_id, delta):
        """Mirror a change of this node's count of a user's sockets (chat_id None) or
        of those viewing a chat."""
        if not self._synced:
            self._dirty.add((chat_id, user_id))
            return
        key = (self._sockets(self.node_id) if chat_id is None
               else self._view(self.node_id, chat_id))
        try:
            value = await self.redis.hincrby(key, user_id, delta)
            if value <= 0:
                await self.redis.hdel(key, user_id)
            else:
                await self.redis.expire(key, int(self.ttl * 2))
        except REDIS_TROUBLE as exc:
            self._lost(exc)
            self._dirty.add((chat_id, user_id))

    # group removals on every node

    async def _listen(self):
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                if self.cluster:
                    await pubsub.ssubscribe(self._bus())
                    while True:
                        message = await pubsub.get_sharded_message(
                            ignore_subscribe_messages=True, timeout=RETRY_SECONDS)
                        if message is not None:
                            await self._heard(message.get("data"))
                await pubsub.subscribe(self._bus())
                async for message in pubsub.listen():
                    await self._heard(message.get("data"))
            except RedisTimeout:
                pass    # a quiet channel, where a client times its reads out
            except REDIS_TROUBLE as exc:
                self._lost(exc)
            finally:
                try:
                    await pubsub.aclose()
                except Exception:
                    pass
            await asyncio.sleep(RETRY_SECONDS)

    async def _heard(self, data):
        try:
            message = json.loads(data)
            if message["node"] == self.node_id:
                return
            if "spread" in message:
                if self.on_spread is not None:
                    self.on_spread(str(message["spread"]))
                return
            if self.on_removed is None:
                return
            user_id, chat_id = message["removed"]
            await self.on_removed(str(user_id), int(chat_id))
        except Exception:
            log.exception("a message from another node could not be handled")

    async def _send_removals(self):
        """Publish the removals not yet heard by every live node."""
        if not self.link.up:
            return
        pending, self._removals = self._removals, []
        try:
            nodes = 1 + len(await self._other_nodes())
            now = time.monotonic()
            while pending:
                first, message = pending[0]
                heard = await self._publish(message)
                pending.pop(0)
                if heard < nodes and now - first < REMOVAL_RETRY_SECONDS:
                    self._removals.append((first, message))
        finally:
            self._removals = pending + self._removals

    # Presence

    def claimed(self, user_id: str, sid: str, generation: int) -> None:
        """The connect's check counted ``sid`` in this node's hash (the script did the
        HINCRBY); ``generation`` is presence's when the check was sent."""
        self._claims[sid] = (user_id, time.monotonic())
        if generation != self.generation:
            # A rewrite ran meanwhile and may have wiped it: written again whole.
            self._synced = False

    async def release(self, user_id: str, sid: str) -> None:
        """A counted connect that is not added after all: its count is taken back."""
        if self._claims.pop(sid, None) is not None:
            await self._bump(None, user_id, -1)

    def _drop_stale_claims(self) -> None:
        # A claim neither added nor released (a connect that failed on its way):
        # after a ttl it stops counting, and the rewrite writes what this node holds.
        old = time.monotonic() - self.ttl
        stale = [sid for sid, (_, at) in self._claims.items() if at < old]
        for sid in stale:
            del self._claims[sid]
        if stale:
            self._synced = False

    async def add_socket(self, user_id, sid):
        first_here = await self.local.add_socket(user_id, sid)
        if self._claims.pop(sid, None) is None:
            await self._bump(None, user_id, 1)
        if not first_here:
            return False
        return not await self._present_elsewhere(self._sockets, [user_id])

    async def remove_socket(self, user_id, sid):
        if sid in self._claims:
            # Gone before it was added: the claim is all there is to take back.
            await self.release(user_id, sid)
            return False
        viewed = list(self.local._viewed_by_socket.get(sid, ()))
        last_here = await self.local.remove_socket(user_id, sid)
        for chat_id in viewed:
            await self._bump(chat_id, user_id, -1)
        await self._bump(None, user_id, -1)
        if not last_here:
            return False
        return not await self._present_elsewhere(self._sockets, [user_id])

    async def online(self, user_ids):
        users = set(user_ids)
        here = await self.local.online(users)
        return here | await self._present_elsewhere(self._sockets, users - here)

    async def set_viewing(self, user_id, sid, chat_id):
        already = sid in self.local._viewers.get(chat_id, {}).get(user_id, ())
        await self.local.set_viewing(user_id, sid, chat_id)
        if not already:
            await self._bump(chat_id, user_id, 1)

    async def clear_viewing(self, user_id, sid, chat_id):
        was = sid in self.local._viewers.get(chat_id, {}).get(user_id, ())
        await self.local.clear_viewing(user_id, sid, chat_id)
        if was:
            await self._bump(chat_id, user_id, -1)

    async def viewing(self, chat_id, user_ids):
        users = set(user_ids)
        here = await self.local.viewing(chat_id, users)
        return here | await self._present_elsewhere(
            lambda node: self._view(node, chat_id), users - here)

    async def removed_from_chat(self, user_id, chat_id):
        # Kept and retried while a node has not heard it: a former member must not go
        # on hearing the group on a node that missed the removal.
        message = json.dumps({"node": self.node_id, "removed": [user_id, chat_id]})
        if len(self._removals) < 10_000:
            self._removals.append((time.monotonic(), message))
        try:
            await self._send_removals()
        except REDIS_TROUBLE as exc:
            self._lost(exc)

    async def announce_spread(self, user_id):
        """Tell the other nodes the user holds sockets on several nodes. Not retried:
        a node that misses it applies its own limits to that user until it hears
        again, at the user's next connect on another node."""
        await self._publish(json.dumps({"node": self.node_id, "spread": user_id}))

    async def socket_count(self):
        return await self.local.socket_count()
