"""Two nodes, one deployment: MariaDB shared, Redis carrying room emits
and presence. With CI set, Redis and MariaDB must be reachable."""

import asyncio
import json
import os
import signal
import uuid

import pytest

from conftest import IN_CI, User, dm, new_database_url, register
from test_js_client import TRANSPORTS, befriend, node_or_skip, run_node_tests

REDIS_URL = os.environ.get("SYARAH_TEST_REDIS", "redis://127.0.0.1:6379/0")


def redis_available() -> bool:
    import redis
    try:
        return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception:
        return False


@pytest.fixture
def deployment(make_server):
    """Start nodes of one deployment: same MariaDB database, same Redis prefix."""
    if not redis_available():
        if IN_CI:
            pytest.fail(f"Redis is required in CI but unreachable at {REDIS_URL}")
        pytest.skip(f"Redis not reachable at {REDIS_URL}")
    url, cleanup = new_database_url("mysql")
    prefix = "syarah-test-" + uuid.uuid4().hex[:8]

    def node(*flags):
        return make_server(None, f"--redis-url={REDIS_URL}", f"--redis-prefix={prefix}",
                           "--presence-ttl=3", *flags, database_url=url)
    yield node
    cleanup()


# A channel per room, sharded or plain, and python-socketio's one channel for all.
MANAGERS = ["--redis-pubsub=sharded", "--redis-pubsub=plain", "--redis-manager=broadcast"]


@pytest.mark.parametrize("manager", MANAGERS)
async def test_a_message_sent_on_one_node_reaches_the_room_on_another(deployment, clients,
                                                                      manager):
    one, two = deployment(manager), deployment(manager)
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = await dm(a, bob)
    await b.call("joinRoom", {"chatHeaderId": chat_id})

    reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": "across"})

    (got,) = await b.wait_for("message")
    assert got == reply
    # typing goes across too, and not back to the sender
    await b.call("roomTyping", {"chatHeaderId": chat_id, "isTyping": True, "name": "Bob"})
    (typing,) = await a.wait_for("typing")
    assert typing["userId"] == bob.id
    await b.settle()
    assert b.received("typing") == []


async def test_presence_is_shared_and_a_dead_node_stops_counting(deployment, clients):
    one, two = deployment(), deployment()
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    assert ann.http("POST", "/api/friendships", {"userId": bob.id})[0] == 200
    assert bob.http("POST", f"/api/friendships/{ann.id}/accept")[0] == 200

    a = await clients(ann)
    b = await clients(bob)
    # Bob's first socket, on the other node, is announced to Ann.
    (status,) = await a.wait_for("clientStatus")
    assert status == {"userId": bob.id, "clientType": "unknown", "activeNow": True}
    friends = await a.call("getMyFriendships", {})
    assert [(f["userId"], f["isOnline"]) for f in friends] == [(bob.id, True)]

    # A second socket of Bob on Ann's node: not a new arrival, no announcement.
    b2 = await clients(User(one, "Bob", user_id=bob.id))
    await a.settle()
    assert len(a.received("clientStatus")) == 1
    await b2.close()
    await a.settle()
    assert len(a.received("clientStatus")) == 1   # Bob is still on node two

    # Node two dies without a word: Bob stops counting as online within the TTL.
    two.proc.send_signal(signal.SIGKILL)
    two.proc.wait()
    for _ in range(40):
        friends = await a.call("getMyFriendships", {})
        if not friends[0]["isOnline"]:
            break
        await asyncio.sleep(0.25)
    assert friends[0]["isOnline"] is False
    del b


async def test_two_nodes_with_the_javascript_client(deployment):
    """tests/js/nodes.test.js: Ann on one node, Bob on the other, over each transport:
    presence through the personal room, a chat room both ways, and a group member
    removed while on the other node."""
    node_or_skip()
    await javascript_client_on(deployment(), deployment())


async def javascript_client_on(one, two) -> None:
    """tests/js/nodes.test.js with Ann (and her group) on ``one``, Bob on ``two``."""
    users, groups = [], []
    for transport in TRANSPORTS:
        ann, bob = User(one, f"Ann ({transport})"), User(two, f"Bob ({transport})")
        await register(ann, bob)
        befriend(ann, bob)
        status, body = ann.http("POST", "/api/chat/groups",
                                {"name": "G", "memberIds": [bob.id]})
        assert status == 201, body
        groups.append(body["data"]["id"])
        users += [{"id": u.id, "name": u.name, "token": u.token} for u in (ann, bob)]
    await run_node_tests(one, "nodes.test.js", users, CHAT_OTHER_URL=two.url,
                         CHAT_TEST_GROUPS=json.dumps(groups))
