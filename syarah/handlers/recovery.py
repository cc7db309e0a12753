"""Connection state recovery: a socket that reconnects presenting the pid of the one
it replaces gets back that socket's chat rooms and the viewing state behind push, on
any node and after a restart, so the app needs no rejoin. The session is bound to
its user: a pid is worthless without that user's token. Missed messages are not
replayed; the client asks findAllChatHeaders for them.
"""

from __future__ import annotations

import logging
import re
import secrets

from syarah.errors import ChatError
from syarah.handlers.context import Services

log = logging.getLogger("syarah.recovery")

_PID = re.compile(r"^[0-9a-f]{32}$")

# A session whose node never said the socket left (it died) is kept this long after
# its last change, then pruned.
STALE_SESSION_MS = 24 * 3600 * 1000


def new_pid() -> str:
    return secrets.token_hex(16)


async def recover(services: Services, pid, user_id: str, sid: str) -> list[int] | None:
    """The chats restored to ``sid`` from the session ``pid``, or None when there is
    no such session for this user within the recovery window."""
    if not isinstance(pid, str) or not _PID.match(pid):
        return None
    store, now = services.store, services.clock.now_ms()
    try:
        session = await store.recovery_session(pid)
        if session is None or session.user_id != user_id:
            return None
        if session.expires_ms is not None and session.expires_ms < now:
            return None
        # Membership may have ended meanwhile (removed from a group).
        chat_ids = await store.member_of(user_id, session.chat_ids)
        for chat_id in chat_ids:
            await services.rooms.join(sid, chat_id)
            await services.presence.set_viewing(user_id, sid, chat_id)
        # Connected again: the session lasts until this socket goes.
        await store.save_recovery(pid, user_id, chat_ids, now)
    except ChatError as exc:
        log.warning("session of %s not recovered: %s", user_id, exc.message)
        return None
    return chat_ids


async def remember(services: Services, pid: str, user_id: str, chat_ids) -> None:
    """The socket's rooms changed: written now, so that nothing is written per
    message."""
    try:
        await services.store.save_recovery(pid, user_id, sorted(chat_ids),
                                           services.clock.now_ms())
    except ChatError as exc:
        log.warning("rooms of %s not saved for recovery: %s", user_id, exc.message)


async def gone(services: Services, pid: str) -> None:
    """The socket left: its session can be recovered for the recovery window."""
    window_ms = int(services.settings.recovery_window * 1000)
    try:
        await services.store.recovery_ends(pid, services.clock.now_ms() + window_ms)
    except ChatError as exc:
        log.warning("recovery session %s not closed: %s", pid, exc.message)


async def prune(services: Services) -> int:
    now = services.clock.now_ms()
    return await services.store.prune_recovery(now, now - STALE_SESSION_MS)
