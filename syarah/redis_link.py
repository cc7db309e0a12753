"""A node's link to the Redis that joins it to the other nodes, and what it does while
that Redis is away: the node serves its own sockets, says so once in its log and in
``syarah_redis_up``, and emits stop trying to cross until Redis answers again.

On a Redis Cluster "away" means any shard the node needs: the one holding the
deployment's keys, or one owning a room channel the node publishes or listens on."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from syarah import metrics

log = logging.getLogger("syarah.redis")

# What a call to an unreachable Redis may raise (a refused connect is an OSError at
# times, a RedisError at others).
REDIS_TROUBLE = (RedisError, OSError)

# How often a node looks for Redis while it is away, and resubscribes.
RETRY_SECONDS = 1.0


def client_options() -> dict:
    """Keyword arguments for ``redis.asyncio.from_url``. One retry, at once: a pooled
    connection that died with a restarted Redis is replaced on the first call that
    meets it. Short timeouts: an unreachable Redis costs an event a second or two at
    most, once, and then the node stops asking until it answers again."""
    return dict(socket_connect_timeout=1.0, socket_timeout=2.0,
                retry=Retry(NoBackoff(), 1))


def text(value) -> str:
    """A name or value as Redis answered it (bytes unless the client decodes)."""
    return value.decode() if isinstance(value, bytes) else value


CLUSTER_CHOICES = ("auto", "yes", "no")


def key_base(prefix: str, cluster: bool) -> str:
    """The head of every key of the deployment. On a cluster the prefix is a hash tag,
    so that all the keys share one slot: the scripts, MULTI blocks and SCANs that
    span a node's keys and the live-node set stay on one shard. A prefix that holds
    a tag already is taken as it is. A standalone Redis keeps the plain prefix, so
    nodes of an earlier release go on seeing the same keys."""
    if not cluster or re.search(r"\{[^}]+\}", prefix):
        return prefix
    return "{" + prefix + "}"


def is_cluster(client) -> bool:
    from redis.asyncio.cluster import RedisCluster

    return isinstance(client, RedisCluster)


async def open_client(url: str, cluster: str = "auto"):
    """The node's pooled client for ``url``: a ``RedisCluster`` when ``cluster`` is
    yes, or on auto when the server says ``cluster_enabled:1`` (a single-server
    client would be answered MOVED for most keys there), else a single-server one.
    Raises ValueError for a choice that cannot be had."""
    import redis.asyncio
    from redis.asyncio.cluster import RedisCluster

    if cluster not in CLUSTER_CHOICES:
        raise ValueError(f"redis_cluster must be one of {', '.join(CLUSTER_CHOICES)}, "
                         f"not {cluster!r}")
    if cluster != "yes":
        client = redis.asyncio.from_url(url, **client_options())
        await client.ping()
        if cluster == "no":
            return client
        enabled = (await client.info("cluster")).get("cluster_enabled", 0)
        if not int(enabled):
            return client
        await client.aclose()
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError("redis_cluster: a Redis Cluster is reached over redis:// or "
                         f"rediss://, not {url.split(':', 1)[0]}://")
    client = RedisCluster.from_url(url, **client_options())
    await client.initialize()
    return client


class RedisLink:
    """Whether this node reaches Redis. The change is logged once each way, not per
    event, and kept in the ``syarah_redis_up`` gauge.

    Two parts of the node find out on their own that Redis answers again: presence
    (the keys) and the room channels (their subscription). The link is up again
    once every part that lost it is back, so that on a cluster one shard answering
    while another is down does not bring it up and down every second."""

    def __init__(self):
        self.up = True
        self._lost_at = None
        self._down: set[str] = set()
        metrics.REDIS_UP.set(1)

    def lost(self, exc: BaseException, part: str = "keys") -> None:
        self._down.add(part)
        if not self.up:
            return
        self.up = False
        self._lost_at = time.monotonic()
        metrics.REDIS_UP.set(0)
        log.warning("Redis is unreachable (%s): this node serves its own sockets only; "
                    "presence answers from them and messages do not reach other nodes "
                    "until Redis is back", exc or type(exc).__name__)

    def back(self, part: str = "keys") -> None:
        self._down.discard(part)
        if self.up or self._down:
            return
        self.up = True
        metrics.REDIS_UP.set(1)
        log.warning("Redis is reachable again after %.1fs: this node's presence is "
                    "rewritten and emits reach the other nodes again",
                    time.monotonic() - self._lost_at)


class PublishQueue:
    """Commands for Redis that need no answer (the publishes of room emits), sent in
    the order they were put, all that one turn of the event loop put in one pipeline.

    A broadcast then costs the caller no round trip: the message's acknowledgement
    does not wait on the other nodes' copy, which a Redis that is away would not
    deliver either, and a batch of messages to many chats leaves in one write
    instead of a round trip each. ``put`` returns a future resolved once that
    command was sent (or its pipeline failed, which ``trouble`` hears); whoever
    must know that it was sent before going on waits for it. Past ``most``
    commands waiting, a caller should wait too, so that a slow Redis holds the
    callers up instead of letting the outbox grow without bound."""

    def __init__(self, redis, trouble, most: int = 10_000):
        self.redis = redis
        self.most = most
        self._cluster = is_cluster(redis)
        self._trouble = trouble
        self._pending: list[tuple] = []
        self._sent: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    @property
    def waiting(self) -> int:
        return len(self._pending)

    @property
    def full(self) -> bool:
        return len(self._pending) >= self.most

    def put(self, *command) -> asyncio.Future:
        self._pending.append(command)
        loop = asyncio.get_running_loop()
        if self._sent is None:
            self._sent = loop.create_future()
        sent = self._sent
        if self._task is None:
            self._task = loop.create_task(self._run())
        return sent

    async def drain(self) -> None:
        """Until what was put has been sent (or failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        try:
            while self._pending:
                commands, self._pending = self._pending, []
                sent, self._sent = self._sent, None
                try:
                    await self._send(commands)
                except REDIS_TROUBLE as exc:
                    self._trouble(exc)
                except Exception:
                    log.exception("sending %d commands to Redis failed", len(commands))
                finally:
                    if not sent.done():
                        sent.set_result(None)
        finally:
            self._task = None

    async def _send(self, commands: list[tuple]) -> None:
        for run in self._runs(commands):
            if len(run) == 1:
                await self.redis.execute_command(*run[0])
                continue
            async with self.redis.pipeline(transaction=False) as p:
                for command in run:
                    p.execute_command(*command)
                await p.execute()

    def _runs(self, commands: list[tuple]) -> list[list[tuple]]:
        """On a cluster, the commands in runs that go to one shard each, sent one run
        after the other: a pipeline over several shards would send to them side by
        side, and a node listening on two shards could hear a later emit first."""
        if not self._cluster:
            return [commands]
        runs, shard = [], None
        for command in commands:
            node = self.redis.get_node_from_key(command[1])
            here = node.name if node is not None else None
            if not runs or here != shard:
                runs.append([])
                shard = here
            runs[-1].append(command)
        return runs
