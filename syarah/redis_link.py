"""A node's link to the Redis that joins it to the other nodes, and what it does while
that Redis is away: the node serves its own sockets, says so once in its log and in
``syarah_redis_up``, and emits stop trying to cross until Redis answers again.

On a Redis Cluster "away" means any shard the node needs: the one holding the
deployment's keys, or one owning a room channel the node publishes or listens on."""

from __future__ import annotations

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
