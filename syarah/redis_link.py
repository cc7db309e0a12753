"""A node's link to the Redis that joins it to the other nodes, and what it does while
that Redis is away: the node serves its own sockets, says so once in its log and in
``syarah_redis_up``, and emits stop trying to cross until Redis answers again."""

from __future__ import annotations

import logging
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


class RedisLink:
    """Whether this node reaches Redis. The change is logged once each way, not per
    event, and kept in the ``syarah_redis_up`` gauge."""

    def __init__(self):
        self.up = True
        self._lost_at = None
        metrics.REDIS_UP.set(1)

    def lost(self, exc: BaseException) -> None:
        if not self.up:
            return
        self.up = False
        self._lost_at = time.monotonic()
        metrics.REDIS_UP.set(0)
        log.warning("Redis is unreachable (%s): this node serves its own sockets only; "
                    "presence answers from them and messages do not reach other nodes "
                    "until Redis is back", exc or type(exc).__name__)

    def back(self) -> None:
        if self.up:
            return
        self.up = True
        metrics.REDIS_UP.set(1)
        log.warning("Redis is reachable again after %.1fs: this node's presence is "
                    "rewritten and emits reach the other nodes again",
                    time.monotonic() - self._lost_at)
