"""The ceiling of the stack: bare python-socketio on Tornado with its defaults.

It relays each createMessage to the sender's two-member room and acks it, and does
nothing else (no auth, no store). Run: python bench/relay_py.py PORT
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


async def main(port: int):
    app = tornado.web.Application([(r"/socket.io/", socketio.get_tornado_handler(sio))])
    app.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
