"""Per-user limits across two nodes of one deployment (the test's own Redis, one
MariaDB database): a user with sockets on both nodes gets the rate and the socket cap
one node gives, a killed node's sockets stop counting, and with Redis gone each node
applies its own limits again."""

from __future__ import annotations

import asyncio
import signal
import uuid

from conftest import User, register
from helpers import assert_error
from test_production import fake_address, refused_connect
from test_redis_faults import TTL, nodes, own_redis, until  # noqa: F401 (fixtures)

LIMIT = 4
FLAGS = (f"--rate-get-my-chats-user={LIMIT}/3600",
         f"--rate-get-my-friendships-user={LIMIT}/3600", "--max-sockets-per-user=2")


async def calls_until_refused(sockets, most: int = 3 * LIMIT):
    """getMyChats on the sockets in turn; how many passed, and the refusal."""
    for n in range(most):
        reply = await sockets[n % len(sockets)].call("getMyChats", {})
        if isinstance(reply, dict) and reply.get("code"):
            return n, reply
    return most, None


async def test_a_user_on_two_nodes_gets_the_rate_of_one_node(nodes, clients):
    one, two = nodes(*FLAGS), nodes(*FLAGS)
    ann = User(one, "Ann")
    await register(ann)
    a1 = await clients(ann)
    a2 = await clients(User(two, "Ann", user_id=ann.id))
    await a1.settle()   # node one hears that Ann spread

    passed, refusal = await calls_until_refused([a1, a2])

    assert passed == LIMIT, passed
    assert_error(refusal, "RATE_LIMITED")
    assert "getMyChats" in refusal["error"] and "try again in" in refusal["error"], refusal
    # Both nodes refuse her now, and Bob's budget is his own.
    for a in (a1, a2):
        assert_error(await a.call("getMyChats", {}), "RATE_LIMITED")
    bob = User(two, "Bob")
    await register(bob)
    b = await clients(User(one, "Bob", user_id=bob.id))
    assert isinstance(await b.call("getMyChats", {}), list)


async def test_rest_calls_to_either_node_share_one_budget(nodes):
    one, two = nodes(*FLAGS), nodes(*FLAGS)
    # Cy holds no socket: a balancer may send each of his requests to any node.
    cy = [User(one, "Cy"), None]
    cy[1] = User(two, "Cy", user_id=cy[0].id)
    for n in range(3 * LIMIT):
        status, body = cy[n % 2].http("GET", "/api/friendships")
        if status != 200:
            break
    assert n == LIMIT and status == 429, (n, status, body)
    assert body["success"] is False and "try again in" in body["message"], body


async def test_the_socket_cap_holds_across_nodes_until_a_node_dies(nodes, clients):
    flags = (*FLAGS, "--xheaders", "--max-tokenless-sockets-per-address=2")
    one, two = nodes(*flags), nodes(*flags)
    ann = await cap_holds_on_both(one, two, clients)

    # Without a token, the cap per address holds across the nodes too.
    office = fake_address()
    for server in (one, two):
        await clients(User(server, "Tokenless"), with_token=False,
                      headers={"X-Forwarded-For": office})
    refusal = await refused_connect(User(one, "Tokenless"), office, with_token=False)
    assert refusal["data"]["code"] == "RATE_LIMITED", refusal
    assert "without an access token" in refusal["message"], refusal

    # Node two dies without a word: its socket stops counting within the TTL.
    two.proc.send_signal(signal.SIGKILL)
    two.proc.wait()

    async def admitted():
        try:
            await clients(ann, headers={"X-Forwarded-For": fake_address()})
            return True
        except Exception:
            return False
    assert await until(admitted, timeout=TTL * 4, step=0.5) is not None


async def cap_holds_on_both(one, two, clients) -> User:
    """Ann with a socket on each node (cap 2): a third is refused on either. Returns
    Ann on node one."""
    ann = User(one, "Ann")
    await register(ann)
    ann_two = User(two, "Ann", user_id=ann.id)
    await clients(ann, headers={"X-Forwarded-For": fake_address()})
    await clients(ann_two, headers={"X-Forwarded-For": fake_address()})
    for user in (ann, ann_two):
        refusal = await refused_connect(user, fake_address())
        assert refusal["data"]["code"] == "RATE_LIMITED", refusal
        assert "2 connections open" in refusal["message"], refusal
    return ann


async def test_with_redis_down_each_node_applies_its_own_limits(nodes, own_redis, clients):
    one, two = nodes(*FLAGS), nodes(*FLAGS)
    ann = User(one, "Ann")
    await register(ann)
    a1 = await clients(ann)
    a2 = await clients(User(two, "Ann", user_id=ann.id))
    await a1.settle()

    own_redis.kill()
    passed, refusal = await calls_until_refused([a1, a2], most=4 * LIMIT)

    # Each node's own bucket: one node's limit on each, never unlimited, no crash.
    assert passed == 2 * LIMIT, passed
    assert_error(refusal, "RATE_LIMITED")
    assert_error(await a1.call("getMyChats", {}), "RATE_LIMITED")
    assert_error(await a2.call("getMyChats", {}), "RATE_LIMITED")
    # New connections are still served, under the node's own cap.
    carl = User(one, "Carl-" + uuid.uuid4().hex[:4])
    c = await clients(carl)
    assert isinstance(await c.call("getMyChats", {}), list)


async def test_connection_attempts_per_user_count_on_every_node(nodes, clients):
    one, two = nodes("--rate-connect-user=3/3600", "--xheaders"), \
        nodes("--rate-connect-user=3/3600", "--xheaders")
    dan = User(one, "Dan")
    dan_two = User(two, "Dan", user_id=dan.id)
    for n in range(3):
        c = await clients((dan, dan_two)[n % 2], headers={"X-Forwarded-For": fake_address()})
        await c.close()
    refusal = await refused_connect(dan_two, fake_address())
    assert refusal["data"]["code"] == "RATE_LIMITED" and "you" in refusal["message"], refusal
    assert "try again in" in refusal["message"], refusal


async def test_connects_arriving_together_on_two_nodes_pass_the_cap_at_most(nodes):
    """Connects of one user at the same moment on two nodes: each node's check and
    count of the socket is one step in Redis, so no more than the cap get through."""
    flags = ("--max-sockets-per-user=2", "--xheaders")
    await together_at_most_the_cap(nodes(*flags), nodes(*flags))


async def together_at_most_the_cap(one, two, cap: int = 2) -> None:
    """Rounds of six connects of one user at once, three on each node."""
    ann = User(one, "Ann")
    await register(ann)
    ann_two = User(two, "Ann", user_id=ann.id)
    opened = []

    async def attempt(user):
        try:
            client = await user.connect(headers={"X-Forwarded-For": fake_address()})
        except Exception:
            return False
        opened.append(client)
        return True
    try:
        for _ in range(3):
            admitted = await asyncio.gather(*(attempt(u) for u in (ann, ann_two) * 3))
            assert sum(admitted) <= cap, admitted
            for client in opened:
                await client.close()
            opened.clear()
            # Closed sockets stop counting on both nodes before the next round.
            await asyncio.sleep(0.5)
    finally:
        for client in opened:
            await client.close()
