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
message goes to the shard that owns the room's slot only. Elsewhere they are plain
channels.

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
from syarah.redis_link import REDIS_TROUBLE, RETRY_SECONDS, RedisLink
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


async def pick_mode(redis, wanted: str) -> str:
    """``sharded`` where Redis has SPUBLISH (7.0 and later; Valkey says 7.2 too),
    else ``plain``; a forced mode is taken as it is."""
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
        self._pubsub = None
        self._connected = False
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
            return await self._publish(self.channel(namespace, rooms[0]), message)
        # One copy on each room's channel, each saying which of the rooms it is for:
        # a node with a socket in several of them delivers to it from the first only.
        copies = []
        for i, r in enumerate(rooms):
            message["at"] = i
            copies.append((self.channel(namespace, r), self._text(message)))
        await self._send(copies)

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

    async def _send(self, copies: list[tuple[str, str]]) -> None:
        # While Redis is away nothing is tried: it cannot succeed, and the reply
        # that waits on it would be held up.
        if not self.link.up:
            return
        try:
            if len(copies) == 1:
                await self.redis.execute_command(self._publish_cmd, *copies[0])
                return
            async with self.redis.pipeline(transaction=False) as p:
                for channel, text in copies:
                    p.execute_command(self._publish_cmd, channel, text)
                await p.execute()
        except REDIS_TROUBLE as exc:
            self.link.lost(exc)

    # -- the subscription ----------------------------------------------------------

    async def _subscription(self):
        """Keep the node subscribed to what its rooms call for, and hand what is
        heard on to its sockets; after a lost connection, start over every second."""
        while True:
            tasks = []
            try:
                await self._connect()
                tasks = [asyncio.ensure_future(self._read()),
                         asyncio.ensure_future(self._keep_subscribed())]
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                await _end(tasks)
                for task in done:
                    task.result()
            except asyncio.CancelledError:
                await _end(tasks)
                await self._disconnect()
                raise
            except REDIS_TROUBLE as exc:
                self.link.lost(exc)
            except Exception:
                log.exception("the subscription to the room channels failed")
            await self._disconnect()
            await asyncio.sleep(RETRY_SECONDS)

    async def _connect(self):
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=False)
        self._asked.clear()
        self._live.clear()
        self._in_flight.clear()
        self._changed = set(self._wanted)
        self._connected = True
        await self._sync()

    async def _disconnect(self):
        self._connected = False
        for waiters in self._waiters.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

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
        sub, unsub = ((self._pubsub.ssubscribe, self._pubsub.sunsubscribe) if self.sharded
                      else (self._pubsub.subscribe, self._pubsub.unsubscribe))
        for i in range(0, len(off), BATCH):
            batch = off[i:i + BATCH]
            self._asked.difference_update(batch)
            self._live.difference_update(batch)
            await unsub(*batch)
        for i in range(0, len(on), BATCH):
            batch = on[i:i + BATCH]
            self._asked.update(batch)
            for c in batch:
                self._in_flight[c] = self._in_flight.get(c, 0) + 1
            await sub(*batch)

    async def _read(self):
        pinged = False
        while True:
            message = await self._pubsub.get_message(timeout=QUIET_SECONDS)
            if message is None:
                if pinged:
                    raise ConnectionError("Redis did not answer a ping on the subscription")
                await self._pubsub.ping()
                pinged = True
                continue
            pinged = False
            kind = message["type"]
            if kind in (b"smessage", b"message", "smessage", "message"):
                await self._heard(message["data"])
            elif kind in ("ssubscribe", "subscribe", b"ssubscribe", b"subscribe"):
                self._confirmed(_str(message["channel"]))

    def _confirmed(self, channel: str) -> None:
        left = self._in_flight.get(channel, 1) - 1
        if left > 0:
            self._in_flight[channel] = left
            return
        self._in_flight.pop(channel, None)
        if channel not in self._asked:
            return      # left again before Redis confirmed
        self._live.add(channel)
        if channel == self._node_channel:
            # The subscription stands again: emits may cross.
            self.link.back()
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


def _str(value) -> str:
    return value.decode() if isinstance(value, bytes) else value
