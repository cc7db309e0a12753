"""The per-user limits across nodes, piece by piece: when a node asks Redis at all
(only for users spread over several nodes, or REST callers it holds no socket of),
and the shared bucket's script on a real Redis (a prefix of the test's own)."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid

import pytest
import redis.asyncio

from conftest import free_port
from syarah import options
from syarah.clock import FakeClock
from syarah.errors import RateLimited
from syarah.ratelimit import Limits
from syarah.ratelimit_redis import SharedLimits
from syarah.redis_link import RedisLink, client_options
from test_scaleout import REDIS_URL, redis_available


class FakeShared:
    """Answers as the script would: ``left`` tokens in the shared bucket."""

    def __init__(self, left: int):
        self.left = left
        self.spread: set[str] = set()
        self.asked = 0

    async def take(self, action, user_id, capacity, refill):
        self.asked += 1
        if self.left >= 1:
            self.left -= 1
            return None, 1
        return 7.0, 1


def limits_with(rate: str, shared, clock: FakeClock) -> Limits:
    limits = Limits(dataclasses.replace(options.defaults(), rate_get_my_chats_user=rate))
    for bucket in limits.buckets.values():
        bucket.clock = clock.monotonic
    limits.shared = shared
    return limits


async def test_a_user_on_this_node_only_never_asks_redis():
    clock, shared = FakeClock(), FakeShared(left=100)
    limits = limits_with("3/60", shared, clock)
    for _ in range(3):
        await limits.check_user("getMyChats", "ann")
    with pytest.raises(RateLimited):
        await limits.check_user("getMyChats", "ann")
    assert shared.asked == 0
    # The local bucket refills as before: one token every 20 seconds.
    clock.advance(20)
    await limits.check_user("getMyChats", "ann")


async def test_a_spread_user_spends_the_shared_bucket_and_a_local_refusal_asks_nothing():
    clock, shared = FakeClock(), FakeShared(left=2)
    limits = limits_with("3/60", shared, clock)
    shared.spread.add("ann")
    await limits.check_user("getMyChats", "ann")
    await limits.check_user("getMyChats", "ann")
    with pytest.raises(RateLimited) as refused:
        await limits.check_user("getMyChats", "ann")
    assert "getMyChats" in refused.value.message and "7 seconds" in refused.value.message
    assert shared.asked == 3
    # The shared refusal gave the local token back: one is left here.
    shared.left = 5
    await limits.check_user("getMyChats", "ann")
    with pytest.raises(RateLimited):
        await limits.check_user("getMyChats", "ann")
    assert shared.asked == 4


async def test_a_rest_caller_without_a_socket_here_spends_the_shared_bucket():
    clock, shared = FakeClock(), FakeShared(left=1)
    limits = limits_with("3/60", shared, clock)
    await limits.check_user("getMyChats", "bob", here=False)
    with pytest.raises(RateLimited):
        await limits.check_user("getMyChats", "bob", here=False)
    assert shared.asked == 2


# --- the script on a real Redis --------------------------------------------------------

@pytest.fixture
async def shared_redis():
    if not redis_available():
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    client = redis.asyncio.from_url(REDIS_URL, **client_options())
    prefix = "syarah-test-" + uuid.uuid4().hex[:8]
    yield client, prefix
    keys = [k async for k in client.scan_iter(match=prefix + ":*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_the_shared_bucket_bursts_then_refills_and_counts_other_nodes(shared_redis):
    client, prefix = shared_redis
    now = time.time()
    # Node b is live with two of Ann's sockets; node c stopped heartbeating long ago.
    await client.zadd(f"{prefix}:nodes", {"a": now, "b": now, "c": now - 600})
    await client.hset(f"{prefix}:node:b:sockets", "ann", 2)
    await client.hset(f"{prefix}:node:c:sockets", "ann", 5)
    shared = SharedLimits(client, prefix, "a", ttl=45, link=RedisLink())

    assert await shared.sockets_elsewhere("ann") == 2
    assert "ann" in shared.spread
    # 3 per 300 s: a burst of three, then a wait of about 100 s for the next one.
    for _ in range(3):
        assert await shared.take("getMyChats", "ann", 3, 0.01) == (None, 2)
    wait, _ = await shared.take("getMyChats", "ann", 3, 0.01)
    assert wait is not None and 99 < wait <= 100
    # The bucket goes when it would be full again.
    assert 0 < await client.pttl(f"{prefix}:rate:getMyChats:ann") <= 301_000
    # One round trip each, and one more at the first: the script named the live nodes,
    # whose hashes it must be given (it reads no key it is not given).
    assert shared.calls == 6

    # A node that came up since: the script sends the live set again, and the node
    # asks once more, with nothing spent twice.
    await client.zadd(f"{prefix}:nodes", {"d": time.time()})
    await client.hset(f"{prefix}:node:d:sockets", "ann", 1)
    assert await shared.sockets_elsewhere("ann") == 3
    assert shared.calls == 8

    # Ann's sockets on b and d are gone: the next check finds her on this node alone.
    await client.hdel(f"{prefix}:node:b:sockets", "ann")
    await client.hdel(f"{prefix}:node:d:sockets", "ann")
    await shared.take("getMyChats", "ann", 3, 0.01)
    assert "ann" not in shared.spread


async def test_with_redis_unreachable_the_local_limits_decide_and_it_is_said_once(caplog):
    # Nothing listens on this port.
    client = redis.asyncio.from_url(f"redis://127.0.0.1:{free_port()}/0", **client_options())
    link = RedisLink()
    shared = SharedLimits(client, "syarah-test", "a", ttl=45, link=link)
    with caplog.at_level(logging.WARNING, logger="syarah.limits"):
        assert await shared.take("getMyChats", "ann", 3, 0.01) == (None, 0)
        assert await shared.sockets_elsewhere("ann") == 0
    assert link.up is False
    # Once down, no further call is tried until the link is back.
    assert shared.calls == 1
    said = [r for r in caplog.records if r.name == "syarah.limits"]
    assert len(said) == 1 and "this node's own" in said[0].getMessage()
    await client.aclose()
    link.back()


async def test_address_counts_are_written_kept_and_rewritten_after_redis_lost_them(shared_redis):
    client, prefix = shared_redis
    counts = {"10.0.0.1": 2}
    shared = SharedLimits(client, prefix, "a", ttl=45, link=RedisLink(), addresses=counts)
    key = f"{prefix}:node:a:addresses"
    # Not yet written whole: a change waits for the rewrite, which carries it.
    await shared.address_changed("10.0.0.1")
    assert await client.exists(key) == 0
    await shared._write_addresses()
    assert await client.hgetall(key) == {b"10.0.0.1": b"2"}
    counts["10.0.0.1"] = 3
    await shared.address_changed("10.0.0.1")
    assert await client.hget(key, "10.0.0.1") == b"3"
    assert 0 < await client.ttl(key) <= 90
    # Redis restarted empty: the next beat notices and writes them again.
    await client.delete(key)
    await shared._write_addresses()
    assert await client.hgetall(key) == {b"10.0.0.1": b"3"}
    # Another node's view: node a is live, so its sockets count.
    await client.zadd(f"{prefix}:nodes", {"a": time.time()})
    other = SharedLimits(client, prefix, "b", ttl=45, link=RedisLink())
    assert await other.address_elsewhere("10.0.0.1") == 3
    await shared.stop()
    assert await client.exists(key) == 0
