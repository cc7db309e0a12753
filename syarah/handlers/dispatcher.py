"""The command table and the one place where a socket event becomes a reply.

Each line of EVENTS: the event name as clients send it, the DTO it decodes into, and
the handler that performs it. A handler returns an outbound object (the ack) or raises
a ChatError; ``dispatch`` turns either into what the client receives.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from typing import NamedTuple

import socketio

from syarah.errors import ChatError, Internal, Unavailable, Validation
from syarah.handlers import chats, connection, friendships, messages, rooms
from syarah.handlers.context import Context, Services, SocketState, authenticate
from syarah.protocol import inbound as dto
from syarah.protocol.fields import decode
from syarah.protocol.outbound import to_wire

log = logging.getLogger("syarah.events")


class Route(NamedTuple):
    dto: type
    handler: object


EVENTS: dict[str, Route] = {
    "createMessage":      Route(dto.CreateMessage,      messages.create_message),
    "findAllMessages":    Route(dto.FindAllMessages,    messages.find_all_messages),
    "updateMessage":      Route(dto.UpdateMessage,      messages.update_message),
    "removeMessage":      Route(dto.RemoveMessage,      messages.remove_message),
    "readMessage":        Route(dto.ReadMessage,        messages.read_message),
    "findAllChatHeaders": Route(dto.FindAllChatHeaders, chats.find_all_chat_headers),
    "getMyChats":         Route(dto.GetMyChats,         chats.get_my_chats),
    "joinRoom":           Route(dto.JoinRoom,           rooms.join_room),
    "leaveRoom":          Route(dto.LeaveRoom,          rooms.leave_room),
    "roomTyping":         Route(dto.RoomTyping,         rooms.room_typing),
    "getMyFriendships":   Route(dto.GetMyFriendships,   friendships.get_my_friendships),
}

# Whether the client asked for an ack: python-socketio does not pass the packet id to
# handlers, so ChatServer records it for the task that handles the event.
ack_requested: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "ack_requested", default=True)


class ChatServer(socketio.AsyncServer):
    async def _handle_event_internal(self, server, sid, eio_sid, data, namespace, id):
        ack_requested.set(id is not None)
        return await super()._handle_event_internal(
            server, sid, eio_sid, data, namespace, id)


class EventObserver:
    """Hook for metrics and logs; the production issue fills it in."""

    def event_done(self, event: str, outcome: str, seconds: float) -> None:
        pass

    def connections_changed(self, delta: int) -> None:
        pass


class ChatNamespace(socketio.AsyncNamespace):
    def __init__(self, services: Services, observer: EventObserver | None = None):
        super().__init__("/")
        self.services = services
        self.sockets: dict[str, SocketState] = {}
        self.observer = observer or EventObserver()
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    async def drain(self, timeout: float) -> bool:
        """Refuse new events and wait for those under way (graceful shutdown)."""
        self.draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            log.warning("%d events still running at shutdown", self.in_flight)
            return False

    async def trigger_event(self, event, *args):
        if event == "connect":
            return await self.on_connect(*args)
        if event == "disconnect":
            return await self.on_disconnect(args[0])
        return await self.dispatch(event, args[0], args[1:])

    async def on_connect(self, sid, environ, auth=None):
        try:
            socket = await connection.open_socket(self.services, sid, environ, auth)
        except ChatError as exc:
            log.info("connection refused: %s", exc.message)
            raise socketio.exceptions.ConnectionRefusedError(exc.message)
        except Exception:
            log.exception("connection failed")
            raise socketio.exceptions.ConnectionRefusedError(Internal().message)
        self.sockets[sid] = socket
        self.observer.connections_changed(+1)

    async def on_disconnect(self, sid):
        socket = self.sockets.pop(sid, None)
        if socket is None:
            return
        self.observer.connections_changed(-1)
        try:
            await connection.close_socket(self.services, socket)
        except Exception:
            log.exception("disconnect of %s not completed", sid)

    async def dispatch(self, event: str, sid: str, args: tuple):
        started = time.perf_counter()
        self.in_flight += 1
        self._idle.clear()
        try:
            return await self._dispatch(event, sid, args, started)
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def _dispatch(self, event: str, sid: str, args: tuple, started: float):
        try:
            if self.draining:
                raise Unavailable("The server is restarting; try again in a moment.")
            route = EVENTS.get(event)
            if route is None:
                raise Validation(f"Unknown event {event!r}.")
            socket = self.sockets.get(sid)
            if socket is None:
                raise Validation("This socket is not connected.")
            e = decode(route.dto, args[0] if args else None)
            user = await authenticate(self.services, socket, e.access_token)
            ctx = Context(self.services, user, sid, socket)
            reply = to_wire(await route.handler(ctx, e))
            outcome = "ok"
        except ChatError as exc:
            reply, outcome = exc.reply(), exc.code
            log.debug("%s from %s: %s %s", event, sid, exc.code, exc.message)
        except Exception:
            log.exception("%s from %s failed", event, sid)
            reply, outcome = Internal().reply(), "INTERNAL"
        self.observer.event_done(event, outcome, time.perf_counter() - started)
        if outcome != "ok" and not ack_requested.get():
            await self.emit("exception", dict(reply, event=event), to=sid)
            return None
        return reply
