"""What a handler is given: the services it may use and the caller it acts for.

Handlers know nothing of Socket.IO or Tornado: the transport builds a Context for each
event or request and renders what the handler returns, or the ChatError it raises.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from syarah.auth import TokenVerifier
from syarah.clock import SYSTEM, Clock
from syarah.handlers.users import UserDirectory
from syarah.presence import Presence
from syarah.types import User


class Broadcaster(Protocol):
    """Where handlers send what others must hear (syarah.transport.rooms.Rooms)."""

    async def to_chat(self, chat_id: int, event: str, data: Any,
                      skip_sid: str | None = None) -> None: ...
    async def to_users(self, user_ids, event: str, data: Any) -> None: ...
    async def to_socket(self, sid: str, event: str, data: Any) -> None: ...
    async def join(self, sid: str, chat_id: int) -> None: ...
    async def leave(self, sid: str, chat_id: int) -> None: ...
    def joined(self, sid: str) -> set[int]: ...
    def has_joined(self, sid: str, chat_id: int) -> bool: ...
    async def evict(self, user_id: str, chat_id: int) -> list[str]: ...
    async def join_user(self, sid: str, user_id: str) -> None: ...


@dataclass
class Services:
    # syarah.store.Store: every query the handlers may run
    store: Any
    presence: Presence
    verifier: TokenVerifier
    rooms: Broadcaster
    users: UserDirectory
    # syarah.options.Settings
    settings: Any
    # syarah.media.service.MediaService and syarah.push.service.PushService (None
    # while push is not configured)
    media: Any = None
    push: Any = None
    clock: Clock = field(default=SYSTEM)
    # syarah.ratelimit.Limits; None: nothing is limited
    limits: Any = None


@dataclass
class Context:
    """One call of a handler: for whom, and over which socket if it came over one."""

    services: Services
    user: User
    sid: str | None = None
    client_type: str | None = None

    @property
    def clock(self) -> Clock:
        return self.services.clock
