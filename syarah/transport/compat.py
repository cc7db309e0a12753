"""Every use of a private part of python-socketio, python-engineio or Tornado.

The libraries offer no public way to do what these functions do; each one says what
it relies on, and tests/test_compat.py fails by name when an upgrade changes one of
them. Nothing else in the project reaches into the libraries' internals.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import logging
import socket as _socket

import engineio.async_drivers.tornado as tornado_driver
import engineio.async_socket
import engineio.exceptions
import engineio.packet
import engineio.payload
import socketio
import socketio.packet
from tornado.iostream import StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketClosedError

from syarah.redis_link import REDIS_TROUBLE, RETRY_SECONDS, PublishQueue, RedisLink

log = logging.getLogger("syarah.transport")


# -- python-socketio ---------------------------------------------------------------

# Whether the client asked for an ack: python-socketio does not pass the packet id to
# event handlers, so AckAware records it for the task that handles the event.
ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ack_requested", default=True)


class AckAware:
    """Mixin for socketio.AsyncServer. Relies on: AsyncServer._handle_event_internal
    (server, sid, eio_sid, data, namespace, id), called in the task that runs the
    event handler; a DirectSocket's _ws (python-engineio's WebSocket wrapper, with
    its tornado_handler) set while its WebSocket is read."""

    async def _handle_event_internal(self, server, sid, eio_sid, data, namespace, id):
        ack_requested.set(id is not None)
        ws = getattr(self.eio.sockets.get(eio_sid), "_ws", None)
        ahead = getattr(ws.tornado_handler, "ahead_since", None) if ws is not None else None
        ahead_since.set(ahead() if ahead is not None else None)
        return await super()._handle_event_internal(
            server, sid, eio_sid, data, namespace, id)


class DecodeGuard:
    """Mixin for socketio.AsyncServer: a packet that cannot be decoded at all (broken
    JSON, no event name, an unknown packet type) closes its connection with a warning,
    as an oversized one does. python-socketio would let the ValueError out, and
    python-engineio would log it with a traceback and keep the connection open.
    Relies on: AsyncServer._handle_eio_message(eio_sid, data)."""

    async def _handle_eio_message(self, eio_sid, data):
        try:
            return await super()._handle_eio_message(eio_sid, data)
        except ValueError as exc:
            # Event handlers answer their own errors, so a ValueError here comes
            # from reading the packet.
            log.warning("closing connection %s: unreadable packet (%s)", eio_sid, exc)
            socket = self.eio.sockets.get(eio_sid)
            if socket is not None:
                # Not waiting for the queue to drain: over polling that would hold
                # this request until the client polls again.
                await socket.close(wait=False)


class ConnectReply:
    """Mixin for socketio.AsyncServer: more data in the CONNECT reply of a sid (the
    recovery pid beside the sid). Relies on: AsyncServer._send_packet(eio_sid, pkt)
    sending the CONNECT reply as a packet whose data is {'sid': sid}."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._connect_reply: dict[str, dict] = {}

    async def _send_packet(self, eio_sid, pkt):
        if pkt.packet_type == socketio.packet.CONNECT and isinstance(pkt.data, dict):
            extra = self._connect_reply.pop(pkt.data.get("sid"), None)
            if extra:
                pkt.data = {**pkt.data, **extra}
        return await super()._send_packet(eio_sid, pkt)


def add_to_connect_reply(sio, sid: str, **data) -> None:
    """Set just before the connect handler returns: nothing can refuse the
    connection after that, so the entry is always taken by the reply."""
    sio._connect_reply[sid] = data


async def send_eio_packet(sio: socketio.AsyncServer, eio_sid: str, pkt) -> None:
    """Put an encoded Engine.IO packet on one socket's queue. Relies on:
    AsyncServer._send_eio_packet(eio_sid, eio_pkt)."""
    await sio._send_eio_packet(eio_sid, pkt)


def set_max_decode_packets(count: int) -> None:
    """python-engineio decodes at most 16 packets from one polling request and drops
    the whole request beyond that. Relies on: engineio.payload.Payload's class
    attribute max_decode_packets."""
    engineio.payload.Payload.max_decode_packets = count


# -- python-socketio's Redis manager ------------------------------------------

class RedisManager(socketio.AsyncRedisManager):
    """python-socketio's Redis manager, with the node's link to Redis: an emit reaches
    this node's sockets first, and while Redis is away the publish to the others is not
    tried at all (it cannot succeed, and would hold the reply up). The subscription is
    retried every second instead of backing off to a minute, so that emits cross again
    within a second or so of Redis coming back. Relies on: AsyncRedisManager
    ._publish(data), ._redis_listen_with_retries() (an async generator of pub/sub
    messages), ._redis_connect(), .pubsub, .redis, .channel and .json."""

    def __init__(self, redis, url: str, channel: str, link: RedisLink):
        super().__init__(url, channel=channel,
                         redis_options={"socket_connect_timeout": 1.0})
        self.link = link
        self.publishes = PublishQueue(redis, link.lost)

    async def _publish(self, data):
        if not self.link.up:
            return None
        # An emit does not wait for Redis to have it; the rest (room changes,
        # disconnects, callbacks) does, so that what follows comes after it.
        sent = self.publishes.put("PUBLISH", self.channel, self.json.dumps(data))
        if data.get("method") != "emit" or self.publishes.full:
            await sent
        return None

    async def _redis_listen_with_retries(self):
        while True:
            try:
                self._redis_connect()
                await self.pubsub.subscribe(self.channel)
                async for message in self.pubsub.listen():
                    yield message
            except REDIS_TROUBLE as exc:
                self.link.lost(exc)
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
                await self.redis.aclose()
            await asyncio.sleep(RETRY_SECONDS)


# -- python-engineio sockets -------------------------------------------------------

def engine_socket(sio: socketio.AsyncServer, sid: str):
    """The Engine.IO socket under a Socket.IO sid of the default namespace, or None.
    Relies on: AsyncManager.eio_sid_from_sid and AsyncServer.eio.sockets."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, "/")
    if eio_sid is None:
        return None
    return sio.eio.sockets.get(eio_sid)


def is_open(sio: socketio.AsyncServer, sid: str) -> bool:
    """Whether the transport under ``sid`` is still there. python-socketio runs no
    disconnect handler for a connection that closes while its connect handler is
    still running, so the connect handler asks this after each wait. Relies on:
    engineio AsyncSocket.closed."""
    socket = engine_socket(sio, sid)
    return socket is not None and not socket.closed


def engine_sockets(sio: socketio.AsyncServer) -> list:
    return list(sio.eio.sockets.values())


async def close_transport(sio: socketio.AsyncServer, sid: str | None = None,
                          socket=None) -> None:
    """Close at the Engine.IO level, as a server going away does: socket.io-client
    sees "transport close" and reconnects by itself (a Socket.IO DISCONNECT would
    be "io server disconnect", after which it never reconnects). Relies on:
    AsyncSocket.close(wait=, reason=), AsyncServer.reason.SERVER_DISCONNECT, and
    the WebSocket writer ending at a None on AsyncSocket.queue."""
    if socket is None:
        socket = engine_socket(sio, sid)
    if socket is not None and not socket.closed:
        # Not waiting for the queue to drain: over polling that would hold the close
        # until the client polls again.
        await socket.close(wait=False, reason=sio.eio.reason.SERVER_DISCONNECT)
        if socket.upgraded:
            # socket.io-client ignores the CLOSE packet itself; a None after it makes
            # the WebSocket writer end and close the connection, which it does see.
            socket.queue.put_nowait(None)


async def flush(socket) -> None:
    """Wait until a WebSocket's queue has been written. Relies on: AsyncSocket.queue
    (an asyncio.Queue whose task_done follows each write) and .upgraded."""
    if socket.upgraded:
        await socket.queue.join()


def release_long_poll(sio: socketio.AsyncServer, sid: str) -> None:
    """A polling client that says goodbye still has a GET waiting for packets;
    python-engineio would hold it until ping_interval + ping_timeout (45 s) ran out.
    An empty wake-up answers it now, as Node's engine.io does. Relies on: a None on
    AsyncSocket.queue ending the poll."""
    try:
        socket = engine_socket(sio, sid)
        if socket is not None and not socket.upgraded:
            socket.queue.put_nowait(None)
    except Exception:   # never let this break a disconnect
        log.debug("long poll of %s not released", sid, exc_info=True)


# -- python-engineio's WebSocket transport, a frame without a task ----------------
#
# Per outgoing packet the libraries would run: the socket's send puts it on its queue;
# the WebSocket writer task, waiting with wait_for (a task and a timer per wait), wakes
# and hands it to Tornado's write_message, which wraps the write in one more task. Here
# a packet is written from the socket's send itself whenever the WebSocket is up and
# nothing is queued before it; the queue and the library's writer still carry what was
# sent during an upgrade from polling, and the close.
#
# The frames a connection is sent are gathered for two turns of the event loop and
# written to its stream together: a batch of messages is broadcast in one turn and
# each sender's acknowledgement follows in the next, so a sender's broadcast and ack
# leave in one write (one system call, one Tornado future) instead of one each.

def write_frame(handler, message) -> bool:
    """Write one text (str) or binary (bytes) frame to a WebSocket, with the frames
    of the same two turns; False when the connection is gone. A client that leaves
    more than the stream's max_write_buffer_size unread is closed: its frames are not
    kept without bound. Relies on: WebSocketHandler.ws_connection and
    .write_message; WebSocketProtocol13._compressor, .stream (an IOStream),
    .is_closing() and its server side sending frames unmasked."""
    conn = handler.ws_connection
    if conn is None or conn.is_closing():
        return False
    binary = isinstance(message, bytes)
    if conn._compressor is not None:
        # Compression needs the library's own path (and its task per frame).
        flush_frames(handler)
        try:
            handler.write_message(message, binary=binary)
        except StreamBufferFullError:
            _close_behind(handler, conn)
            return False
        except (StreamClosedError, WebSocketClosedError):
            return False
        return True
    data = message if binary else message.encode()
    frames = getattr(handler, "_frames", None)
    if frames is None:
        handler._frames = frames = []
        asyncio.get_running_loop().call_soon(_flush_next_turn, handler)
    frames.append(frame_head(0x2 if binary else 0x1, len(data)))
    frames.append(data)
    return True


def frame_head(opcode: int, length: int) -> bytes:
    """The head of a final, unmasked WebSocket frame (RFC 6455, 5.2)."""
    if length < 126:
        return bytes((0x80 | opcode, length))
    if length <= 0xFFFF:
        return bytes((0x80 | opcode, 126)) + length.to_bytes(2, "big")
    return bytes((0x80 | opcode, 127)) + length.to_bytes(8, "big")


def _flush_next_turn(handler) -> None:
    asyncio.get_running_loop().call_soon(flush_frames, handler)


def flush_frames(handler) -> None:
    """Write the frames gathered for a WebSocket now (before anything that must come
    after them: a compressed frame, the close)."""
    frames = getattr(handler, "_frames", None)
    if frames is None:
        return
    handler._frames = None
    conn = handler.ws_connection
    if conn is None or conn.is_closing():
        return
    try:
        conn.stream.write(b"".join(frames))
    except StreamBufferFullError:
        _close_behind(handler, conn)
    except StreamClosedError:
        pass


def _close_behind(handler, conn) -> None:
    log.warning("closing a WebSocket from %s: it has not read its last %d bytes",
                handler.request.remote_ip, conn.stream.max_write_buffer_size)
    conn.stream.close()


class FrameWriter(tornado_driver.WebSocket):
    """python-engineio's Tornado WebSocket, writing frames with write_frame. Relies
    on: the driver's WebSocket class, its tornado_handler and close(), and the
    writer ending at an EngineIOError from send."""

    async def send(self, message):
        # Never waits: the library's writer relies on that, see DirectSocket.send.
        if not write_frame(self.tornado_handler, message):
            raise engineio.exceptions.EngineIOError()

    async def close(self):
        # The close frame comes after what was sent before it.
        flush_frames(self.tornado_handler)
        await super().close()


class DirectSocket(engineio.async_socket.AsyncSocket):
    """An Engine.IO socket that writes to its WebSocket from send and reads it
    without a task per frame. Relies on: AsyncSocket.send/poll/receive/close and
    .queue/.connected/.upgrading/.upgraded; the driver's WebSocket running the
    socket's _websocket_handler(ws) for the connection's life (from
    _upgrade_websocket); the Tornado handler's get_next_message giving a frame, or
    None once the connection is closed; the server's ping_interval, ping_timeout,
    max_http_buffer_size and reason.TRANSPORT_CLOSE. The writer takes a batch off the
    queue with poll() and writes all of it without waiting in between (so that an
    empty queue means nothing is left unwritten)."""

    _ws = None  # the WebSocket under it, while its handler runs

    async def send(self, pkt):
        ws = self._ws
        if ws is None or not self.upgraded or not self.queue.empty():
            return await super().send(pkt)
        if not await self.check_ping_timeout():
            return
        # A frame that cannot be written is lost with its connection, as the
        # library's writer loses what it holds when the connection ends.
        write_frame(ws.tornado_handler, pkt.encode())
        logger = self.server.logger
        if logger.isEnabledFor(logging.INFO):
            # As the library logs each packet it sends (log_socketio shows them).
            logger.info("%s: Sending packet %s data %s", self.sid,
                        engineio.packet.packet_names[pkt.packet_type],
                        "<binary>" if isinstance(pkt.data, bytes) else pkt.data)

    async def poll(self):
        if not self.upgraded:
            return await super().poll()
        # The WebSocket writer: with frames written from send it can idle for long,
        # and a silent client is closed by the reader's timeout and the ping check,
        # so it waits without a timeout (the library's wait_for adds a task per wait).
        try:
            first = await self.queue.get()
        except asyncio.CancelledError:
            raise engineio.exceptions.QueueEmpty()
        self.queue.task_done()
        if first is None:
            return []
        packets = [first]
        while not self.queue.empty():
            pkt = self.queue.get_nowait()
            self.queue.task_done()
            if pkt is None:
                # Ends the writer once this batch is written.
                self.queue.put_nowait(None)
                break
            packets.append(pkt)
        return packets

    # Reading. The library's reader starts a task per frame and waits for it with
    # wait_for (a future, a timer and callbacks more); here the frames are taken off
    # the Tornado handler's queue in line, and one timer per connection ends it once
    # it has waited ping_interval + ping_timeout for a frame, as the library's does.

    async def _websocket_handler(self, ws):
        self._ws = ws
        try:
            if self.connected:
                # An upgrade from polling: the probe, then the UPGRADE packet.
                if not await self._upgrade(ws):
                    return
            else:
                self.connected = True
                self.upgraded = True
            writer = asyncio.ensure_future(self._write_queued(ws))
            self.server.logger.info("%s: Upgrade to websocket successful", self.sid)
            await self._read(ws.tornado_handler)
            await self.queue.put(None)  # ends the writer
            await writer
            await self.close(wait=False, abort=True,
                             reason=self.server.reason.TRANSPORT_CLOSE)
        finally:
            self._ws = None

    async def _upgrade(self, ws) -> bool:
        self.upgrading = True   # what is sent meanwhile waits on the queue
        probe = await self._frame(ws.tornado_handler)
        if probe is None or not _is_packet(probe, engineio.packet.PING, "probe"):
            self.server.logger.info("%s: Failed websocket upgrade, no PING packet",
                                    self.sid)
            self.upgrading = False
            return False
        await ws.send(engineio.packet.Packet(engineio.packet.PONG, data="probe").encode())
        await self.queue.put(engineio.packet.Packet(engineio.packet.NOOP))  # ends the poll
        upgrade = await self._frame(ws.tornado_handler)
        if upgrade is None or not _is_packet(upgrade, engineio.packet.UPGRADE):
            self.server.logger.info("%s: Failed websocket upgrade, expected UPGRADE "
                                    "packet, received %s instead.", self.sid, upgrade)
            self.upgraded = self.upgrading = False
            return False
        self.upgraded = True
        self.upgrading = False
        return True

    async def _frame(self, handler):
        """The next frame, or None once the connection is closed or the frame is
        larger than max_http_buffer_size (which ends the connection)."""
        data = await handler.get_next_message()
        if not isinstance(data, (str, bytes)) or len(data) > self.server.max_http_buffer_size:
            return None
        return data

    async def _read(self, handler) -> None:
        loop = asyncio.get_running_loop()
        quiet = self.server.ping_interval + self.server.ping_timeout
        self._quiet_timer = loop.call_later(quiet, self._check_quiet, handler, quiet)
        try:
            while True:
                self._waiting_since = loop.time()
                try:
                    data = await self._frame(handler)
                except asyncio.CancelledError:
                    break
                self._waiting_since = None
                if data is None:
                    break
                try:
                    await self.receive(engineio.packet.Packet(encoded_packet=data))
                except asyncio.CancelledError:
                    break   # the server is stopping: the connection ends as at a close
                except engineio.exceptions.UnknownPacketError:
                    pass
                except engineio.exceptions.SocketIsClosedError:
                    self.server.logger.info("Receive error -- socket is closed")
                    break
                except Exception:
                    self.server.logger.exception("Unknown receive error")
        finally:
            self._quiet_timer.cancel()

    def _check_quiet(self, handler, quiet: float) -> None:
        loop = asyncio.get_running_loop()
        since = self._waiting_since
        if since is not None and loop.time() - since >= quiet:
            # The client has said nothing for that long: the reader ends as at a close.
            handler.receive_queue.put_nowait(None)
            return
        left = quiet - (loop.time() - since) if since is not None else quiet
        self._quiet_timer = loop.call_later(left, self._check_quiet, handler, quiet)

    async def _write_queued(self, ws) -> None:
        """What waits on the queue (sent during an upgrade, or while a batch was
        being written), written in order; at a None, or once a write fails, the
        WebSocket is closed."""
        while True:
            try:
                packets = await self.poll()
            except engineio.exceptions.QueueEmpty:
                break
            if not packets:
                break
            try:
                for pkt in packets:
                    await ws.send(pkt.encode())
            except Exception:
                break
        await ws.close()


def _is_packet(data, packet_type: int, text=None) -> bool:
    try:
        pkt = engineio.packet.Packet(encoded_packet=data)
    except Exception:
        return False
    return pkt.packet_type == packet_type and (text is None or pkt.data == text)


class _DirectSockets(dict):
    """python-engineio's table of sockets, making each new one a DirectSocket as
    it is entered. Relies on: AsyncServer._handle_connect creating an AsyncSocket
    and entering it in .sockets before anything is sent on it."""

    def __setitem__(self, sid, socket):
        if type(socket) is engineio.async_socket.AsyncSocket:
            socket.__class__ = DirectSocket
        super().__setitem__(sid, socket)


class LightQueue:
    """The part of asyncio.Queue that python-engineio's sockets and its Tornado handler
    use (put, get, their _nowait forms, empty, qsize, task_done, join), in one deque.
    asyncio.Queue allocates four deques up front (items, getters, putters, its
    Event's waiters), about 3 KiB; a connection holds two queues for its lifetime."""

    __slots__ = ("_items", "_getters", "_unfinished", "_joined")

    def __init__(self):
        self._items = collections.deque()
        self._getters = None     # futures of get() calls waiting, once there are any
        self._unfinished = 0
        self._joined = None      # what join() waits on, while something is unfinished

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def put_nowait(self, item) -> None:
        self._items.append(item)
        self._unfinished += 1
        self._wake_getter()

    async def put(self, item) -> None:
        self.put_nowait(item)

    def get_nowait(self):
        if not self._items:
            raise asyncio.QueueEmpty()
        return self._items.popleft()

    async def get(self):
        while not self._items:
            getter = asyncio.get_running_loop().create_future()
            if self._getters is None:
                self._getters = []
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if self._items:
                    # The wake-up this getter took goes to the next one.
                    self._wake_getter()
                raise
        return self._items.popleft()

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            getter = getters.pop(0)
            if not getter.done():
                getter.set_result(None)
                return

    def task_done(self) -> None:
        if self._unfinished <= 0:
            raise ValueError("task_done() called too many times")
        self._unfinished -= 1
        if not self._unfinished and self._joined is not None:
            joined, self._joined = self._joined, None
            if not joined.done():
                joined.set_result(None)

    async def join(self) -> None:
        if self._unfinished:
            if self._joined is None:
                self._joined = asyncio.get_running_loop().create_future()
            # Shielded: one waiter given up must not cancel the others' wait.
            await asyncio.shield(self._joined)


def direct_frames(sio: socketio.AsyncServer) -> None:
    """Make this server's WebSockets write frames without a task each, and its
    sockets' queues light. Relies on: AsyncServer._async (the driver's table, shared
    by every server of the process: copied, not changed), .sockets, and
    BaseSocket.__init__ taking its queue from server.create_queue()."""
    eio = sio.eio
    eio._async = dict(eio._async, websocket=FrameWriter)
    eio.sockets = _DirectSockets(eio.sockets)
    eio.create_queue = LightQueue


# -- python-engineio's Tornado handler --------------------------------------------

# Frames of one WebSocket read ahead of the event being handled. Its events run one
# after another, so past this Tornado stops reading the socket until the server
# catches up: a client sending faster than the server handles waits in TCP, instead
# of queueing frames (each up to max_http_buffer_size) in memory without bound.
READ_AHEAD_FRAMES = 16

# A socket whose reading has stopped for a full read-ahead again and again, with no
# gap as long as this between two stops, has had a client ahead of the server all
# along: its frames wait in TCP, where nothing stamps them, so that is how long they
# are known to have waited.
AHEAD_GAP_SECONDS = 0.25

# Since when the client of the socket whose event is being handled has been ahead of
# the server (None: it is not, or it is not on a WebSocket). Set by AckAware for the
# task that handles the event.
ahead_since: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "ahead_since", default=None)


def tornado_handler(sio: socketio.AsyncServer, compression: bool, rewrite_query,
                    write_buffer_limit: int | None = None):
    """python-engineio's Tornado request handler, with what the message path needs.
    Relies on: the handler's receive_queue (frames of a WebSocket go there, read by
    get_next_message, ended by on_close's None), translate_request reading the query
    from request.query, and Tornado waiting for a future that on_message returns
    before it reads the next frame."""
    base = socketio.get_tornado_handler(sio)

    class SocketIOHandler(base):
        _resume = None  # set while reading waits for the queue to shrink
        # When reading first stopped in the run of stops that the last one belongs
        # to, and when the last stop began or ended.
        _ahead_since = None
        _stopped_at = 0.0

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.receive_queue = LightQueue()

        def get_compression_options(self):
            # permessage-deflate keeps a zlib context per socket: ~150 KiB of an idle
            # connection's ~190 KiB. Chat frames are small, so it is off unless asked.
            return {} if compression else None

        async def open(self, *args, **kwargs):
            # A room broadcast and the ack often leave back to back for one socket;
            # with Nagle's algorithm the second frame waits for the client's delayed
            # ACK (~40 ms on Linux), which made createMessage take 50 ms on localhost.
            self.set_nodelay(True)
            if write_buffer_limit:
                self.ws_connection.stream.max_write_buffer_size = write_buffer_limit
            self.request.query = rewrite_query(self.request.query)
            await super().open(*args, **kwargs)

        def on_message(self, message):
            # The library's on_message is a coroutine, which Tornado wraps in a task
            # per frame only to put the frame on an unbounded queue.
            queue = self.receive_queue
            queue.put_nowait(message)
            if queue.qsize() >= READ_AHEAD_FRAMES:
                loop = asyncio.get_running_loop()
                now = loop.time()
                if self._ahead_since is None or now - self._stopped_at > AHEAD_GAP_SECONDS:
                    self._ahead_since = now
                self._stopped_at = now
                self._resume = loop.create_future()
                return self._resume
            return None

        async def get_next_message(self):
            message = await self.receive_queue.get()
            self._go_on()
            return message

        def ahead_since(self) -> float | None:
            since = self._ahead_since
            if since is not None and self._resume is None and (
                    asyncio.get_running_loop().time() - self._stopped_at
                    > AHEAD_GAP_SECONDS):
                self._ahead_since = since = None
            return since

        def on_close(self):
            super().on_close()
            self._go_on(closed=True)

        def _go_on(self, closed=False):
            resume = self._resume
            if resume is not None and (
                    closed or self.receive_queue.qsize() < READ_AHEAD_FRAMES):
                self._resume = None
                # The stop lasted until now: the next gap is counted from here.
                self._stopped_at = asyncio.get_running_loop().time()
                if not resume.done():
                    resume.set_result(None)

    return SocketIOHandler


# What is read of a connection's environ after it is accepted: by syarah.transport
# .handshake (the token and the query, should the client connect the namespace again
# on the same connection, and the address through the Tornado handler).
ENVIRON_KEPT = ("QUERY_STRING", "HTTP_AUTHORIZATION", "REMOTE_ADDR", "tornado.handler")


def keep_what_is_read(environ: dict) -> None:
    """Once a connection is accepted, let go of what its environ and Tornado request
    hold that nothing reads again: python-socketio keeps the environ (every header,
    about 4 KiB) for the connection's life, and the WebSocket handler its request
    (with the parsed query). The dict is emptied in place, because the library's
    coroutines hold the same one. Relies on: python-socketio and python-engineio
    reading a connection's environ only while connecting; Tornado reading
    request.arguments only for the request itself (a WebSocket's handshake, or a
    poll already answered when the connect arrives)."""
    kept = {key: environ[key] for key in ENVIRON_KEPT if key in environ}
    environ.clear()
    environ.update(kept)
    request = tornado_request(kept)
    if request is not None:
        # Its headers stay: Tornado's HTTP1Connection holds the same object.
        request.arguments, request.query_arguments, request.body_arguments = {}, {}, {}


def tornado_request(environ: dict):
    """The Tornado request under a Socket.IO connection, or None. Relies on:
    python-engineio's Tornado driver putting its handler in environ['tornado.handler']
    (its REMOTE_ADDR is a fixed 127.0.0.1; the request knows the peer)."""
    handler = environ.get("tornado.handler")
    return handler.request if handler is not None else None


# -- Tornado -----------------------------------------------------------------------

def option(parser, name: str):
    """A tornado.options option by name (dashes or underscores), to parse text into
    it; None when there is none. Relies on: OptionParser._options and
    OptionParser._normalize_name."""
    return parser._options.get(parser._normalize_name(name))


def linger_before_close(connection, seconds: float) -> None:
    """Make Tornado's close of this HTTP connection a lingering one: end our side at
    once (the client reads the answer, then EOF), keep reading and dropping the rest
    of the body (Tornado's body loop does that once the answer is finished), and close
    for real a little later. A client that stops sending first is closed at once by
    the stream itself. Closing a socket with unread input sends a reset, and a reset
    makes the client's system discard our answer unread. Relies on: HTTP1Connection
    .stream and .close."""
    real_close = connection.close
    lingering = False

    def close():
        nonlocal lingering
        stream = connection.stream
        if lingering:
            return
        if stream is None or stream.closed():
            real_close()
            return
        lingering = True
        try:
            stream.socket.shutdown(_socket.SHUT_WR)
        except OSError:
            real_close()
            return
        asyncio.get_running_loop().call_later(seconds, real_close)

    connection.close = close
