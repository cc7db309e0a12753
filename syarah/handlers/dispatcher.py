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

from syarah.errors import ChatError, Internal, RateLimited, Unauthorized, Unavailable, Validation
from syarah.handlers import chats, connection, friendships, messages, rooms
from syarah.handlers.context import (
    Context, Services, SocketState, authenticate, connection_expired, remote_address)
from syarah.protocol import inbound as dto
from syarah.protocol.fields import decode
from syarah.protocol.outbound import to_wire
from syarah.sockets import DecodeGuard, UnreadablePayload

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


class ChatServer(DecodeGuard, socketio.AsyncServer):
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

    def connection_refused(self, code: str) -> None:
        pass


# Outcomes that mean the server, not the client, is in trouble: logged at warning.
SERVER_TROUBLE = ("UNAVAILABLE", "INTERNAL")


def _bump(counts: dict, key, delta: int) -> None:
    left = counts.get(key, 0) + delta
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class ChatNamespace(socketio.AsyncNamespace):
    def __init__(self, services: Services, observer: EventObserver | None = None,
                 limits=None):
        super().__init__("/")
        self.services = services
        self.sockets: dict[str, SocketState] = {}
        # user id -> how many of the user's sockets this node holds
        self.user_sockets: dict[str, int] = {}
        self.proven_sockets: dict[str, int] = {}
        self.tokenless_sockets: dict[str, int] = {}
        self.observer = observer or EventObserver()
        # syarah.ratelimit.Limits; None: nothing is limited
        self.limits = limits
        self._background: set[asyncio.Task] = set()
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
        # Connects and disconnects use the store too: counted as work under way, so
        # a shutdown waits for them before it closes the store.
        if event == "connect":
            return await self._counted(self.on_connect(*args))
        if event == "disconnect":
            return await self._counted(self.on_disconnect(*args[:2]))
        return await self.dispatch(event, args[0], args[1:])

    async def on_connect(self, sid, environ, auth=None):
        address = remote_address(environ)
        try:
            if self.draining:
                raise Unavailable("The server is restarting; connect again in a moment.")
            self._check_connect(environ, auth, address)
            socket = await connection.open_socket(self.services, sid, environ, auth)
            socket.address = address
            refusal = self._over_socket_cap(socket)
            if refusal:
                await connection.close_socket(self.services, socket)
                raise RateLimited(refusal)
        except ChatError as exc:
            log.info("connection from %s refused: %s %s", address, exc.code, exc.message)
            self.observer.connection_refused(exc.code)
            # The code travels as the connect_error's data, beside the readable message.
            raise socketio.exceptions.ConnectionRefusedError(exc.message, {"code": exc.code})
        except Exception:
            log.exception("connection failed")
            self.observer.connection_refused("INTERNAL")
            raise socketio.exceptions.ConnectionRefusedError(
                Internal().message, {"code": "INTERNAL"})
        self.sockets[sid] = socket
        _bump(self.user_sockets, socket.user_id, +1)
        _bump(*self._cap_count(socket), +1)
        self.observer.connections_changed(+1)

    def _check_connect(self, environ, auth, address):
        if self.limits is None or not self.limits.limits("connect"):
            return
        # Only a verified token names the user here: a claimed userId alone would let
        # anyone use up another user's connection budget.
        user_id = None
        token = connection.connection_token(environ, auth)
        if token:
            try:
                user_id = self.services.verifier.verify(token).user.id
            except ChatError:
                pass
        self.limits.check("connect", user_id=user_id, address=address)

    def _cap_count(self, socket: SocketState) -> tuple[dict, str]:
        # A token-proven socket counts against its user; a tokenless one only claims a
        # userId, so it counts against its address (else anyone could use up another
        # user's sockets by naming them).
        if socket.connect_identity is not None:
            return self.proven_sockets, socket.user_id
        return self.tokenless_sockets, socket.address or "?"

    def _over_socket_cap(self, socket: SocketState) -> str | None:
        if self.limits is None:
            return None
        counts, key = self._cap_count(socket)
        if counts is self.proven_sockets:
            cap = self.limits.max_sockets_per_user
            message = f"You have {cap} connections open, the most allowed; close one first."
        else:
            cap = self.limits.max_tokenless_per_address
            message = (f"{cap} connections without an access token are open from your "
                       "address; connect with auth: {accessToken}.")
        return message if cap > 0 and counts.get(key, 0) >= cap else None

    async def on_disconnect(self, sid, reason=None):
        if reason == self.server.reason.CLIENT_DISCONNECT:
            self._release_long_poll(sid)
        self.services.rooms.forget(sid)
        socket = self.sockets.pop(sid, None)
        if socket is None:
            return
        _bump(self.user_sockets, socket.user_id, -1)
        _bump(*self._cap_count(socket), -1)
        self.observer.connections_changed(-1)
        try:
            await connection.close_socket(self.services, socket)
        except Exception:
            log.exception("disconnect of %s not completed", sid)

    def _release_long_poll(self, sid: str) -> None:
        """A polling client that says goodbye still has a GET waiting for packets;
        python-engineio would hold it until ping_interval + ping_timeout (45 s) ran
        out. An empty wake-up answers it now, as Node's engine.io does."""
        try:
            eio_sid = self.server.manager.eio_sid_from_sid(sid, "/")
            eio_socket = self.server.eio.sockets.get(eio_sid)
            if eio_socket is not None and not eio_socket.upgraded:
                eio_socket.queue.put_nowait(None)
        except Exception:   # internals of the library: never let this break a disconnect
            log.debug("long poll of %s not released", sid, exc_info=True)

    async def dispatch(self, event: str, sid: str, args: tuple):
        return await self._counted(
            self._dispatch(event, sid, args, time.perf_counter()))

    async def _counted(self, work):
        self.in_flight += 1
        self._idle.clear()
        try:
            return await work
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
            if connection_expired(socket):
                self._disconnect_soon(sid)
                raise Unauthorized("The access token of this connection has expired; "
                                   "connect again with a fresh one.")
            limits = self.limits
            if limits is not None:
                limits.check(event, address=socket.address)
            payload = args[0] if args else None
            if isinstance(payload, UnreadablePayload):
                raise Validation(payload.reason)
            e = decode(route.dto, payload)
            user = await authenticate(self.services, socket, e.access_token)
            if limits is not None:
                limits.check(event, user_id=user.id)
                if event == "joinRoom":
                    self._check_room_cap(socket, e)
            ctx = Context(self.services, user, sid, socket)
            reply = to_wire(await route.handler(ctx, e))
            outcome = "ok"
        except ChatError as exc:
            reply, outcome = exc.reply(), exc.code
            (log.warning if outcome in SERVER_TROUBLE else log.debug)(
                "%s from %s: %s %s", event, sid, exc.code, exc.message)
        except Exception:
            log.exception("%s from %s failed", event, sid)
            reply, outcome = Internal().reply(), "INTERNAL"
        seconds = time.perf_counter() - started
        if outcome == "ok":
            log.debug("%s from %s: ok in %.1f ms", event, sid, seconds * 1000)
        self.observer.event_done(event, outcome, seconds)
        if outcome != "ok" and not ack_requested.get():
            await self.emit("exception", dict(reply, event=event), to=sid)
            return None
        return reply

    def _check_room_cap(self, socket: SocketState, e) -> None:
        cap = self.limits.max_rooms_per_socket
        joined = self.services.rooms.joined(socket.sid)
        if cap > 0 and len(joined) >= cap and e.chat_header_id not in joined:
            raise RateLimited(f"This connection has joined {cap} chats, the most allowed; "
                              "leave one first.")

    def _disconnect_soon(self, sid: str) -> None:
        """Disconnect after the reply to the current event has been queued, so the
        client learns why before the socket closes."""
        async def later():
            await asyncio.sleep(0.05)
            await self.disconnect(sid)

        task = asyncio.ensure_future(later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
