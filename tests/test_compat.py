"""What syarah/transport/compat.py relies on in python-socketio, python-engineio and
Tornado. Each test names the private part it checks, so that an upgrade that changes
one fails here by name rather than somewhere in a chat flow."""

from __future__ import annotations

import asyncio
import inspect

import engineio
import engineio.async_socket
import engineio.payload
import socketio
import socketio.async_manager
import socketio.async_pubsub_manager
import tornado.http1connection
import tornado.options

from syarah.transport import compat


def params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_async_server_handle_event_internal_takes_the_ack_id():
    assert params(socketio.AsyncServer._handle_event_internal) == [
        "self", "server", "sid", "eio_sid", "data", "namespace", "id"]


def test_async_server_handle_eio_message_takes_eio_sid_and_data():
    assert params(socketio.AsyncServer._handle_eio_message) == ["self", "eio_sid", "data"]


def test_async_server_sends_engineio_packets_by_eio_sid():
    assert params(socketio.AsyncServer._send_eio_packet) == ["self", "eio_sid", "eio_pkt"]


def test_managers_map_sids_to_eio_sids():
    assert params(socketio.async_manager.AsyncManager.eio_sid_from_sid) == [
        "self", "sid", "namespace"]


def test_payload_decoding_limit_is_a_class_attribute():
    assert isinstance(engineio.payload.Payload.max_decode_packets, int)
    before = engineio.payload.Payload.max_decode_packets
    try:
        compat.set_max_decode_packets(1000)
        assert engineio.payload.Payload(
            encoded_payload="\x1e".join(["4x"] * 500)).packets[499].data == "x"
    finally:
        engineio.payload.Payload.max_decode_packets = before


def test_engineio_socket_close_queue_and_flags():
    sock = engineio.async_socket.AsyncSocket
    assert params(sock.close) == ["self", "wait", "abort", "reason"]
    server = engineio.AsyncServer(async_mode="asgi")
    s = sock(server, "sid")
    assert isinstance(s.queue, asyncio.Queue)
    assert s.closed is False and s.upgraded is False
    assert server.reason.SERVER_DISCONNECT


def test_engineio_poll_ends_at_a_none_on_the_queue():
    server = engineio.AsyncServer(async_mode="asgi")
    s = engineio.async_socket.AsyncSocket(server, "sid")

    async def poll():
        s.queue.put_nowait(None)
        return await s.poll()

    # An empty list is what ends a long poll and the WebSocket writer.
    assert asyncio.run(poll()) == []


def test_engineio_servers_keep_sockets_by_eio_sid():
    server = engineio.AsyncServer(async_mode="asgi")
    assert server.sockets == {}


def test_tornado_handler_has_a_receive_queue_and_reads_request_query():
    handler = socketio.get_tornado_handler(socketio.AsyncServer(async_mode="tornado"))
    source = inspect.getsource(handler)
    assert "receive_queue" in source
    import engineio.async_drivers.tornado as driver

    assert "request.query" in inspect.getsource(driver.translate_request)


def test_the_tornado_driver_puts_its_handler_in_the_environ():
    import engineio.async_drivers.tornado as driver

    assert "'tornado.handler'" in inspect.getsource(driver.translate_request)


def test_tornado_option_parser_keeps_options_by_normalized_name():
    parser = tornado.options.OptionParser()
    parser.define("some_option", default=1, type=int)
    option = compat.option(parser, "some-option")
    option.parse("5")
    assert parser.some_option == 5


def test_tornado_http1_connections_have_stream_and_close():
    conn = tornado.http1connection.HTTP1Connection
    assert callable(conn.close)
    assert "self.stream" in inspect.getsource(conn.__init__)


def test_the_redis_manager_publishes_and_listens_through_overridable_methods():
    manager = socketio.AsyncRedisManager
    assert params(manager._publish) == ["self", "data"]
    assert params(manager._redis_listen_with_retries) == ["self"]
    assert inspect.isasyncgenfunction(manager._redis_listen_with_retries)
    assert callable(manager._redis_connect)
    source = inspect.getsource(socketio.async_pubsub_manager.AsyncPubSubManager)
    assert "self._publish(" in source
    assert "self.json" in inspect.getsource(manager)


def test_connect_replies_go_through_send_packet():
    assert params(socketio.AsyncServer._send_packet) == ["self", "eio_sid", "pkt"]
    source = inspect.getsource(socketio.AsyncServer._handle_connect)
    assert "packet.CONNECT, {'sid': sid}" in source


async def test_every_room_change_of_a_manager_goes_through_basic_enter_and_leave_room():
    """The room-channel manager (syarah/transport/channels.py) subscribes and
    unsubscribes from these two public methods alone: connects, joins, leaves, room
    closes and disconnects must all pass through them."""
    changes = []

    class Watching(socketio.AsyncManager):
        def basic_enter_room(self, sid, namespace, room, eio_sid=None):
            changes.append(("enter", room))
            super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)

        def basic_leave_room(self, sid, namespace, room):
            changes.append(("leave", room))
            super().basic_leave_room(sid, namespace, room)

    class Ids:
        def generate_id(self):
            return "s1"

    manager = Watching()
    manager.server = type("Server", (), {"eio": Ids()})()
    sid = await manager.connect("e1", "/")
    await manager.enter_room(sid, "/", "a")
    await manager.enter_room(sid, "/", "b")
    await manager.leave_room(sid, "/", "a")
    await manager.close_room("b", "/")
    manager.pre_disconnect(sid, "/")
    await manager.disconnect(sid, "/")
    assert set(changes[:2]) == {("enter", None), ("enter", sid)}
    assert changes[2:6] == [("enter", "a"), ("enter", "b"), ("leave", "a"), ("leave", "b")]
    assert set(changes[6:]) == {("leave", None), ("leave", sid)}
    assert manager.rooms == {}


# -- WebSocket frames without a task each (compat.direct_frames) ---------------------

def test_tornado_writes_a_frame_through_write_frame_unless_compressing():
    import tornado.websocket

    proto = tornado.websocket.WebSocketProtocol13
    assert params(proto._write_frame) == ["self", "fin", "opcode", "data", "flags"]
    assert "self._compressor" in inspect.getsource(proto.__init__)
    assert callable(proto.is_closing)
    assert "self.stream" in inspect.getsource(tornado.websocket.WebSocketProtocol.__init__)
    assert "self.ws_connection" in inspect.getsource(
        tornado.websocket.WebSocketHandler.__init__)


def test_a_server_side_tornado_websocket_sends_frames_as_frame_head_builds_them():
    import tornado.websocket

    proto = tornado.websocket.WebSocketProtocol13
    assert params(proto.__init__)[:3] == ["self", "handler", "mask_outgoing"]
    assert "WebSocketProtocol13(self, False, params)" in inspect.getsource(
        tornado.websocket.WebSocketHandler.get_websocket_protocol)
    written = []
    conn = object.__new__(proto)
    conn.mask_outgoing, conn._wire_bytes_out = False, 0
    conn.stream = type("Recorder", (), {"write": lambda self, data: written.append(data)})()
    for size in (0, 5, 125, 126, 200, 65535, 65536, 70000):
        data = b"x" * size
        conn._write_frame(True, 0x1, data)
        assert written[-1] == compat.frame_head(0x1, size) + data, size


class FrameRecorder:
    """A Tornado WebSocket handler's parts that write_frame uses, over a real stream."""

    def __init__(self, stream):
        import tornado.websocket

        self.ws_connection = conn = object.__new__(tornado.websocket.WebSocketProtocol13)
        conn.stream, conn._compressor = stream, None
        conn.client_terminated = conn.server_terminated = False
        self.writes = 0
        real_write = stream.write

        def counted(data):
            self.writes += 1
            return real_write(data)
        stream.write = counted


def test_the_frames_of_two_turns_leave_in_one_write():
    import socket

    import tornado.iostream

    async def run():
        a, b = socket.socketpair()
        b.setblocking(False)
        handler = FrameRecorder(tornado.iostream.IOStream(a))
        assert compat.write_frame(handler, "42[\"message\"]")     # a broadcast
        await asyncio.sleep(0)
        assert compat.write_frame(handler, "430[{}]")              # its ack, a turn later
        for _ in range(3):
            await asyncio.sleep(0)
        first = handler.writes
        compat.write_frame(handler, b"\x01")                      # later: a write of its own
        await asyncio.sleep(0.01)
        received = b.recv(1000)
        handler.ws_connection.stream.close()
        b.close()
        return first, handler.writes, received

    first, writes, received = asyncio.run(run())
    assert (first, writes) == (1, 2)
    assert received == (b"\x81\x0d" + b'42["message"]' + b"\x81\x07" + b"430[{}]"
                        + b"\x82\x01\x01")


def test_a_compressing_websocket_whose_client_reads_nothing_is_closed_too():
    import base64
    import os
    import socket

    import tornado.iostream
    import tornado.websocket

    async def run():
        a, b = socket.socketpair()
        stream = tornado.iostream.IOStream(a)
        stream.max_write_buffer_size = 10
        handler = FrameRecorder(stream)
        conn = handler.ws_connection
        conn._compressor = tornado.websocket._PerMessageDeflateCompressor(False, None)
        conn.mask_outgoing, conn._message_bytes_out, conn._wire_bytes_out = False, 0, 0
        handler.write_message = conn.write_message
        handler.request = type("Request", (), {"remote_ip": "127.0.0.1"})()
        # Random text, so that its compressed frame is still past the 10 bytes.
        written = compat.write_frame(handler, base64.b64encode(os.urandom(300)).decode())
        closed = stream.closed()
        b.close()
        return written, closed

    assert asyncio.run(run()) == (False, True)


def test_a_tornado_stream_refuses_a_write_past_its_max_write_buffer_size():
    import socket

    import tornado.iostream

    async def write():
        a, b = socket.socketpair()
        stream = tornado.iostream.IOStream(a)
        stream.max_write_buffer_size = 10
        try:
            stream.write(b"x" * 11)
        except tornado.iostream.StreamBufferFullError:
            return True
        finally:
            stream.close()
            b.close()
        return False

    assert asyncio.run(write())


def test_engineio_runs_the_sockets_websocket_handler_for_the_connection():
    sock = engineio.async_socket.AsyncSocket
    assert params(sock._websocket_handler) == ["self", "ws"]
    assert params(sock.send) == ["self", "pkt"] and params(sock.poll) == ["self"]
    assert params(sock.receive) == ["self", "pkt"]
    assert params(sock.close) == ["self", "wait", "abort", "reason"]
    source = inspect.getsource(sock._upgrade_websocket)
    assert "self.server._async['websocket'](" in source
    assert "self._websocket_handler, self.server)" in source
    for flag in ("connected", "upgrading", "upgraded"):
        assert hasattr(engineio.async_socket.AsyncSocket(
            engineio.AsyncServer(async_mode="tornado"), "sid"), flag)
    assert engineio.AsyncServer.reason.TRANSPORT_CLOSE


class StandInWebSocket:
    """What a DirectSocket asks of the driver's WebSocket: its Tornado handler (whose
    queue the frames are put on, as Tornado's on_message does), send and close."""

    def __init__(self, sio):
        handler_class = compat.tornado_handler(sio, False, lambda q: q)
        self.tornado_handler = object.__new__(handler_class)
        self.tornado_handler.receive_queue = compat.LightQueue()
        self.sent, self.closed = [], False

    def frame(self, data):
        self.tornado_handler.on_message(data)

    async def send(self, message):
        self.sent.append(message)

    async def close(self):
        self.closed = True


def direct_socket(**options):
    sio = socketio.AsyncServer(async_mode="tornado", **options)
    compat.direct_frames(sio)
    socket = compat.DirectSocket(sio.eio, "sid")
    heard = []

    async def message(sid, data):
        heard.append(data)
        if data == "slow":
            await asyncio.sleep(0.3)
    sio.eio.on("message", message)
    return socket, StandInWebSocket(sio), heard


def test_a_direct_socket_reads_its_frames_in_order_and_ends_at_a_close():
    async def run():
        socket, ws, heard = direct_socket()
        for frame in ("4one", "4two", "4three"):
            ws.frame(frame)
        handling = asyncio.ensure_future(socket._websocket_handler(ws))
        await asyncio.sleep(0.05)
        assert heard == ["one", "two", "three"] and socket.upgraded
        ws.frame(None)      # Tornado's on_close
        await asyncio.wait_for(handling, 5)
        return ws.closed and socket.closed

    assert asyncio.run(run())


def test_a_direct_socket_ends_at_a_frame_larger_than_max_http_buffer_size():
    async def run():
        socket, ws, heard = direct_socket(max_http_buffer_size=100)
        ws.frame("4small")
        ws.frame("4" + "x" * 100)
        ws.frame("4never")
        await asyncio.wait_for(socket._websocket_handler(ws), 5)
        return heard, socket.closed

    assert asyncio.run(run()) == (["small"], True)


def test_a_direct_socket_ends_once_it_waited_a_ping_interval_and_timeout_for_a_frame():
    async def run():
        socket, ws, heard = direct_socket(ping_interval=0.2, ping_timeout=0.2)
        loop = asyncio.get_running_loop()
        began = loop.time()
        # The time an event takes to handle is not waiting: a frame that arrives
        # while it is handled keeps the connection.
        ws.frame("4slow")
        handling = asyncio.ensure_future(socket._websocket_handler(ws))
        await asyncio.sleep(0.35)
        ws.frame("4still here")
        await asyncio.wait_for(handling, 5)
        return heard, loop.time() - began, socket.closed

    heard, lasted, closed = asyncio.run(run())
    assert heard == ["slow", "still here"] and closed
    # Ended 0.4 s after the last frame: not before it, nor at the first timer.
    assert lasted >= 0.35 + 0.4


def test_a_direct_socket_upgrades_from_polling_with_the_probe():
    async def run():
        socket, ws, heard = direct_socket()
        socket.connected = True     # connected over polling first
        ws.frame("2probe")
        ws.frame("5")
        ws.frame("4after")
        handling = asyncio.ensure_future(socket._websocket_handler(ws))
        await asyncio.sleep(0.05)
        upgraded = socket.upgraded
        ws.frame(None)
        await asyncio.wait_for(handling, 5)
        return ws.sent[0], upgraded, heard

    assert asyncio.run(run()) == ("3probe", True, ["after"])

    async def no_probe():
        socket, ws, heard = direct_socket()
        socket.connected = True
        ws.frame("4hello")
        await asyncio.wait_for(socket._websocket_handler(ws), 5)
        return socket.upgraded, socket.upgrading, heard

    assert asyncio.run(no_probe()) == (False, False, [])


def test_engineio_enters_a_new_socket_in_its_table_as_it_creates_it():
    source = inspect.getsource(engineio.AsyncServer._handle_connect)
    created = source.index("s = async_socket.AsyncSocket(self, sid)")
    assert source.index("self.sockets[sid] = s") > created
    server = engineio.AsyncServer(async_mode="tornado")
    assert isinstance(server._async, dict) and "websocket" in server._async


def test_the_tornado_driver_websocket_calls_its_handler_with_itself():
    import engineio.async_drivers.tornado as driver

    source = inspect.getsource(driver.WebSocket.__call__)
    assert "self.tornado_handler = environ['tornado.handler']" in source
    assert "await self.handler(self)" in source


def test_direct_frames_turns_new_sockets_into_direct_ones_for_that_server_only():
    sio = socketio.AsyncServer(async_mode="tornado")
    other = socketio.AsyncServer(async_mode="tornado")
    compat.direct_frames(sio)
    assert sio.eio._async["websocket"] is compat.FrameWriter
    assert other.eio._async["websocket"] is not compat.FrameWriter
    s = engineio.async_socket.AsyncSocket(sio.eio, "sid")
    sio.eio.sockets["sid"] = s
    assert type(s) is compat.DirectSocket


def test_a_direct_socket_writer_polls_in_order_and_ends_at_none():
    server = engineio.AsyncServer(async_mode="tornado")
    s = compat.DirectSocket(server, "sid")
    s.upgraded = True

    async def polls():
        for p in ("a", "b", None, "c"):
            s.queue.put_nowait(p)
        return [await s.poll(), await s.poll(), await s.poll()]

    # A None ends the batch before it and, put back last, the writer.
    assert asyncio.run(polls()) == [["a", "b"], ["c"], []]


def test_reading_pauses_once_frames_wait_and_goes_on_as_they_are_taken():
    handler_class = compat.tornado_handler(
        socketio.AsyncServer(async_mode="tornado"), False, lambda q: q)

    async def read():
        handler = object.__new__(handler_class)
        handler.receive_queue = asyncio.Queue()
        results = [handler.on_message(f"4m{i}") for i in range(compat.READ_AHEAD_FRAMES)]
        paused = results[-1]
        assert results[:-1] == [None] * (compat.READ_AHEAD_FRAMES - 1)
        assert asyncio.isfuture(paused) and not paused.done()
        assert await handler.get_next_message() == "4m0"
        return paused.done()

    # Tornado reads no further frame until the future it was given is done.
    assert asyncio.run(read())


def test_a_client_is_ahead_from_the_first_stop_of_reading_until_a_gap_without_one(
        monkeypatch):
    handler_class = compat.tornado_handler(
        socketio.AsyncServer(async_mode="tornado"), False, lambda q: q)

    async def read():
        handler = object.__new__(handler_class)
        handler.receive_queue = asyncio.Queue()
        assert handler.ahead_since() is None
        for i in range(compat.READ_AHEAD_FRAMES):
            handler.on_message(f"4m{i}")
        first = handler.ahead_since()
        assert first is not None
        await handler.get_next_message()           # reading goes on: a gap begins
        monkeypatch.setattr(compat, "AHEAD_GAP_SECONDS", 60)
        assert handler.ahead_since() == first
        handler.on_message("4m-again")              # stops again within the gap
        assert handler.ahead_since() == first
        monkeypatch.setattr(compat, "AHEAD_GAP_SECONDS", 0)
        assert handler.ahead_since() == first       # still stopped: no gap yet
        await handler.get_next_message()
        await asyncio.sleep(0.01)
        return handler.ahead_since()

    assert asyncio.run(read()) is None


# -- per-connection memory ------------------------------------------------------------

def test_engineio_sockets_take_their_queue_from_the_server():
    import engineio.base_socket

    assert "self.server.create_queue()" in inspect.getsource(
        engineio.base_socket.BaseSocket.__init__)
    sio = socketio.AsyncServer(async_mode="tornado")
    compat.direct_frames(sio)
    assert isinstance(engineio.async_socket.AsyncSocket(sio.eio, "sid").queue,
                      compat.LightQueue)


def test_a_light_queue_keeps_order_counts_unfinished_work_and_wakes_getters():
    async def use():
        q = compat.LightQueue()
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        cancelled = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        cancelled.cancel()
        await q.put("a")
        q.put_nowait("b")
        first = await getter
        assert (q.qsize(), q.empty(), q.get_nowait()) == (1, False, "b")
        try:
            q.get_nowait()
        except asyncio.QueueEmpty:
            pass
        else:
            raise AssertionError("an empty queue gave an item")
        joined = asyncio.ensure_future(q.join())
        await asyncio.sleep(0)
        q.task_done()
        assert not joined.done()
        q.task_done()
        await joined
        return first

    assert asyncio.run(use()) == "a"


def test_the_engineio_environ_is_read_at_connect_only():
    # python-socketio hands its stored environ to connect handlers only.
    source = inspect.getsource(socketio.AsyncServer)
    uses = [line.strip() for line in source.splitlines() if "self.environ[eio_sid]" in line]
    assert uses and all(
        use in ("self.environ[eio_sid] = environ", "del self.environ[eio_sid]")
        or use.startswith("'connect', namespace, sid, self.environ[eio_sid]")
        for use in uses), uses


def test_keeping_what_is_read_empties_the_environ_and_the_request_in_place():
    import tornado.httputil

    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine(
            "GET", "/socket.io/?EIO=4&userId=u", "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "h", "Authorization": "Bearer t"}))

    class Handler:
        pass

    handler = Handler()
    handler.request = request
    environ = {"QUERY_STRING": "EIO=4&userId=u", "HTTP_AUTHORIZATION": "Bearer t",
               "HTTP_USER_AGENT": "x" * 200, "REMOTE_ADDR": "127.0.0.1",
               "tornado.handler": handler, "wsgi.input": object()}
    held = environ
    compat.keep_what_is_read(environ)
    assert held is environ and sorted(environ) == [
        "HTTP_AUTHORIZATION", "QUERY_STRING", "REMOTE_ADDR", "tornado.handler"]
    assert request.query_arguments == {} and request.arguments == {}


def test_a_packet_is_searched_for_bytes_only_when_it_uses_binary_events():
    """EventPacket turns the search off: the class attribute must still be what
    Packet.__init__ consults before walking the data."""
    from syarah.transport.sockets import EventPacket

    assert "self.uses_binary_events and" in inspect.getsource(socketio.packet.Packet.__init__)
    searched = []

    class Watching(EventPacket):
        @classmethod
        def data_is_binary(cls, data):
            searched.append(data)
            return False

    reply = Watching(socketio.packet.ACK, data=[{"items": [{"id": 1}]}], id=7)
    assert searched == [] and reply.encode() == '37[{"items":[{"id":1}]}]'
    # A client's binary event still reads, attachments and all.
    incoming = EventPacket(encoded_packet='51-["upload",{"_placeholder":true,"num":0}]')
    assert incoming.packet_type == socketio.packet.BINARY_EVENT
    assert incoming.add_attachment(b"\x00\x01")
    assert incoming.data == ["upload", b"\x00\x01"]
