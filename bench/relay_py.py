"""The ceiling of the stack: bare python-socketio on Tornado with its defaults.

It relays each createMessage to the sender's two-member room and acks it, and does
nothing else (no auth, no store). It runs on the event loop the product picks by
default (uvloop when installed), so that the two are compared on the same loop.
Run: python bench/relay_py.py PORT [--no-compression] [--asyncio]
"""

import asyncio
import sys
from urllib.parse import parse_qs

import socketio
import tornado.web

sio = socketio.AsyncServer(async_mode="tornado", cors_allowed_origins="*")
rooms: dict[str, str] = {}


@sio.event
async def connect(sid, environ, auth=None):
    room = parse_qs(environ.get("QUERY_STRING", "")).get("room", [sid])[0]
    rooms[sid] = room
    await sio.enter_room(sid, room)


@sio.event
async def disconnect(sid, *args):
    rooms.pop(sid, None)


@sio.on("createMessage")
async def create_message(sid, data):
    await sio.emit("message", data, room=rooms[sid])
    return data


def handler(compression: bool):
    base = socketio.get_tornado_handler(sio)
    if compression:
        return base

    class Uncompressed(base):
        def get_compression_options(self):
            return None

    return Uncompressed


async def main(port: int, compression: bool = True):
    app = tornado.web.Application([(r"/socket.io/", handler(compression))])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


def loop_factory(force_asyncio: bool):
    if not force_asyncio:
        try:
            import uvloop
            return uvloop.new_event_loop
        except ImportError:
            pass
    return asyncio.new_event_loop


if __name__ == "__main__":
    # --no-compression: the same relay without permessage-deflate, to tell the
    # stack's own per-connection memory from the compressor's.
    with asyncio.Runner(loop_factory=loop_factory("--asyncio" in sys.argv)) as runner:
        runner.run(main(int(sys.argv[1]), "--no-compression" not in sys.argv))
