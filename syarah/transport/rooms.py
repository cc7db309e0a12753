"""Socket.IO rooms and emits, in the product's words: what handlers broadcast through.
With a Redis manager the same calls reach sockets on every node."""

from __future__ import annotations

from typing import Any

from syarah.protocol.outbound import to_wire
from syarah.transport.registry import SocketRegistry


def chat_room(chat_id: int) -> str:
    return f"chat:{chat_id}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


class Rooms:
    def __init__(self, sio, registry: SocketRegistry):
        self.sio = sio
        self.registry = registry

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
        socket = self.registry.get(sid)
        if socket is not None:
            socket.joined.add(chat_id)

    async def leave(self, sid: str, chat_id: int):
        await self.sio.leave_room(sid, chat_room(chat_id))
        self.joined(sid).discard(chat_id)

    def joined(self, sid: str) -> set[int]:
        socket = self.registry.get(sid)
        return socket.joined if socket is not None else set()

    def has_joined(self, sid: str, chat_id: int) -> bool:
        return chat_id in self.joined(sid)

    async def evict(self, user_id: str, chat_id: int) -> list[str]:
        """Take a user's sockets on this node out of a chat's room (removed from a
        group), so that the room's broadcasts stop reaching them. Returns their sids."""
        sids = [sid for sid, _ in self.sio.manager.get_participants("/", user_room(user_id))]
        for sid in sids:
            await self.leave(sid, chat_id)
        return sids

    async def join_user(self, sid: str, user_id: str):
        await self.sio.enter_room(sid, user_room(user_id))
