"""Presence shared by several nodes through Redis (CONTRACT §8).

Each node keeps its own sockets in a LocalPresence (the truth for this node) and
mirrors counts to Redis under keys only it writes:

    {prefix}:nodes                    sorted set: node id -> last heartbeat (epoch s)
    {prefix}:node:{id}:sockets        hash: user id -> sockets of that user on the node
    {prefix}:node:{id}:view:{chat}    hash: user id -> sockets of that user viewing chat

A node that stops heartbeating drops out of the live set after ``ttl`` seconds, so a
crashed node's users stop counting as online without anyone cleaning up after it;
its keys expire on their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from syarah.presence import LocalPresence, Presence

log = logging.getLogger(__name__)


class RedisPresence(Presence):
    def __init__(self, redis, prefix: str = "syarah", ttl: float = 45.0):
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self.node_id = uuid.uuid4().hex[:12]
        self.local = LocalPresence()
        self._heartbeat_task = None

    # keys

    def _nodes(self):
        return f"{self.prefix}:nodes"

    def _sockets(self, node):
        return f"{self.prefix}:node:{node}:sockets"

    def _view(self, node, chat_id):
        return f"{self.prefix}:node:{node}:view:{chat_id}"

    # lifecycle

    async def start(self):
        await self._beat()
        self._heartbeat_task = asyncio.create_task(self._heartbeat())

    async def stop(self):
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
        keys = [self._sockets(self.node_id)] + [
            self._view(self.node_id, c) for c in self.local._viewers]
        try:
            async with self.redis.pipeline(transaction=False) as p:
                p.zrem(self._nodes(), self.node_id)
                p.delete(*keys)
                await p.execute()
        except Exception as exc:
            log.warning("presence of node %s not cleared: %s", self.node_id, exc)

    async def _heartbeat(self):
        # Three beats per ttl: one lost beat never makes a live node look dead.
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                await self._beat()
            except Exception as exc:
                log.warning("presence heartbeat failed: %s", exc)

    async def _beat(self):
        expire = int(self.ttl * 2)
        async with self.redis.pipeline(transaction=False) as p:
            p.zadd(self._nodes(), {self.node_id: time.time()})
            p.zremrangebyscore(self._nodes(), 0, time.time() - self.ttl * 4)
            p.expire(self._sockets(self.node_id), expire)
            for chat_id in list(self.local._viewers):
                p.expire(self._view(self.node_id, chat_id), expire)
            await p.execute()

    async def _other_nodes(self) -> list[str]:
        live = await self.redis.zrangebyscore(self._nodes(), time.time() - self.ttl, "+inf")
        return [n.decode() if isinstance(n, bytes) else n for n in live
                if (n.decode() if isinstance(n, bytes) else n) != self.node_id]

    async def _present_elsewhere(self, key_of, user_ids) -> set[str]:
        users = list(user_ids)
        if not users:
            return set()
        nodes = await self._other_nodes()
        if not nodes:
            return set()
        async with self.redis.pipeline(transaction=False) as p:
            for node in nodes:
                p.hmget(key_of(node), users)
            results = await p.execute()
        found = set()
        for counts in results:
            for user, count in zip(users, counts):
                if count is not None and int(count) > 0:
                    found.add(user)
        return found

    async def _bump(self, key, user_id, delta):
        value = await self.redis.hincrby(key, user_id, delta)
        if value <= 0:
            await self.redis.hdel(key, user_id)
        else:
            await self.redis.expire(key, int(self.ttl * 2))

    # Presence

    async def add_socket(self, user_id, sid):
        first_here = await self.local.add_socket(user_id, sid)
        await self._bump(self._sockets(self.node_id), user_id, 1)
        if not first_here:
            return False
        return not await self._present_elsewhere(self._sockets, [user_id])

    async def remove_socket(self, user_id, sid):
        viewed = list(self.local._viewed_by_socket.get(sid, ()))
        last_here = await self.local.remove_socket(user_id, sid)
        for chat_id in viewed:
            await self._bump(self._view(self.node_id, chat_id), user_id, -1)
        await self._bump(self._sockets(self.node_id), user_id, -1)
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
            await self._bump(self._view(self.node_id, chat_id), user_id, 1)

    async def clear_viewing(self, user_id, sid, chat_id):
        was = sid in self.local._viewers.get(chat_id, {}).get(user_id, ())
        await self.local.clear_viewing(user_id, sid, chat_id)
        if was:
            await self._bump(self._view(self.node_id, chat_id), user_id, -1)

    async def viewing(self, chat_id, user_ids):
        users = set(user_ids)
        here = await self.local.viewing(chat_id, users)
        return here | await self._present_elsewhere(
            lambda node: self._view(node, chat_id), users - here)

    async def socket_count(self):
        return await self.local.socket_count()
