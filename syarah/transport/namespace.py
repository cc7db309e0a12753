"""The Socket.IO namespace: the life of each socket (connect, prove, expire, close)
and the one place where an event becomes a handler call and its result a reply.

The route table (syarah.handlers.routes) says what each event decodes into and which
handler performs it; this module applies each route's policy, builds the handler's
Context, and renders what comes back, or the ChatError raised, for the client.
"""

from __future__ import annotations

import asyncio
import logging
import time

import socketio

from syarah.errors import (BUSY, ChatError, Internal, RateLimited, Unauthorized, Unavailable,
                           Validation)
from syarah.handlers import connection, recovery
from syarah.handlers.context import Context, Services
from syarah.handlers.routes import EVENTS
from syarah.periodic import Periodic
from syarah.protocol.fields import decode
from syarah.protocol.outbound import to_wire
from syarah.transport import compat, handshake
from syarah.transport.registry import SocketRegistry, SocketState
from syarah.transport.sockets import UnreadablePayload
from syarah.types import User

log = logging.getLogger("syarah.events")

# Outcomes that mean the server, not the client, is in trouble: logged at warning.
SERVER_TROUBLE = ("UNAVAILABLE", "INTERNAL")

# How often expired sockets are looked for at most; a token's expiry is known to the
# second, and its leeway is tens of seconds.
EXPIRY_SWEEP_SECONDS = 1.0


class Gone(Exception):
    """The transport closed while the socket was being accepted or proven."""


class EventObserver:
    """Hook for metrics and logs (syarah.metrics.MetricsObserver)."""

    def event_done(self, event: str, outcome: str, seconds: float) -> None:
        pass

    def connection_refused(self, code: str) -> None:
        pass


def render(exc: ChatError) -> dict:
    """A ChatError as the client reads it: {error, code}."""
    return exc.reply()


class ChatNamespace(socketio.AsyncNamespace):
    def __init__(self, services: Services, registry: SocketRegistry | None = None,
                 observer: EventObserver | None = None, limits=None):
        super().__init__("/")
        self.services = services
        self.registry = registry if registry is not None else SocketRegistry(
            services.settings.jwt_leeway, services.clock)
        self.observer = observer or EventObserver()
        # syarah.ratelimit.Limits; None: nothing is limited
        self.limits = limits
        self._background: set[asyncio.Task] = set()
        self._sweeper = Periodic(EXPIRY_SWEEP_SECONDS, self.expire_due,
                                 "closing expired sockets")
        self.in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    # -- running ------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper.start()

    async def drain(self, timeout: float) -> bool:
        """Refuse new events and wait for those under way (graceful shutdown)."""
        self.draining = True
        await self._sweeper.stop()
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

    async def _counted(self, work):
        self.in_flight += 1
        self._idle.clear()
        try:
            return await work
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    def _soon(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- connect ------------------------------------------------------------------

    async def on_connect(self, sid, environ, auth=None):
        try:
            await self._accept(sid, environ, auth)
        except Gone:
            # Nobody is left to read a refusal; the library forgets the sid.
            log.debug("connection %s closed while it was being accepted", sid)
            raise socketio.exceptions.ConnectionRefusedError("gone")
        except ChatError as exc:
            address = handshake.remote_address(environ)
            log.info("connection from %s refused: %s %s", address, exc.code, exc.message)
            self.observer.connection_refused(exc.code)
            # The code travels as the connect_error's data, beside the readable message.
            raise socketio.exceptions.ConnectionRefusedError(exc.message, {"code": exc.code})
        except Exception:
            log.exception("connection failed")
            self.observer.connection_refused("INTERNAL")
            raise socketio.exceptions.ConnectionRefusedError(
                Internal().message, {"code": "INTERNAL"})
        compat.keep_what_is_read(environ)

    async def _accept(self, sid: str, environ: dict, auth) -> None:
        services, limits = self.services, self.limits
        if self.draining:
            raise Unavailable("The server is restarting; connect again in a moment.")
        hs = handshake.read(environ, auth)
        if limits is not None:
            limits.check("connect", address=hs.address)
        identity, user_id = None, hs.user_id
        if hs.token:
            identity = services.verifier.verify(hs.token)
            if user_id is not None and identity.user.id != user_id:
                raise Unauthorized("The access token belongs to another user than userId.")
            user_id = identity.user.id
        elif services.settings.require_connect_token:
            raise Unauthorized("This server requires an access token to connect: "
                               "pass auth: {accessToken}.")
        if user_id is None:
            raise Validation("The userId query parameter is required.")
        if limits is not None and identity is not None:
            # Only a verified token names the user here: a claimed userId alone would
            # let anyone use up another user's connection budget.
            limits.check("connect", user_id=user_id)
        if identity is not None:
            await services.users.ensure(identity.user, identity.issued_at)
        socket = SocketState(sid=sid, user_id=user_id, client_type=hs.client_type,
                             address=hs.address, connect_identity=identity)
        elsewhere, shared = 0, limits.shared if limits is not None else None
        if limits is not None:
            # This node's own count first: a refusal here needs no one else.
            refusal = self.registry.over_cap(socket, limits.max_sockets_per_user,
                                             limits.max_tokenless_per_address)
            if refusal:
                raise RateLimited(refusal)
            if shared is not None:
                # The sockets on the other nodes count too: the user's, or for a
                # tokenless socket, those from its address.
                if identity is not None:
                    # The same round trip spends the user's shared connect bucket,
                    # and checks and counts the socket across the nodes in one step:
                    # connects of the user on two nodes at once cannot both pass.
                    elsewhere, over = await limits.connect_shared(
                        user_id, sid, self.registry.proven_sockets.get(user_id, 0))
                    if over:
                        raise RateLimited(self.registry.cap_refusal(
                            socket, limits.max_sockets_per_user,
                            limits.max_tokenless_per_address))
                elif limits.max_tokenless_per_address > 0:
                    elsewhere = await shared.address_elsewhere(socket.address or "?")
        try:
            if shared is not None:
                # Again after that wait, which let other connects in. From this check
                # to the registration nothing waits, so concurrent connects on this
                # node cannot pass the cap together.
                refusal = self.registry.over_cap(socket, limits.max_sockets_per_user,
                                                 limits.max_tokenless_per_address,
                                                 elsewhere=elsewhere)
                if refusal:
                    raise RateLimited(refusal)
            if not compat.is_open(self.server, sid):
                raise Gone()
        except BaseException:
            if shared is not None and identity is not None:
                # Counted in Redis by the check above: taken back.
                await shared.release(user_id, sid)
            raise
        self.registry.add(socket)
        if shared is not None and identity is None:
            await shared.address_changed(socket.address or "?")
        if identity is not None:
            await self._prove(socket)
            if elsewhere:
                # Now that this node's count is in Redis, the other nodes may look.
                await shared.spreading(user_id)
        if services.settings.recovery_window > 0:
            await self._recover(socket, auth)
        if socket.closed or not compat.is_open(self.server, sid):
            await self._release(socket)
            raise Gone()
        if socket.pid is not None:
            compat.add_to_connect_reply(self.server, sid, pid=socket.pid)

    async def _recover(self, socket: SocketState, auth) -> None:
        """socket.io-client (4.6 and later) presents the pid of its previous socket in
        its auth; the same pid in the reply tells it the rooms are back. Only a
        token-proven socket can take a session over."""
        pid = auth.get("pid") if isinstance(auth, dict) else None
        if pid is not None and socket.proven:
            restored = await recovery.recover(self.services, pid, socket.user_id, socket.sid)
            if restored is not None:
                socket.pid, socket.saved = pid, True
                log.debug("%s recovered %d rooms of session %s", socket.sid,
                          len(restored), pid)
                return
        socket.pid = recovery.new_pid()

    async def _prove(self, socket: SocketState) -> None:
        """A token proved the socket is its user's: it hears what is addressed to the
        user and counts for presence."""
        socket.proven = True
        await self.services.rooms.join_user(socket.sid, socket.user_id)
        await connection.socket_proven(self.services, socket.user_id, socket.sid,
                                       socket.client_type)
        if socket.closed:
            # Closed while presence was being written: undo what was just added.
            await connection.proven_socket_gone(self.services, socket.user_id,
                                                socket.sid, socket.client_type)

    # -- close --------------------------------------------------------------------

    async def on_disconnect(self, sid, reason=None):
        if reason == self.server.reason.CLIENT_DISCONNECT:
            compat.release_long_poll(self.server, sid)
        socket = self.registry.get(sid)
        if socket is not None:
            await self._release(socket)

    async def _release(self, socket: SocketState) -> None:
        """Forget a socket that is gone; whichever path notices first does it, once."""
        if socket.closed:
            return
        socket.closed = True
        self.registry.remove(socket.sid)
        shared = self.limits.shared if self.limits is not None else None
        if shared is not None and socket.user_id not in self.registry.user_sockets:
            shared.spread.discard(socket.user_id)
        try:
            if shared is not None and socket.connect_identity is None:
                await shared.address_changed(socket.address or "?")
            if socket.proven:
                await connection.proven_socket_gone(self.services, socket.user_id,
                                                    socket.sid, socket.client_type)
            if socket.saved:
                await recovery.gone(self.services, socket.pid)
        except Exception:
            log.exception("disconnect of %s not completed", socket.sid)

    # -- expiry -------------------------------------------------------------------

    async def expire_due(self) -> int:
        """Close every socket whose token has run out, at the Engine.IO level, so the
        client reconnects by itself and asks its auth function for a fresh token."""
        due = self.registry.expired()
        for socket in due:
            log.info("closing %s of %s: its access token has expired", socket.sid,
                     socket.user_id)
            # Each close runs its disconnect (presence, through the store): side by
            # side, so that many tokens running out together do not queue.
            self._soon(compat.close_transport(self.server, socket.sid))
        return len(due)

    # -- events -------------------------------------------------------------------

    async def dispatch(self, event: str, sid: str, args: tuple):
        return await self._counted(
            self._dispatch(event, sid, args, time.perf_counter()))

    async def _dispatch(self, event: str, sid: str, args: tuple, started: float):
        try:
            if self.draining:
                raise Unavailable("The server is restarting; try again in a moment.")
            route = EVENTS.get(event)
            if route is None:
                raise Validation(f"Unknown event {event!r}.")
            if route.policy.sheds and self._behind():
                raise Unavailable(BUSY)
            socket = self.registry.get(sid)
            if socket is None:
                raise Validation("This socket is not connected.")
            if self.registry.is_expired(socket):
                # After the reply has been queued, so the client learns why.
                self._soon(self._close_later(sid))
                raise Unauthorized("The access token of this connection has expired; "
                                   "connect again with a fresh one.")
            limits = self.limits
            if limits is not None:
                limits.check(event, address=socket.address)
            payload = args[0] if args else None
            if isinstance(payload, UnreadablePayload):
                raise Validation(payload.reason)
            e = decode(route.dto, payload)
            user = await self._caller(socket, e.access_token)
            if limits is not None:
                # A user whose sockets are all here costs one set lookup: no
                # coroutine, no Redis.
                shared = limits.shared
                if shared is not None and user.id in shared.spread:
                    await limits.check_user(event, user.id)
                else:
                    limits.check(event, user_id=user.id)
                if route.policy.room_cap:
                    self._check_room_cap(socket, e)
            ctx = Context(self.services, user, sid, socket.client_type)
            reply = to_wire(await route.handler(ctx, e))
            if route.policy.saves_rooms and socket.pid is not None:
                await recovery.remember(self.services, socket.pid, socket.user_id,
                                        socket.joined)
                socket.saved = True
            outcome = "ok"
        except ChatError as exc:
            reply, outcome = render(exc), exc.code
            (log.warning if outcome in SERVER_TROUBLE else log.debug)(
                "%s from %s: %s %s", event, sid, exc.code, exc.message)
        except Exception:
            log.exception("%s from %s failed", event, sid)
            reply, outcome = render(Internal()), "INTERNAL"
        seconds = time.perf_counter() - started
        if outcome == "ok":
            log.debug("%s from %s: ok in %.1f ms", event, sid, seconds * 1000)
        self.observer.event_done(event, outcome, seconds)
        if outcome != "ok" and not compat.ack_requested.get():
            await self.emit("exception", dict(reply, event=event), to=sid)
            return None
        return reply

    def _behind(self) -> bool:
        """Whether the client of this event has been ahead of the server (its frames
        waiting to be read) for busy_after_ms."""
        since = compat.ahead_since.get()
        if since is None:
            return False
        limit = self.services.settings.busy_after_ms
        return bool(limit) and asyncio.get_running_loop().time() - since >= limit / 1000

    async def _caller(self, socket: SocketState, token: str | None) -> User:
        """The caller of an event: the event's own token wins, else what the socket
        proved, while unexpired."""
        services = self.services
        if token:
            identity = services.verifier.verify(token)
            if identity.user.id != socket.user_id:
                raise Unauthorized("The access token belongs to another user than this "
                                   "socket.")
            user = await services.users.ensure(identity.user, identity.issued_at)
            socket.event_identity = identity
            self.registry.note_proof(socket, identity)
            if not socket.proven:
                await self._prove(socket)
            return user
        identity = self.registry.current_identity(socket)
        if identity is None:
            if not socket.identities():
                raise Unauthorized("An access token is required: send accessToken with "
                                   "the event or connect with auth: {accessToken}.")
            raise Unauthorized("The access token has expired.")
        return await services.users.ensure(identity.user, identity.issued_at)

    def _check_room_cap(self, socket: SocketState, e) -> None:
        cap = self.limits.max_rooms_per_socket
        if cap > 0 and len(socket.joined) >= cap and e.chat_header_id not in socket.joined:
            raise RateLimited(f"This connection has joined {cap} chats, the most allowed; "
                              "leave one first.")

    async def _close_later(self, sid: str) -> None:
        await asyncio.sleep(0.05)
        await compat.close_transport(self.server, sid)

