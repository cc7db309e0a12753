"""The room-channel manager of two nodes, in process, on the test's own Redis: what
each node subscribes to (read back with PUBSUB), and the manager's API across nodes
(an emit to a room, to a sid, to several rooms, skip_sid, leave_room, disconnect, a
callback). The servers are stand-ins that record what would go to each socket; the
chat flows over real processes are in test_scaleout.py and test_redis_faults.py."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import pytest
import redis.asyncio
import socketio

from syarah import jsonlib
from syarah.redis_link import RedisLink, client_options
from syarah.transport.channels import RoomChannels
from test_redis_faults import own_redis, until  # noqa: F401 (a fixture)

NS = "/"


class StandInServer:
    """What a manager asks of its python-socketio server: ids, packets, disconnects."""

    _ids = itertools.count(1)

    def __init__(self):
        self.packet_class = socketio.packet.Packet
        self.packet_class.json = jsonlib
        self.eio = self
        self.logger = None
        self.sent: dict[str, list] = {}
        self.manager = None

    def generate_id(self):
        return f"sid{next(self._ids)}"

    async def _send_eio_packet(self, eio_sid, pkt):
        self.sent.setdefault(eio_sid, []).append(
            pkt.data if isinstance(pkt.data, str) else bytes(pkt.data))

    async def _send_packet(self, eio_sid, pkt):
        self.sent.setdefault(eio_sid, []).append(pkt.encode())

    async def disconnect(self, sid, namespace=None, ignore_queue=False):
        self.manager.pre_disconnect(sid, namespace)
        await self.manager.disconnect(sid, namespace, ignore_queue=True)

    def events(self, eio_sid) -> list:
        return [jsonlib.loads(p[p.index("["):]) for p in self.sent.get(eio_sid, [])]


class Node:
    def __init__(self, url: str, prefix: str, mode: str, client=None):
        self.redis = client or redis.asyncio.from_url(url, **client_options())
        self.manager = RoomChannels(self.redis, RedisLink(), prefix=prefix, mode=mode)
        self.server = StandInServer()
        self.server.manager = self.manager
        self.manager.set_server(self.server)
        self.manager.initialize()

    async def connect(self, eio_sid: str) -> str:
        return await self.manager.connect(eio_sid, NS)

    async def close(self):
        await self.manager.stop()
        await self.redis.aclose()


@pytest.fixture(params=["sharded", "plain"])
async def two_nodes(request, own_redis):  # noqa: F811
    prefix = "syarah-ch-" + uuid.uuid4().hex[:8]
    nodes = [Node(own_redis.url, prefix, request.param) for _ in range(2)]
    probe = redis.asyncio.from_url(own_redis.url, **client_options())
    sharded = request.param == "sharded"

    async def subscribers() -> dict[str, int]:
        """channel (without the prefix) -> subscribers, for this deployment."""
        listed = await probe.execute_command(
            "PUBSUB", "SHARDCHANNELS" if sharded else "CHANNELS", prefix + ":*")
        if not listed:
            return {}
        counts = await probe.execute_command(
            "PUBSUB", "SHARDNUMSUB" if sharded else "NUMSUB", *listed)
        pairs = zip(counts[::2], counts[1::2]) if isinstance(counts, list) else counts.items()
        return {c.decode()[len(prefix) + 1:]: int(n) for c, n in pairs if int(n)}

    async def settled():
        return all(m.manager._node_channel in m.manager._live for m in nodes)
    assert await until(settled, 5) is not None
    yield nodes, subscribers
    for n in nodes:
        await n.close()
    await probe.aclose()


async def eventually(predicate, timeout: float = 5) -> bool:
    async def check():
        return predicate()
    return await until(check, timeout, step=0.02) is not None


async def test_a_node_subscribes_to_the_rooms_it_holds_sockets_in_and_no_other(two_nodes):
    (one, two), subscribers = two_nodes
    node_one = f"node:{one.manager.node_id}"
    node_two = f"node:{two.manager.node_id}"
    assert await subscribers() == {node_one: 1, node_two: 1}

    ann = await one.connect("eio-ann")
    await one.manager.enter_room(ann, NS, "user:ann")
    await one.manager.enter_room(ann, NS, "chat:1")
    # Confirmed by Redis before enter_room returned.
    assert await subscribers() == {node_one: 1, node_two: 1, "all:/": 1,
                                   f"room:{ann}": 1, "room:user:ann": 1, "room:chat:1": 1}

    bob = await two.connect("eio-bob")
    await two.manager.enter_room(bob, NS, "chat:1")
    assert (await subscribers())["room:chat:1"] == 2

    # The last local leave ends the subscription; another node's is not touched.
    await one.manager.leave_room(ann, NS, "chat:1")

    async def bob_alone():
        return (await subscribers()).get("room:chat:1") == 1
    assert await until(bob_alone, 5) is not None
    pre = one.manager.pre_disconnect(ann, NS)
    assert pre == "eio-ann"
    await one.manager.disconnect(ann, NS, ignore_queue=True)

    async def only_bob():
        return await subscribers() == {node_one: 1, node_two: 1, "all:/": 1,
                                       f"room:{bob}": 1, "room:chat:1": 1}
    assert await until(only_bob, 5) is not None, await subscribers()


async def test_emits_leaves_and_disconnects_reach_the_node_that_holds_the_socket(
        two_nodes, across_shards=False):
    (one, two), _ = two_nodes
    ann = await one.connect("eio-ann")
    bob = await two.connect("eio-bob")
    cat = await two.connect("eio-cat")
    for node, sid, room in ((one, ann, "chat:1"), (one, ann, "user:ann"),
                            (two, bob, "chat:1"), (two, cat, "chat:1")):
        await node.manager.enter_room(sid, NS, room)

    # A room emit: every member on both nodes but the one skipped, once each.
    await two.manager.emit("message", {"n": 1}, NS, room="chat:1", skip_sid=cat)
    assert await eventually(lambda: one.server.events("eio-ann"))
    assert two.server.events("eio-bob") == [["message", {"n": 1}]]
    assert two.server.events("eio-cat") == []
    # To a sid on the other node, and to several rooms (Ann is in both: one copy).
    await two.manager.emit("hello", "ann", NS, to=ann)
    await two.manager.emit("clientStatus", {"n": 2}, NS, to=["user:ann", "chat:1"])
    await two.manager.emit("last", None, NS, to=ann)
    assert await eventually(lambda: len(one.server.events("eio-ann")) == 4)
    heard = one.server.events("eio-ann")
    if across_shards:
        # A Redis Cluster keeps the order of one channel (Ann's own: hello, then last);
        # a channel on another shard reaches the node on another connection, so the
        # user channel's copy may come before or after them.
        assert heard[0] == ["message", {"n": 1}]
        assert [e for e in heard if e[0] != "clientStatus"] == [
            ["message", {"n": 1}], ["hello", "ann"], ["last"]]
        assert heard.count(["clientStatus", {"n": 2}]) == 1
    else:
        # One subscription connection: everything in the order it was emitted.
        assert heard == [
            ["message", {"n": 1}], ["hello", "ann"], ["clientStatus", {"n": 2}], ["last"]]
    # The node heard its own room emits come back, and skipped them unread.
    await one.manager.emit("mine", 1, NS, room="chat:1")
    assert await eventually(lambda: one.manager.skipped >= 1)
    assert await eventually(lambda: two.server.events("eio-cat")[-1:] == [["mine", 1]])
    assert one.server.events("eio-ann")[-1] == ["mine", 1]

    # A callback of an emit to a socket on the other node comes back to this one.
    answers = []
    await two.manager.emit("ask", "?", NS, to=ann, callback=lambda *a: answers.append(a))
    assert await eventually(lambda: len(one.server.sent["eio-ann"]) == 6)
    ask = one.server.sent["eio-ann"][-1]
    ack_id = int(ask[1:ask.index("[")])
    await one.manager.trigger_callback(ann, ack_id, ["yes"])
    assert await eventually(lambda: answers == [("yes",)])

    # leave_room of a sid on another node takes it out of the room there.
    await two.manager.leave_room(ann, NS, "chat:1")
    assert await eventually(lambda: "chat:1" not in one.manager.rooms[NS])
    await two.manager.emit("after", 1, NS, room="chat:1")
    await asyncio.sleep(0.2)
    assert one.server.events("eio-ann")[-1] == ["ask", "?"]
    # And a disconnect of it ends the socket there.
    assert await two.manager.can_disconnect(ann, NS) is False
    assert await eventually(lambda: not one.manager.is_connected(ann, NS))


async def test_the_subscriptions_come_back_with_a_restarted_redis(two_nodes, own_redis):  # noqa: F811
    (one, two), subscribers = two_nodes
    ann = await one.connect("eio-ann")
    bob = await two.connect("eio-bob")
    await one.manager.enter_room(ann, NS, "chat:1")
    await two.manager.enter_room(bob, NS, "chat:1")
    before = await subscribers()

    own_redis.kill()
    await two.manager.emit("down", 1, NS, room="chat:1")
    # Local delivery goes on; the publish is not tried once the link is known lost.
    assert two.server.events("eio-bob") == [["down", 1]]
    assert await eventually(lambda: not two.manager.link.up)
    # Joined while Redis is away: answered at once, subscribed once it is back.
    await one.manager.enter_room(ann, NS, "user:ann")
    own_redis.start()

    async def back():
        return await subscribers() == {**before, "room:user:ann": 1}
    assert await until(back, 10) is not None, await subscribers()
    assert await eventually(lambda: one.manager.link.up and two.manager.link.up)
    await two.manager.emit("up", 1, NS, room="chat:1")
    assert await eventually(lambda: one.server.events("eio-ann") == [["up", 1]])


async def test_emits_of_one_turn_leave_in_one_pipeline_in_order_without_waiting(two_nodes):
    (one, two), _ = two_nodes
    ann = await one.connect("eio-ann")
    bob = await two.connect("eio-bob")
    chats = [f"chat:{n}" for n in range(1, 6)]
    for room in chats:
        await one.manager.enter_room(ann, NS, room)
        await two.manager.enter_room(bob, NS, room)
    pipelines = []
    real_pipeline = one.redis.pipeline

    def counted(*args, **kwargs):
        pipelines.append(args)
        return real_pipeline(*args, **kwargs)
    one.redis.pipeline = counted

    # As a batch of stored messages is broadcast: chat after chat, in one turn.
    for n, room in enumerate(chats):
        await one.manager.emit("message", {"n": n}, NS, room=room)
    # Each emit returned with its copy for the other node queued, not yet sent,
    # and this node's own socket already had it.
    assert one.manager._publishes.waiting == len(chats)
    assert one.server.events("eio-ann") == [["message", {"n": n}] for n in range(5)]
    assert await eventually(lambda: len(two.server.events("eio-bob")) == len(chats))
    assert two.server.events("eio-bob") == [["message", {"n": n}] for n in range(5)]
    assert len(pipelines) == 1 and one.manager._publishes.waiting == 0


async def test_a_publish_to_a_redis_that_is_gone_is_reported_and_waits_no_longer():
    from conftest import free_port
    from syarah.redis_link import PublishQueue

    client = redis.asyncio.from_url(f"redis://127.0.0.1:{free_port()}", **client_options())
    heard = []
    queue = PublishQueue(client, heard.append)
    first = queue.put("PUBLISH", "nowhere", "one")
    second = queue.put("PUBLISH", "nowhere", "two")
    assert first is second and not first.done()
    await asyncio.wait_for(first, 10)
    assert len(heard) == 1 and isinstance(heard[0], (OSError, redis.exceptions.RedisError))
    assert queue.waiting == 0
    # The queue goes on after a failure: the next command is tried again.
    await asyncio.wait_for(queue.put("PUBLISH", "nowhere", "three"), 10)
    assert len(heard) == 2
    await client.aclose()
