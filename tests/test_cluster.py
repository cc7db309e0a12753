"""Two nodes of one deployment on a Redis Cluster of the test's own (three primaries on
free loopback ports, no replicas, killed by pid): messages, personal rooms and group
removals across the nodes with the real JavaScript client, where the keys and the
channels live, the socket cap across the nodes, a shard killed -9 and brought back,
and what a cluster refuses at start. MariaDB is the store (the nodes share it)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

from conftest import IN_CI, ServerProcess, User, free_port, register
from test_js_client import node_or_skip
from test_limits_nodes import FLAGS, cap_holds_on_both, together_at_most_the_cap
from syarah.redis_link import key_base, open_client
from test_redis_faults import (REDIS_SERVER, OwnRedis, assert_acked_stored, deployment,
                               metric, outage_during_traffic, until)
import test_room_channels
from test_room_channels import Node as ChannelNode
from test_scaleout import javascript_client_on

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
SHARDS = 3
DOWN_SECONDS = 3


def bus_free_port() -> int:
    """A free port whose cluster bus port (10000 above it) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


class OwnCluster:
    """Three redis-server primaries in cluster mode, their slots given out by
    ``redis-cli --cluster create``. ``kill(i)`` is kill -9 of one shard; ``restart(i)``
    brings it back on its port with its nodes file, and the cluster heals."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="syarah-cluster-")
        # A short node timeout: a shard down for seconds is failed by the others, so
        # the cluster as a whole goes down and comes back within the test.
        self.shards = [OwnRedis("--cluster-enabled", "yes", "--cluster-config-file",
                                os.path.join(self.dir, "nodes-{port}.conf"),
                                "--cluster-node-timeout", "1000", folder=self.dir,
                                port=bus_free_port())
                       for _ in range(SHARDS)]
        self.url = f"redis://127.0.0.1:{self.shards[0].port}/0"

    def start(self) -> "OwnCluster":
        for shard in self.shards:
            shard.start()
        subprocess.run([REDIS_CLI, "--cluster", "create",
                        *(f"127.0.0.1:{s.port}" for s in self.shards),
                        "--cluster-replicas", "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        self.wait_ok()
        return self

    def info(self, shard) -> str:
        return subprocess.run([REDIS_CLI, "-p", str(shard.port), "cluster", "info"],
                              capture_output=True, text=True, timeout=10).stdout

    def wait_ok(self, timeout: float = 30) -> float:
        began = time.monotonic()
        while time.monotonic() - began < timeout:
            if all("cluster_state:ok" in self.info(s) for s in self.shards):
                return time.monotonic() - began
            time.sleep(0.1)
        raise RuntimeError("the cluster did not reach cluster_state:ok: "
                           + self.info(self.shards[0]))

    def client(self, shard):
        import redis
        return redis.Redis(port=shard.port, socket_connect_timeout=2)

    def owner(self, name: str):
        """The shard that owns the slot of ``name`` (a key or a channel)."""
        import redis.cluster
        probe = redis.cluster.RedisCluster(host="127.0.0.1", port=self.shards[0].port)
        try:
            port = probe.get_node_from_key(name).port
        finally:
            probe.close()
        return next(s for s in self.shards if s.port == port)

    def kill(self, shard) -> None:
        shard.kill()

    def restart(self, shard) -> None:
        shard.start()

    def stop(self) -> None:
        for shard in self.shards:
            shard.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def own_cluster():
    missing = [p for p in (REDIS_SERVER, REDIS_CLI) if not os.path.exists(p)]
    if missing:
        if IN_CI:
            pytest.fail(f"{', '.join(missing)} required in CI")
        pytest.skip(f"{', '.join(missing)} not installed")
    cluster = OwnCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture
def prefix():
    return "syarah-cl-" + uuid.uuid4().hex[:8]


@pytest.fixture
def cluster_nodes(own_cluster, make_server, prefix):
    node, cleanup = deployment(make_server, own_cluster.url, prefix)
    yield node
    cleanup()


async def test_two_nodes_on_a_cluster_with_the_javascript_client(cluster_nodes):
    """tests/js/nodes.test.js: Bob's arrival reaches Ann's personal room on the other
    node, a chat room both ways, a group member removed while on the other node."""
    node_or_skip()
    one, two = cluster_nodes(), cluster_nodes()
    assert "on a Redis Cluster of 3 shards" in one.log()
    await javascript_client_on(one, two)


async def test_keys_share_one_slot_and_room_channels_spread(cluster_nodes, own_cluster,
                                                            prefix, clients):
    one, two = cluster_nodes(), cluster_nodes()
    people = [User((one, two)[i % 2], f"P{i}") for i in range(6)]
    await register(*people)
    sockets = [await clients(p) for p in people]
    for i in range(0, 6, 2):
        chat = (await sockets[i].call("joinRoom", {"otherUserId": people[i + 1].id}))
        assert (await sockets[i + 1].call("joinRoom", {"chatHeaderId": chat["chatHeaderId"]}
                                          ))["joined"] is True
    keys, channels = {}, {}
    for shard in own_cluster.shards:
        r = own_cluster.client(shard)
        keys[shard.port] = [k.decode() for k in r.scan_iter(match=f"*{prefix}*")]
        channels[shard.port] = [c.decode() for c in
                                r.execute_command("PUBSUB", "SHARDCHANNELS", f"{prefix}:*")]
        r.close()
    # Every key of the deployment under its hash tag, on the shard owning that slot.
    holding = [port for port, k in keys.items() if k]
    assert holding == [own_cluster.owner("{" + prefix + "}").port], keys
    assert all(k.startswith("{" + prefix + "}:") for k in keys[holding[0]]), keys
    assert f"{{{prefix}}}:nodes" in keys[holding[0]]
    # The rooms' channels (6 users, 6 sids, 3 chats, 2 nodes) spread over the shards.
    assert sum(len(c) for c in channels.values()) >= 17, channels
    assert sum(1 for c in channels.values() if c) == SHARDS, channels


async def test_the_socket_cap_holds_across_nodes_on_a_cluster(cluster_nodes, clients):
    flags = (*FLAGS, "--xheaders")
    await cap_holds_on_both(cluster_nodes(*flags), cluster_nodes(*flags), clients)


async def test_connects_arriving_together_on_two_nodes_pass_the_cap_at_most(cluster_nodes):
    flags = ("--max-sockets-per-user=2", "--xheaders")
    await together_at_most_the_cap(cluster_nodes(*flags), cluster_nodes(*flags))


async def test_a_shard_killed_and_restarted_during_traffic(cluster_nodes, own_cluster,
                                                           prefix, clients):
    """Ann on one node writes to Bob on the other while the shard owning their chat's
    channel is killed -9 and restarted: every acked message is stored, and delivery
    across the nodes comes back once the cluster is whole again."""
    one, two = cluster_nodes(), cluster_nodes()
    killed = []

    def kill(run):
        killed.append(own_cluster.owner(f"{prefix}:room:chat:{run.chat_id}"))
        own_cluster.kill(killed[0])

    async def meanwhile(run):
        return metric(one, "syarah_redis_up")

    async def restart():
        own_cluster.restart(killed[0])
        return await asyncio.to_thread(own_cluster.wait_ok)
    run = await outage_during_traffic(one, two, clients, kill, meanwhile, restart,
                                      seconds=DOWN_SECONDS)
    print(f"\nshard down {DOWN_SECONDS} s: {run.acked_while_down} messages acked on node "
          f"one; cluster ok {run.mended:.2f} s after the restart; cross-node delivery "
          f"back {run.delivery and round(run.delivery, 2)} s after that, presence "
          f"{run.presence and round(run.presence, 2)} s; replies {run.codes}")
    assert run.seen == 0
    assert run.codes == ["ok"], run.during
    assert run.delivery is not None and run.presence is not None
    assert metric(one, "syarah_redis_up") == 1 and metric(two, "syarah_redis_up") == 1
    await assert_acked_stored(run.b, run.chat_id, run.sender)
    assert "Traceback" not in one.log() + two.log()


@pytest.mark.parametrize("flag, words", [
    ("--redis-manager=broadcast", "redis_manager broadcast cannot run on a Redis Cluster"),
    ("--redis-pubsub=plain", "redis_pubsub plain cannot run on a Redis Cluster"),
])
async def test_what_a_cluster_cannot_carry_is_refused_at_start(own_cluster, flag, words):
    folder = tempfile.mkdtemp(prefix="syarah-test-")
    srv = ServerProcess(f"sqlite:///{folder}/chat.db", f"--redis-url={own_cluster.url}",
                        flag)
    with pytest.raises(RuntimeError, match="exited early"):
        srv.start()
    assert srv.proc.wait(10) == 2
    assert words in srv.log(), srv.log()[-2000:]


async def test_the_room_channel_manager_across_the_shards(own_cluster, prefix):
    """In process, test_room_channels' emits, leaves, disconnects and callback between
    two managers, their channels on three shards (an emit to several rooms is one
    SPUBLISH pipeline over several shards)."""
    nodes = [ChannelNode(own_cluster.url, prefix, "sharded",
                         client=await open_client(own_cluster.url)) for _ in range(2)]
    try:
        assert all(n.manager._cluster for n in nodes)

        async def settled():
            return all(n.manager._node_channel in n.manager._live for n in nodes)
        assert await until(settled, 5) is not None
        await test_room_channels.\
            test_emits_leaves_and_disconnects_reach_the_node_that_holds_the_socket(
                (nodes, None), across_shards=True)
        # Rooms enough that their channels fall on every shard (all 30 missing one of
        # the three has a chance of 3 in 100,000): each node listens on all three.
        for n in nodes:
            sid = await n.connect("eio-many")
            for room in range(30):
                await n.manager.enter_room(sid, test_room_channels.NS, f"chat:{room}")
            assert len({n.manager._shards[s].client.connection_pool
                        .connection_kwargs["port"] for s in n.manager._shards}) == SHARDS
    finally:
        for n in nodes:
            await n.close()


def test_the_key_head_is_a_hash_tag_on_a_cluster_only():
    assert key_base("syarah", cluster=True) == "{syarah}"
    assert key_base("syarah", cluster=False) == "syarah"
    # A prefix that chose its own tag keeps it.
    assert key_base("{chat}:eu", cluster=True) == "{chat}:eu"
