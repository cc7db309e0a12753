"""Who is online and who is viewing which chat.

Handlers and push talk to the ``Presence`` interface only. ``LocalPresence`` keeps it
in this process; a Redis-backed one serves several nodes with the same methods.
"""

from __future__ import annotations

from collections import defaultdict


class Presence:
    async def add_socket(self, user_id: str, sid: str) -> bool:
        """Record a connected socket; True when it is the user's first."""
        raise NotImplementedError

    async def remove_socket(self, user_id: str, sid: str) -> bool:
        """Forget a socket and what it viewed; True when it was the user's last."""
        raise NotImplementedError

    async def online(self, user_ids) -> set[str]:
        raise NotImplementedError

    async def set_viewing(self, user_id: str, sid: str, chat_id: int) -> None:
        raise NotImplementedError

    async def clear_viewing(self, user_id: str, sid: str, chat_id: int) -> None:
        raise NotImplementedError

    async def viewing(self, chat_id: int, user_ids) -> set[str]:
        """Those of ``user_ids`` with at least one socket viewing ``chat_id``."""
        raise NotImplementedError

    async def removed_from_chat(self, user_id: str, chat_id: int) -> None:
        """A user is no longer a member of a chat and this node has taken its own
        sockets of theirs out of its room: every other node does the same."""
        raise NotImplementedError

    async def socket_count(self) -> int:
        raise NotImplementedError


class LocalPresence(Presence):
    def __init__(self):
        self._sockets: dict[str, set[str]] = defaultdict(set)
        # chat id -> user id -> the sockets of that user viewing it
        self._viewers: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._viewed_by_socket: dict[str, set[int]] = defaultdict(set)

    async def add_socket(self, user_id, sid):
        sockets = self._sockets[user_id]
        first = not sockets
        sockets.add(sid)
        return first

    async def remove_socket(self, user_id, sid):
        for chat_id in self._viewed_by_socket.pop(sid, ()):
            self._drop_viewer(chat_id, user_id, sid)
        sockets = self._sockets.get(user_id)
        if not sockets or sid not in sockets:
            return False
        sockets.discard(sid)
        if not sockets:
            del self._sockets[user_id]
            return True
        return False

    async def online(self, user_ids):
        return {u for u in user_ids if u in self._sockets}

    async def set_viewing(self, user_id, sid, chat_id):
        self._viewers[chat_id][user_id].add(sid)
        self._viewed_by_socket[sid].add(chat_id)

    async def clear_viewing(self, user_id, sid, chat_id):
        self._viewed_by_socket.get(sid, set()).discard(chat_id)
        self._drop_viewer(chat_id, user_id, sid)

    def _drop_viewer(self, chat_id, user_id, sid):
        users = self._viewers.get(chat_id)
        if not users:
            return
        sockets = users.get(user_id)
        if sockets is not None:
            sockets.discard(sid)
            if not sockets:
                del users[user_id]
        if not users:
            del self._viewers[chat_id]

    async def viewing(self, chat_id, user_ids):
        users = self._viewers.get(chat_id) or {}
        return {u for u in user_ids if u in users}

    async def removed_from_chat(self, user_id, chat_id):
        pass    # this process is the whole server: the caller's own eviction was all

    async def socket_count(self):
        return sum(len(s) for s in self._sockets.values())
