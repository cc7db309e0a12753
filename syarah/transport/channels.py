"""Room emits between the nodes of a deployment on a Redis channel per room, so that
each node hears only the rooms it holds sockets in.

python-socketio's Redis manager puts every emit of the deployment on one channel that
every node reads and decodes, whether or not it holds a socket of the room: each node
added makes every node do more. Here a room emit is published on that room's channel
only, and a node is subscribed exactly to the rooms where it holds a socket: the chat
rooms its sockets joined, its users' personal rooms, and the sid of each socket (in
python-socketio a sid is a room too, so an emit, a disconnect or a room change aimed at
one socket reaches the one node that holds it and no other). A sid is a room like any
other, so it needs no sid-to-node map in Redis: no key to write at connect, renew while
the socket lives, and read before each emit; a crashed node's subscriptions end with
its connection.

On Redis 7 and later the channels are sharded (SPUBLISH / SSUBSCRIBE): in a cluster a
message goes to the shard that owns the room's slot only, and the rooms' channels
(which carry no hash tag) spread over the shards. There the node holds one
subscription connection per shard it listens on, each read and pinged on its own;
any of them lost, or a publish refused, and the node starts its subscription over
(while that lasts Redis counts as away). Elsewhere they are plain channels.

The first local join of a room waits for Redis to confirm the subscription, so an emit
made after the join was answered reaches the socket. Leaving the last socket of a room
unsubscribes from it. While Redis is away local delivery goes on and nothing is
published; within a second of Redis answering again the node subscribes to every room
it serves and emits cross again.

Messages are JSON: a header and the Socket.IO packet as it is sent to clients, encoded
once by the node that emits, so a receiving node writes it to its sockets without
decoding it. A node skips its own messages, which come back on the rooms where it
holds sockets.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import uuid

import socketio

from syarah import jsonlib, metrics
from syarah.redis_link import (REDIS_TROUBLE, RETRY_SECONDS, PublishQueue, RedisLink,
                               is_cluster, text)
from syarah.transport.sockets import DirectEmit

log = logging.getLogger("syarah.channels")

# How long a first join waits for Redis to confirm its subscription before it is
# answered anyway (the subscription stays asked for, and is retried with the link).
CONFIRM_SECONDS = 2.0
# Channels in one SUBSCRIBE command when a whole node subscribes again.
BATCH = 500
# Seconds without a word from Redis on the subscription after which it is pinged; a
# ping unanswered by the next such look means the link is gone.
QUIET_SECONDS = 5.0

MODES = ("auto", "sharded", "plain")


MANAGERS = ("rooms", "broadcast")


def check_settings(manager: str, pubsub: str) -> None:
    """Refuse unknown values at start, before anything is opened."""
    if manager not in MANAGERS:
        raise ValueError(f"redis_manager must be one of {', '.join(MANAGERS)}, "
                         f"not {manager!r}")
    if pubsub not in MODES:
        raise ValueError(f"redis_pubsub must be one of {', '.join(MODES)}, not {pubsub!r}")


def check_cluster_settings(manager: str, pubsub: str) -> None:
    """What a Redis Cluster cannot carry, refused at start. A plain channel (and
    python-socketio's one channel) is copied to every shard of a cluster: each shard
    would carry every emit of the deployment, which is what sharded channels avoid."""
    if manager == "broadcast":
        raise ValueError("redis_manager broadcast cannot run on a Redis Cluster: its one "
                         "channel would reach every shard with every emit; use "
                         "redis_manager rooms (the default)")
    if pubsub == "plain":
        raise ValueError("redis_pubsub plain cannot run on a Redis Cluster: every plain "
                         "message is copied to every shard; use sharded or auto")


async def pick_mode(redis, wanted: str) -> str:
    """``sharded`` where Redis has SPUBLISH (7.0 and later; Valkey says 7.2 too),
    else ``plain``; a forced mode is taken as it is. A cluster is sharded."""
    if is_cluster(redis):
        return "sharded"
    if wanted != "auto":
        return wanted
    version = (await redis.info("server")).get("redis_version", "0")
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        major = 0
    return "sharded" if major >= 7 else "plain"


class RoomChannels(DirectEmit, socketio.AsyncManager):
    """A python-socketio client manager with a Redis channel per room.

    ``redis`` is the node's pooled client (it publishes, and gives the subscription
    its connection); ``link`` is the node's RedisLink, shared with presence."""

    name = "syarah-rooms"

    def __init__(self, redis, link: RedisLink, prefix: str = "syarah",
                 mode: str = "sharded"):
        super().__init__()
        self.redis = redis
        self.link = link
        self.prefix = prefix
        self.sharded = mode == "sharded"
        self.node_id = uuid.uuid4().hex[:12]
        # Every message starts with this node's id, so that its own are skipped
        # before they are parsed.
        self._own = jsonlib.dumps({"node": self.node_id})[:-1].encode() + b","
        self._publish_cmd = "SPUBLISH" if self.sharded else "PUBLISH"
        self._publishes = PublishQueue(redis, self._publish_failed)
        self._node_channel = f"{prefix}:node:{self.node_id}"
        # Subscriptions: what the rooms held call for, what has been asked of Redis
        # on the current connection, and what Redis has confirmed.
        self._wanted: set[str] = {self._node_channel}
        self._asked: set[str] = set()
        self._live: set[str] = set()
        self._in_flight: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future]] = {}
        self._changed: set[str] = set()
        self._wake = asyncio.Event()
        self._cluster = is_cluster(redis)
        self._shards: dict[str, _Shard] = {}
        self._failed: asyncio.Future | None = None
        # Sharded unsubscriptions sent and not yet confirmed, by channel.
        self._leaving: dict[str, int] = {}
        self._connected = False
        self._ready = False
        self._tasks: list[asyncio.Task] = []
        self._chores: set[asyncio.Task] = set()
        # Callbacks of emits sent to a socket on another node, by the id given.
        self._remote_callbacks: dict[int, object] = {}
        self._next_callback = 0
        # This node's own messages skipped (other nodes' are counted by the metric).
        self.skipped = 0

    # -- channels ------------------------------------------------------------------

    def channel(self, namespace: str, room) -> str:
        if room is None:
            return f"{self.prefix}:all:{namespace}"
        if namespace == "/":
            return f"{self.prefix}:room:{room}"
        return f"{self.prefix}:room:{namespace}:{room}"

    def channels_live(self) -> int:
        """Channels Redis has confirmed on the current subscription."""
        return len(self._live)

    # -- room membership: what to subscribe to --------------------------------------

    def basic_enter_room(self, sid, namespace, room, eio_sid=None):
        new = room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if new:
            self._want(self.channel(namespace, room))

    def basic_leave_room(self, sid, namespace, room):
        super().basic_leave_room(sid, namespace, room)
        if room not in self.rooms.get(namespace, {}):
            self._unwant(self.channel(namespace, room))

    def _want(self, channel: str) -> None:
        self._wanted.add(channel)
        self._changed.add(channel)
        self._wake.set()

    def _unwant(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._changed.add(channel)
        self._wake.set()

    async def _until_subscribed(self, channel: str) -> None:
        """Until Redis has confirmed the subscription to ``channel``; at once while
        Redis is away (the subscription follows when it is back)."""
        if channel in self._live or not self._connected or not self.link.up:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, CONFIRM_SECONDS)
        except asyncio.TimeoutError:
            log.warning("Redis did not confirm the subscription to %s within %.0fs",
                        channel, CONFIRM_SECONDS)
        finally:
            waiters = self._waiters.get(channel)
            if waiters and waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._waiters[channel]

    # -- the manager's API ---------------------------------------------------------

    def initialize(self):
        """Called by python-socketio before its first request, and by the node at its
        start (subscribed before the first connection); the second call does nothing."""
        super().initialize()
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(self._subscription())]

    async def stop(self):
        # What was emitted before still goes out to the other nodes.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._publishes.drain(), CONFIRM_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []

    async def enter_room(self, sid, namespace, room, eio_sid=None):
        if not self._here(sid, namespace):
            return await self._publish(self.channel(namespace, sid), {
                "m": "enter_room", "ns": namespace, "sid": sid, "room": room})
        await super().enter_room(sid, namespace, room, eio_sid=eio_sid)
        await self._until_subscribed(self.channel(namespace, room))

    async def leave_room(self, sid, namespace, room):
        if not self._here(sid, namespace):
            return await self._publish(self.channel(namespace, sid), {
                "m": "leave_room", "ns": namespace, "sid": sid, "room": room})
        return await super().leave_room(sid, namespace, room)

    async def can_disconnect(self, sid, namespace):
        if self._here(sid, namespace):
            return await super().can_disconnect(sid, namespace)
        await self._publish(self.channel(namespace, sid), {
            "m": "disconnect", "ns": namespace, "sid": sid})
        return False

    async def close_room(self, room, namespace):
        await super().close_room(room, namespace)
        await self._publish(self.channel(namespace, room), {
            "m": "close_room", "ns": namespace, "room": room})

    async def emit(self, event, data, namespace=None, room=None, skip_sid=None,
                   callback=None, to=None, ignore_queue=False, **kwargs):
        namespace = namespace or "/"
        room = to or room
        if ignore_queue:
            return await super().emit(event, data, namespace, room=room,
                                      skip_sid=skip_sid, callback=callback)
        if callback is not None:
            return await self._emit_with_callback(event, data, namespace, room, callback)
        encoded = self.encode_event(event, data, namespace)
        if namespace in self.rooms:
            await self.deliver(namespace, room, skip_sid, self.eio_packets(encoded))
        if isinstance(room, str) and self.is_sid_room(namespace, room):
            return      # a socket of this node: no other has it
        rooms = room if isinstance(room, list) else [room]
        if skip_sid is not None and not isinstance(skip_sid, list):
            skip_sid = [skip_sid]
        message = {"m": "emit", "ns": namespace, "rooms": rooms, "at": 0,
                   "skip": skip_sid, "p": _wire(encoded)}
        if len(rooms) == 1:
            return await self._send([(self.channel(namespace, rooms[0]),
                                      self._text(message))], wait=False)
        # One copy on each room's channel, each saying which of the rooms it is for:
        # a node with a socket in several of them delivers to it from the first only.
        copies = []
        for i, r in enumerate(rooms):
            message["at"] = i
            copies.append((self.channel(namespace, r), self._text(message)))
        await self._send(copies, wait=False)

    async def _emit_with_callback(self, event, data, namespace, room, callback):
        # python-socketio supports a callback for an emit to one socket.
        if self._here(room, namespace):
            return await socketio.AsyncManager.emit(
                self, event, data, namespace, room=room, callback=callback)
        self._next_callback += 1
        key = self._next_callback
        if len(self._remote_callbacks) < 10_000:
            self._remote_callbacks[key] = callback
        await self._publish(self.channel(namespace, room), {
            "m": "emit", "ns": namespace, "rooms": [room], "at": 0, "event": event,
            "data": data if not isinstance(data, tuple) else list(data),
            "tuple": isinstance(data, tuple), "cb": [self.node_id, key]})

    def _background(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _here(self, sid, namespace) -> bool:
        return self.is_connected(sid, namespace) or self.is_pre_connected(sid, namespace)

    # -- publishing ----------------------------------------------------------------

    def _text(self, message: dict) -> str:
        return jsonlib.dumps({"node": self.node_id, **message})

    async def _publish(self, channel: str, message: dict) -> None:
        await self._send([(channel, self._text(message))])

    async def _send(self, copies: list[tuple[str, str]], wait: bool = True) -> None:
        """Publish each (channel, text). A room emit does not ``wait`` for Redis to
        have it (see PublishQueue); a change of rooms, a disconnect or a reply does, so
        that what the caller does next comes after it."""
        # While Redis is away nothing is tried: it cannot succeed, and the reply
        # that waits on it would be held up.
        if not self.link.up or not copies:
            return
        for channel, data in copies:
            sent = self._publishes.put(self._publish_cmd, channel, data)
        if wait or self._publishes.full:
            await sent

    def _publish_failed(self, exc: BaseException) -> None:
        self.link.lost(exc, "channels")
        self._fail(exc)

    # -- the subscription ----------------------------------------------------------

    async def _subscription(self):
        """Keep the node subscribed to what its rooms call for, and hand what is
        heard on to its sockets; after a lost connection, start over every second."""
        while True:
            keeper = None
            try:
                await self._connect()
                keeper = asyncio.ensure_future(self._keep_subscribed())
                done, _ = await asyncio.wait([keeper, self._failed],
                                             return_when=asyncio.FIRST_COMPLETED)
                await _end([keeper])
                for task in done:
                    task.result()
            except asyncio.CancelledError:
                await _end([keeper] if keeper else [])
                await self._disconnect()
                raise
            except REDIS_TROUBLE as exc:
                self.link.lost(exc, "channels")
            except Exception:
                log.exception("the subscription to the room channels failed")
            await self._disconnect()
            await asyncio.sleep(RETRY_SECONDS)

    async def _connect(self):
        self._failed = asyncio.get_running_loop().create_future()
        self._shards = {}
        self._asked.clear()
        self._live.clear()
        self._in_flight.clear()
        self._leaving.clear()
        self._changed = set(self._wanted)
        self._connected = True
        self._ready = False
        await self._sync()
        # Every shard took its subscriptions: the link may count as back.
        self._ready = True
        if self._node_channel in self._live:
            self.link.back("channels")

    def _fail(self, exc: BaseException) -> None:
        """The subscription starts over (a reader lost its shard, or a publish failed:
        that shard's subscriptions are likely gone too)."""
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    async def _disconnect(self):
        self._connected = False
        self._ready = False
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        shards, self._shards = self._shards, {}
        await _end([s.reader for s in shards.values() if s.reader is not None])
        for shard in shards.values():
            with contextlib.suppress(Exception):
                await shard.pubsub.aclose()
            if shard.client is not None:
                with contextlib.suppress(Exception):
                    await shard.client.aclose()
        failed, self._failed = self._failed, None
        if failed is not None and failed.done():
            failed.exception()      # seen: no "never retrieved" warning

    def _shard(self, channel: str) -> "_Shard":
        """The subscription connection for ``channel``: the one connection on a single
        Redis; on a cluster, one per primary, to the one owning the channel's slot
        (SSUBSCRIBE is served by that shard only)."""
        node = self.redis.get_node_from_key(channel) if self._cluster else None
        name = node.name if node is not None else ""
        shard = self._shards.get(name)
        if shard is None:
            if node is None:
                shard = _Shard(self.redis.pubsub(ignore_subscribe_messages=False))
            else:
                import redis.asyncio

                # A client of its own on that node, with the cluster's connection
                # settings: its reader and its pings see that shard alone.
                client = redis.asyncio.Redis(connection_pool=redis.asyncio.ConnectionPool(
                    connection_class=node.connection_class, **node.connection_kwargs))
                shard = _Shard(client.pubsub(ignore_subscribe_messages=False), client)
            self._shards[name] = shard
        return shard

    def _batches(self, channels):
        """(shard, channels) to send in one command: on a cluster a command's channels
        must share a slot."""
        groups: dict = {}
        for c in channels:
            groups.setdefault(self.redis.keyslot(c) if self._cluster else None, []).append(c)
        for group in groups.values():
            shard = self._shard(group[0])
            for i in range(0, len(group), BATCH):
                yield shard, group[i:i + BATCH]

    async def _keep_subscribed(self):
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._sync()

    async def _sync(self):
        """Ask Redis for what changed since the last time: subscribe to rooms now held,
        unsubscribe from rooms left."""
        changed, self._changed = self._changed, set()
        on = [c for c in changed if c in self._wanted and c not in self._asked]
        off = [c for c in changed if c not in self._wanted and c in self._asked]
        for shard, batch in self._batches(off):
            self._asked.difference_update(batch)
            self._live.difference_update(batch)
            if self.sharded:
                for c in batch:
                    self._leaving[c] = self._leaving.get(c, 0) + 1
                await shard.pubsub.sunsubscribe(*batch)
            else:
                await shard.pubsub.unsubscribe(*batch)
        for shard, batch in self._batches(on):
            self._asked.update(batch)
            for c in batch:
                self._in_flight[c] = self._in_flight.get(c, 0) + 1
            if self.sharded:
                await shard.pubsub.ssubscribe(*batch)
            else:
                await shard.pubsub.subscribe(*batch)
            if shard.reader is None:
                # Its connection is open now.
                shard.reader = asyncio.ensure_future(self._read(shard))

    async def _read(self, shard: "_Shard"):
        try:
            await self._read_on(shard.pubsub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc)

    async def _read_on(self, pubsub):
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=QUIET_SECONDS)
            if message is None:
                if pinged:
                    raise ConnectionError("Redis did not answer a ping on the subscription")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = text(message["type"])
            if kind in ("smessage", "message"):
                await self._heard(message["data"])
            elif kind in ("ssubscribe", "subscribe"):
                self._confirmed(text(message["channel"]))
            elif kind == "sunsubscribe":
                self._left(text(message["channel"]))

    def _left(self, channel: str) -> None:
        left = self._leaving.get(channel, 0)
        if left > 1:
            self._leaving[channel] = left - 1
        elif left == 1:
            del self._leaving[channel]
        elif channel in self._asked:
            # Not asked for: the shard no longer owns the channel's slot (it moved to
            # another shard, or a replica took over). Subscribe again where it is now.
            raise ConnectionError(f"Redis ended the subscription to {channel}")

    def _confirmed(self, channel: str) -> None:
        left = self._in_flight.get(channel, 1) - 1
        if left > 0:
            self._in_flight[channel] = left
            return
        self._in_flight.pop(channel, None)
        if channel not in self._asked:
            return      # left again before Redis confirmed
        self._live.add(channel)
        if channel == self._node_channel and self._ready:
            # The subscription stands again: emits may cross.
            self.link.back("channels")
        for waiter in self._waiters.pop(channel, ()):
            if not waiter.done():
                waiter.set_result(None)

    # -- what other nodes send -----------------------------------------------------

    async def _heard(self, data) -> None:
        if isinstance(data, str):
            data = data.encode()    # a client made with decode_responses
        if data.startswith(self._own):
            self.skipped += 1
            return
        metrics.NODE_MESSAGES.inc()
        try:
            message = jsonlib.loads(data)
            method = message["m"]
            namespace = message.get("ns", "/")
            if method == "emit":
                await self._heard_emit(message, namespace)
            elif method == "callback":
                await self._heard_callback(message)
            elif method == "disconnect":
                if self._here(message["sid"], namespace):
                    # The disconnect handler may take a while (the store): the reading
                    # of the other rooms' messages does not wait for it.
                    self._background(self.server.disconnect(
                        message["sid"], namespace=namespace, ignore_queue=True))
            elif method == "enter_room":
                if self._here(message["sid"], namespace):
                    # Not waiting for the subscription: its confirmation comes through
                    # this very reader.
                    await socketio.AsyncManager.enter_room(
                        self, message["sid"], namespace, message["room"])
            elif method == "leave_room":
                if self._here(message["sid"], namespace):
                    await self.leave_room(message["sid"], namespace, message["room"])
            elif method == "close_room":
                await socketio.AsyncManager.close_room(self, message["room"], namespace)
        except Exception:
            log.exception("a message from another node could not be handled")

    async def _heard_emit(self, message, namespace) -> None:
        rooms, at = message["rooms"], message["at"]
        if namespace not in self.rooms:
            return
        callback = message.get("cb")
        if callback is not None:
            data = message["data"]
            if message.get("tuple"):
                data = tuple(data)
            node, key = callback

            async def answer(*args):
                await self._publish(f"{self.prefix}:node:{node}",
                                    {"m": "callback", "key": key, "args": list(args)})
            event = message["event"]
            await socketio.AsyncManager.emit(self, event, data, namespace,
                                             room=rooms[at], callback=answer)
            return
        await self.deliver(namespace, rooms[at], message.get("skip"),
                           self.eio_packets(_unwire(message["p"])), besides=rooms[:at])

    async def _heard_callback(self, message) -> None:
        callback = self._remote_callbacks.pop(message["key"], None)
        if callback is not None:
            result = callback(*message["args"])
            if asyncio.iscoroutine(result):
                await result


class _Shard:
    """One subscription connection, and the task reading it."""

    def __init__(self, pubsub, client=None):
        self.pubsub = pubsub
        self.client = client
        self.reader: asyncio.Task | None = None


async def _end(tasks) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(BaseException):
            await task


def _wire(encoded: list) -> list:
    """An encoded packet as JSON: its text, then its binary attachments in base64."""
    return [encoded[0], *(base64.b64encode(a).decode() for a in encoded[1:])]


def _unwire(parts: list) -> list:
    return [parts[0], *(base64.b64decode(a) for a in parts[1:])]

