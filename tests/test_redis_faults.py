"""Several nodes through a Redis of the test's own (started on a free port, killed by
pid; the shared one is never touched): Redis going away and coming back, a node
killed with -9, and group removal reaching every node. Every wait is bounded."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import time
import types
import uuid

import pytest

from conftest import IN_CI, User, free_port, http_get, new_database_url, register
from own_mariadb import OwnMariadb
from test_outage import Sender

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
TTL = 3
DOWN_SECONDS = 2


class OwnRedis:
    """redis-server on a free loopback port, without persistence: ``kill`` is kill -9,
    ``start`` again comes back on the same port, empty."""

    def __init__(self, *extra_args: str, folder: str | None = None,
                 port: int | None = None):
        self.port = port or free_port()
        self.dir = folder or tempfile.mkdtemp(prefix="syarah-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.extra_args = [a.replace("{port}", str(self.port)) for a in extra_args]
        self.proc = None

    def start(self, timeout: float = 10) -> "OwnRedis":
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.5).ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    # Killed by its pid (kill -9) and cleaned up as the test's own MariaDB is.
    kill = OwnMariadb.kill
    stop = OwnMariadb.stop


@pytest.fixture
def own_redis():
    if not os.path.exists(REDIS_SERVER):
        if IN_CI:
            pytest.fail("redis-server is required in CI")
        pytest.skip("redis-server not installed")
    r = OwnRedis().start()
    yield r
    r.stop()


def deployment(make_server, redis_url: str, prefix: str):
    """(start a node, clean up): nodes of one deployment on one new MariaDB database
    and the Redis at ``redis_url``."""
    url, cleanup = new_database_url("mysql")

    def node(*flags):
        return make_server(None, f"--redis-url={redis_url}", f"--redis-prefix={prefix}",
                           f"--presence-ttl={TTL}", *flags, database_url=url)
    return node, cleanup


@pytest.fixture
def nodes(own_redis, make_server):
    """Nodes of one deployment on one MariaDB database and the test's own Redis."""
    node, cleanup = deployment(make_server, own_redis.url,
                               "syarah-faults-" + uuid.uuid4().hex[:8])
    yield node
    cleanup()


async def befriend(a: User, b: User) -> None:
    assert a.http("POST", "/api/friendships", {"userId": b.id})[0] == 200
    assert b.http("POST", f"/api/friendships/{a.id}/accept")[0] == 200


async def sees_online(client, user_id: str) -> bool:
    friends = await client.call("getMyFriendships", {}, timeout=5)
    assert isinstance(friends, list), friends
    return {f["userId"]: f["isOnline"] for f in friends}.get(user_id) is True


async def until(predicate, timeout: float, step: float = 0.1) -> float | None:
    """Seconds until ``predicate()`` holds, or None after ``timeout``."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if await predicate():
            return time.monotonic() - began
        await asyncio.sleep(step)
    return None


def metric(server, name: str) -> float | None:
    _, _, body = http_get(server, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def test_while_redis_is_down_a_node_serves_its_own_sockets(nodes, own_redis, clients):
    one, two = nodes(), nodes()
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    await befriend(ann, bob)
    bob_here = User(one, "Bob", user_id=bob.id)
    a, b, b1 = await clients(ann), await clients(bob), await clients(bob_here)
    chat_id = (await a.call("joinRoom", {"otherUserId": bob.id}))["chatHeaderId"]
    for c in (b, b1):
        assert (await c.call("joinRoom", {"chatHeaderId": chat_id}))["joined"] is True
    assert metric(one, "syarah_redis_up") == 1
    # Each node is subscribed to what it holds: its own channel, the namespace's, each
    # socket's sid, each user's room, the chat (Ann and Bob here; Bob there).
    assert metric(one, "syarah_room_channels") == 7
    assert metric(two, "syarah_room_channels") == 5

    own_redis.kill()
    # Ann's node knows Bob's socket there: he is online for her, on both reads.
    chats = await a.call("getMyChats", {})
    assert [(c["userId"], c["isOnline"]) for c in chats] == [(bob.id, True)], chats
    assert await sees_online(a, bob.id)
    # Bob's node knows nothing of Ann: offline, but an answer all the same.
    assert not await sees_online(b, ann.id)
    # Connections are accepted, and a message is stored and reaches this node's room.
    carl = await clients(User(one, "Carl"))
    assert isinstance(await carl.call("getMyChats", {}), list)
    reply = await a.call("createMessage", {"chatHeaderId": chat_id, "message": "local"})
    assert reply["chatMessage"]["message"] == "local", reply
    (got,) = await b1.wait_for("message")
    assert got["chatMessage"]["id"] == reply["chatMessage"]["id"]
    for _ in range(5):
        assert isinstance(await a.call("getMyFriendships", {}), list)
    # Said once in the log, and in the metrics for as long as it lasts.
    assert metric(one, "syarah_redis_up") == 0
    assert one.log().count("Redis is unreachable") == 1, one.log()[-3000:]
    assert "Traceback" not in one.log()


async def test_presence_comes_back_after_redis_restarts_empty(nodes, own_redis, clients):
    one, two = nodes(), nodes()
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    await befriend(ann, bob)
    a, b = await clients(ann), await clients(bob)
    assert await until(lambda: sees_online(a, bob.id), 5) is not None
    assert await until(lambda: sees_online(b, ann.id), 5) is not None

    own_redis.kill()
    own_redis.start()

    async def both():
        return await sees_online(a, bob.id) and await sees_online(b, ann.id)
    took = await until(both, 15)
    print(f"\npresence back {took and round(took, 2)} s after Redis restarted empty")
    assert took is not None, "each still sees the other offline 15 s after Redis came back"
    assert metric(one, "syarah_redis_up") == 1
    # And what comes back stays: the next heartbeats find the state in place.
    await asyncio.sleep(TTL / 2)
    assert await both()


async def test_a_crashed_nodes_users_are_announced_offline_once(nodes, clients):
    one, two, three = nodes(), nodes(), nodes()
    ann, bob, cat = User(one, "Ann"), User(two, "Bob"), User(three, "Cat")
    await register(ann, bob, cat)
    await befriend(ann, bob)
    await befriend(ann, cat)
    b, c = await clients(bob), await clients(cat)
    await clients(ann)
    for watcher in (b, c):
        (status,) = await watcher.wait_for("clientStatus")
        assert status["activeNow"] is True

    one.proc.send_signal(signal.SIGKILL)
    one.proc.wait(10)

    async def told():
        return all(len(w.received("clientStatus")) >= 2 for w in (b, c))
    took = await until(told, 30, step=0.2)
    print(f"\noffline clientStatus {took and round(took, 2)} s after kill -9 "
          f"(presence_ttl {TTL} s)")
    assert took is not None, [w.received("clientStatus") for w in (b, c)]
    # Two surviving nodes sweep every second; one of them told: once, and never again.
    await asyncio.sleep(TTL)
    for watcher in (b, c):
        assert watcher.received("clientStatus")[1:] == [
            {"userId": ann.id, "clientType": "unknown", "activeNow": False}]
    assert not await sees_online(b, ann.id)
    # The two nodes left go on carrying each other's rooms.
    chat_id = (await b.call("joinRoom", {"otherUserId": cat.id}))["chatHeaderId"]
    assert (await c.call("joinRoom", {"chatHeaderId": chat_id}))["joined"] is True
    sent = await b.call("createMessage", {"chatHeaderId": chat_id, "message": "still here"})
    (got,) = await c.wait_for("message")
    assert got["chatMessage"]["id"] == sent["chatMessage"]["id"]


async def test_a_removed_member_stops_hearing_the_group_on_every_node(nodes, clients):
    one, two = nodes(), nodes()
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    status, body = ann.http("POST", "/api/chat/groups", {"name": "G", "memberIds": [bob.id]})
    assert status == 201, body
    gid = body["data"]["id"]
    a, b = await clients(ann), await clients(bob)
    for c in (a, b):
        assert (await c.call("joinRoom", {"chatHeaderId": gid}))["joined"] is True
    first = await a.call("createMessage", {"chatHeaderId": gid, "message": "before"})
    (got,) = await b.wait_for("message")
    assert got["chatMessage"]["id"] == first["chatMessage"]["id"]

    status, body = ann.http("DELETE", f"/api/chat/groups/{gid}/members/{bob.id}")
    assert status == 200, body
    await a.settle(0.5)
    await a.call("createMessage", {"chatHeaderId": gid, "message": "after"})
    await b.settle(1.0)
    assert [m["chatMessage"]["message"] for m in b.received("message")] == ["before"]
    # Nor does the room's typing reach the former member.
    await a.call("roomTyping", {"chatHeaderId": gid, "isTyping": True})
    await b.settle(0.5)
    assert b.received("typing") == []


async def test_redis_killed_during_traffic_between_two_nodes(nodes, own_redis, clients):
    """Ann on one node writes to Bob on the other, back to back, while Redis is killed
    and restarted. Measured: what crosses while it is down, and how soon delivery and
    presence come back; every acked message is stored."""
    async def meanwhile(run):
        crossed = [i for i, t in run.arrivals.items() if t > run.down + 0.5]
        return len(crossed), await sees_online(run.a, run.bob.id)

    async def restart():
        own_redis.start()
    run = await outage_during_traffic(nodes(), nodes(), clients,
                                      lambda run: own_redis.kill(), meanwhile, restart)
    crossed_while_down, ann_sees_bob = run.seen
    slowest = max(o[2] for o in run.during)
    print(f"\nRedis down {DOWN_SECONDS} s: {run.acked_while_down} messages acked on "
          f"node one, {crossed_while_down} crossed to node two; Ann saw Bob online "
          f"while down: {ann_sees_bob}; after restart cross-node delivery back in "
          f"{run.delivery and round(run.delivery, 2)} s, presence in "
          f"{run.presence and round(run.presence, 2)} s; replies {run.codes}, slowest "
          f"{slowest:.3f} s")
    assert run.codes == ["ok"], run.during
    assert run.delivery is not None and run.presence is not None
    await assert_acked_stored(run.b, run.chat_id, run.sender)


async def outage_during_traffic(one, two, clients, cut, meanwhile, mend,
                                seconds: float = DOWN_SECONDS):
    """Ann on ``one`` writes to Bob on ``two`` back to back; once messages cross,
    ``cut(run)`` takes Redis (or a part of it) away for ``seconds``, ``meanwhile(run)``
    looks at the nodes, and ``mend()`` brings it back. Returns the run: what was
    sent and acked, when messages arrived, and how soon after ``mend`` delivery
    across the nodes and presence were back (None: not within 15 s)."""
    ann, bob = User(one, "Ann"), User(two, "Bob")
    await register(ann, bob)
    await befriend(ann, bob)
    a, b = await clients(ann), await clients(bob)
    chat_id = (await a.call("joinRoom", {"otherUserId": bob.id}))["chatHeaderId"]
    await b.call("joinRoom", {"chatHeaderId": chat_id})
    run = types.SimpleNamespace(ann=ann, bob=bob, a=a, b=b, chat_id=chat_id,
                                arrivals={}, sender=Sender(a, chat_id))

    @b.sio.on("message")
    async def arrived(data):
        run.arrivals[data["chatMessage"]["id"]] = time.monotonic()

    traffic = asyncio.create_task(run.sender.run())
    try:
        assert await until(lambda: _true(len(run.arrivals) >= 20), 10) is not None
        cut(run)
        run.down = time.monotonic()
        await asyncio.sleep(seconds)
        run.seen = await meanwhile(run)
        run.mended = await mend()
        run.up = time.monotonic()
        acked_before_up = set(run.sender.acked.values())

        async def crossed():
            return any(t > run.up and i not in acked_before_up
                       for i, t in run.arrivals.items())
        run.delivery = await until(crossed, 15)

        async def both_online():
            return await sees_online(a, bob.id) and await sees_online(b, ann.id)
        run.presence = await until(both_online, 15)
        await asyncio.sleep(0.5)
    finally:
        run.sender.stop = True
        await asyncio.wait_for(traffic, 20)
    run.during = run.sender.since(run.down)
    run.codes = sorted({o[0] for o in run.during})
    run.acked_while_down = len([o for o in run.during if o[1] < run.up])
    return run


async def assert_acked_stored(b, chat_id: int, sender) -> None:
    """Nothing ``sender`` had acked is missing from the store, under the id its ack
    gave (read page by page by ``b``)."""
    stored: dict[str, int] = {}
    last = None
    while True:
        query = {"chatHeaderId": chat_id, "maxResultCount": 200}
        if last is not None:
            query["lastMessageId"] = last
        page = await b.call("findAllMessages", query)
        if not page["items"]:
            break
        stored.update({m["message"]: m["id"] for m in page["items"]})
        last = min(m["id"] for m in page["items"])
        if len(stored) >= page["totalCount"]:
            break
    for text, message_id in sender.acked.items():
        assert stored.get(text) == message_id, text


async def _true(value):
    return value


async def test_a_node_rewrites_its_sockets_and_viewers_into_a_restarted_redis(own_redis):
    """In process, two presences as two nodes would hold them: what one node knew
    before the restart, and what changed while Redis was away, is in Redis again."""
    import redis.asyncio

    from syarah.presence_redis import RedisPresence
    from syarah.redis_link import RedisLink, client_options

    prefix = "syarah-rw-" + uuid.uuid4().hex[:8]
    opened = [redis.asyncio.from_url(own_redis.url, **client_options()) for _ in range(2)]
    here, there = (RedisPresence(r, prefix=prefix, ttl=TTL, link=RedisLink()) for r in opened)
    try:
        for p in (here, there):
            await p.start()
        await here.add_socket("ann", "s1")
        await here.set_viewing("ann", "s1", 7)
        assert await there.viewing(7, ["ann"]) == {"ann"}

        own_redis.kill()
        # Changes while Redis is away are made here, and answered from here.
        await here.add_socket("bob", "s2")
        await here.set_viewing("bob", "s2", 7)
        await here.clear_viewing("ann", "s1", 7)
        assert await here.online(["ann", "bob", "cat"]) == {"ann", "bob"}
        assert await here.viewing(7, ["ann", "bob"]) == {"bob"}
        assert await there.online(["ann"]) == set()
        own_redis.start()

        async def rewritten():
            return (await there.online(["ann", "bob"]) == {"ann", "bob"}
                    and await there.viewing(7, ["ann", "bob"]) == {"bob"})
        assert await until(rewritten, 10) is not None
        assert here.link.up and there.link.up
    finally:
        for p in (here, there):
            await p.stop()
        for r in opened:
            await r.aclose()
