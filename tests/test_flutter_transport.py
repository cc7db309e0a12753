"""Flutter's socket_io_client with its default options, on Android and iOS.

It only has a WebSocket transport there, yet names the first entry of its transports
list in the query: GET /socket.io/?...&EIO=4&transport=polling with the WebSocket
upgrade headers. The server must serve that as a WebSocket connection. A raw
WebSocket client sends exactly that request here and speaks Engine.IO 4 / Socket.IO 5
by hand, as the Dart client does.
"""

from __future__ import annotations

import asyncio
import json

import tornado.httputil
from engineio.async_drivers import tornado as engineio_tornado
from tornado.websocket import websocket_connect

from conftest import dm
from helpers import people
from syarah.transport.web import as_websocket_query

FRAME_TIMEOUT = 10


class RawSocket:
    """One WebSocket speaking Engine.IO / Socket.IO text packets."""

    def __init__(self, conn):
        self.conn = conn
        self.seen: list[str] = []
        self.backlog: list[str] = []

    async def next(self, prefix: str) -> str:
        """The first packet not taken yet that starts with ``prefix`` (the rest of
        it), answering pings on the way."""
        for frame in self.backlog:
            if frame.startswith(prefix):
                self.backlog.remove(frame)
                return frame[len(prefix):]
        while True:
            frame = await asyncio.wait_for(self.conn.read_message(), FRAME_TIMEOUT)
            assert frame is not None, f"the server closed the WebSocket; got {self.seen}"
            self.seen.append(frame)
            if frame == "2":
                await self.conn.write_message("3")
            elif frame.startswith(prefix):
                return frame[len(prefix):]
            else:
                self.backlog.append(frame)

    async def send(self, packet: str) -> None:
        await self.conn.write_message(packet)

    def close(self):
        self.conn.close()


async def flutter_socket(server, query: str) -> RawSocket:
    url = server.url.replace("http://", "ws://") + "/socket.io/?" + query
    return RawSocket(await asyncio.wait_for(websocket_connect(url), FRAME_TIMEOUT))


async def test_flutter_default_transports_get_a_websocket_connection(server, clients):
    ann, bob = await people(server, "Ann", "Bob")
    b = await clients(bob)
    chat_id = await dm(b, ann)
    # The order the Dart client writes (its query first) and the other way round.
    for query in (f"userId={ann.id}&EIO=4&transport=polling",
                  f"EIO=4&transport=polling&userId={ann.id}&clientType=android"):
        ws = await flutter_socket(server, query)
        try:
            opened = json.loads(await ws.next("0"))
            assert opened["sid"] and opened["pingInterval"] > 0, opened
            await ws.send("40" + json.dumps({"accessToken": ann.token}))
            connected = json.loads(await ws.next("40"))
            assert connected["sid"], connected
            await ws.send("421" + json.dumps(["joinRoom", {"chatHeaderId": chat_id}]))
            (joined,) = json.loads(await ws.next("431"))
            assert joined["joined"] is True and joined["chatHeaderId"] == chat_id, joined
            await ws.send("422" + json.dumps(["createMessage", {
                "message": "from Flutter", "chatHeaderId": chat_id, "messageType": 0}]))
            (reply,) = json.loads(await ws.next("432"))
            assert reply["chatMessage"]["message"] == "from Flutter", reply
            # The room's broadcast reaches the sender too.
            (broadcast,) = json.loads("[" + await ws.next('42["message",'))
            assert broadcast == reply
        finally:
            ws.close()
    got = await b.wait_for("message", 2)
    assert [m["chatMessage"]["userId"] for m in got] == [ann.id, ann.id]


def test_the_engineio_tornado_driver_reads_the_query_that_is_rewritten():
    """The server rewrites ``request.query`` of a WebSocket request before
    python-engineio reads it. If a new python-engineio reads the query elsewhere,
    Flutter apps with default options stop connecting: this fails first."""
    request = tornado.httputil.HTTPServerRequest(
        start_line=tornado.httputil.RequestStartLine(
            "GET", "/socket.io/?EIO=4&transport=polling&userId=x", "HTTP/1.1"),
        headers=tornado.httputil.HTTPHeaders({"Host": "127.0.0.1", "Upgrade": "websocket"}))

    class Handler:
        pass

    handler = Handler()
    handler.request = request
    request.query = as_websocket_query(request.query)
    environ = engineio_tornado.translate_request(handler)
    assert environ["QUERY_STRING"] == "EIO=4&transport=websocket&userId=x", (
        "python-engineio's Tornado driver no longer takes QUERY_STRING from "
        "handler.request.query; syarah/transport/compat.py must rewrite the query where it reads it now")


def test_only_a_polling_transport_is_renamed():
    assert as_websocket_query("EIO=4&transport=polling") == "EIO=4&transport=websocket"
    assert as_websocket_query("transport=polling&EIO=4") == "transport=websocket&EIO=4"
    for kept in ("EIO=4&transport=websocket", "EIO=4&transport=pollingx",
                 "EIO=4&mytransport=polling", "userId=transport%3Dpolling", ""):
        assert as_websocket_query(kept) == kept
