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
