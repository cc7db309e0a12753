"""What a handler is given: the services it may use and the caller it acts for."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from syarah.auth import LEEWAY_SECONDS, Identity, TokenVerifier
from syarah.errors import Unauthorized
from syarah.protocol.outbound import to_wire
from syarah.types import User


def now_ms() -> int:
    return int(time.time() * 1000)


def chat_room(chat_id: int) -> str:
    return f"chat:{chat_id}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class Rooms:
    """Socket.IO rooms and emits, in the product's words. With a Redis manager the
    same calls reach sockets on every node."""

    def __init__(self, sio):
        self.sio = sio
        # sid -> the chats whose rooms it is in on this node: the one record of it that
        # the room cap, roomTyping and group removal all read.
        self._joined: dict[str, set[int]] = {}

    async def to_chat(self, chat_id: int, event: str, data: Any, skip_sid: str | None = None):
        await self.sio.emit(event, to_wire(data), room=chat_room(chat_id),
                            skip_sid=skip_sid)

    async def to_users(self, user_ids, event: str, data: Any):
        rooms = [user_room(u) for u in dict.fromkeys(user_ids)]
        if rooms:
            await self.sio.emit(event, to_wire(data), to=rooms)

    async def to_socket(self, sid: str, event: str, data: Any):
        await self.sio.emit(event, to_wire(data), to=sid)

    async def join(self, sid: str, chat_id: int):
        await self.sio.enter_room(sid, chat_room(chat_id))
        self._joined.setdefault(sid, set()).add(chat_id)

    async def leave(self, sid: str, chat_id: int):
        await self.sio.leave_room(sid, chat_room(chat_id))
        self.joined(sid).discard(chat_id)

    def joined(self, sid: str) -> set[int]:
        return self._joined.get(sid, set())

    def has_joined(self, sid: str, chat_id: int) -> bool:
        return chat_id in self.joined(sid)

    def forget(self, sid: str) -> None:
        """The socket is gone (python-socketio empties its rooms itself)."""
        self._joined.pop(sid, None)

    async def evict(self, user_id: str, chat_id: int) -> list[str]:
        """Take a user's sockets on this node out of a chat's room (removed from a
        group), so that the room's broadcasts stop reaching them. Returns their sids."""
        sids = [sid for sid, _ in self.sio.manager.get_participants("/", user_room(user_id))]
        for sid in sids:
            await self.leave(sid, chat_id)
        return sids

    async def join_user(self, sid: str, user_id: str):
        await self.sio.enter_room(sid, user_room(user_id))


# How long a user's stored name and avatar are trusted without a look at the store: a
# rename through the service API on another node shows here within this time.
PROFILE_TTL_SECONDS = 60.0


class UserDirectory:
    """Keeps the users table in step with token claims without a write per event, and
    answers who the caller is as the store knows them (a rename through the service
    API wins over the claims of a token issued before it)."""

    def __init__(self, store):
        self.store = store
        # user id -> (the claims last applied, the stored profile, when to look again)
        self._seen: dict[str, tuple[User, User, float]] = {}

    async def ensure(self, user: User, issued_at: float | None = None) -> User:
        """The caller's profile as stored, after applying the token's claims."""
        seen = self._seen.get(user.id)
        if seen is not None and seen[0] == user and seen[2] > time.monotonic():
            return seen[1]
        issued_ms = int(issued_at * 1000) if issued_at is not None else None
        stored = await self.store.update_user_from_claims(user, now_ms(), issued_ms)
        if len(self._seen) >= 100_000:
            self._seen.clear()
        self._seen[user.id] = (user, stored, time.monotonic() + PROFILE_TTL_SECONDS)
        return stored

    def renamed(self, user: User):
        """The service API changed a profile: later events show it at once."""
        seen = self._seen.get(user.id)
        if seen is not None:
            self._seen[user.id] = (seen[0], user, seen[2])


@dataclass
class Services:
    store: Any
    presence: Any
    verifier: TokenVerifier
    rooms: Rooms
    users: UserDirectory
    settings: Any
    media: Any = None
    push: Any = None
    limits: Any = None   # syarah.ratelimit.Limits; None: nothing is limited


@dataclass
class SocketState:
    """One connected socket: whom it claims to be and what it has proven."""

    sid: str
    user_id: str
    client_type: str
    # Set when the connection, or any event on it, carried a valid token for user_id.
    identity: Identity | None = None
    connect_identity: Identity | None = None
    # The client's address as Tornado sees it (the proxy's X-Real-Ip with xheaders).
    address: str | None = None
    # In the user's personal room (user-addressed events such as clientStatus): only
    # once a token has proven the socket is that user's.
    personal: bool = False


async def prove(services: "Services", socket: SocketState) -> None:
    """The socket's identity is proven: let it hear what is addressed to its user."""
    if not socket.personal:
        await services.rooms.join_user(socket.sid, socket.user_id)
        socket.personal = True


@dataclass
class Context:
    services: Services
    user: User
    sid: str | None = None
    socket: SocketState | None = None


async def authenticate(services: Services, socket: SocketState,
                       token: str | None) -> User:
    """The caller of an event: the event's own token wins, else what the socket proved."""
    if token:
        identity = services.verifier.verify(token)
        if identity.user.id != socket.user_id:
            raise Unauthorized("The access token belongs to another user than this socket.")
        user = await services.users.ensure(identity.user, identity.issued_at)
        socket.identity = identity
        await prove(services, socket)
        return user
    proven = [i for i in (socket.identity, socket.connect_identity) if i is not None]
    if not proven:
        raise Unauthorized("An access token is required: send accessToken with the "
                           "event or connect with auth: {accessToken}.")
    # The latest token an event brought, else the connection's own, while unexpired.
    now = time.time()
    for identity in proven:
        if identity.expires_at + LEEWAY_SECONDS >= now:
            socket.identity = identity
            return await services.users.ensure(identity.user, identity.issued_at)
    socket.identity = None
    raise Unauthorized("The access token has expired.")


def connection_expired(socket: SocketState) -> bool:
    """The token the socket connected with has run out: the socket's identity, its
    personal room and presence rest on it, so the socket must reconnect."""
    identity = socket.connect_identity
    return identity is not None and identity.expires_at + LEEWAY_SECONDS < time.time()


def remote_address(environ: dict) -> str | None:
    # python-engineio's Tornado driver puts a fixed 127.0.0.1 in REMOTE_ADDR; the
    # request itself knows the peer (or, with xheaders, the proxy's X-Real-Ip).
    handler = environ.get("tornado.handler")
    if handler is not None:
        return handler.request.remote_ip
    return environ.get("REMOTE_ADDR")
